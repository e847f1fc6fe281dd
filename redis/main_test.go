package sseredis_test

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

type silent struct{}

func (silent) Printf(context.Context, string, ...any) {}

// TestMain fails a passing run that leaves goroutines behind: every test
// must stop the feeds, clients, servers and streams it started.
func TestMain(m *testing.M) {
	redis.SetLogger(silent{}) // dial errors while Redis restarts are expected
	code := m.Run()
	if code == 0 {
		if leaked := leaked(5 * time.Second); leaked != "" {
			fmt.Fprintf(os.Stderr, "goroutines still running after the tests:\n%s\n", leaked)
			code = 1
		}
	}
	os.Exit(code)
}

// leaked waits up to d for every goroutine but the caller's and the
// runtime's own to end, and returns the stacks of those that did not.
func leaked(d time.Duration) string {
	deadline := time.Now().Add(d)
	for {
		var left []string
		for _, g := range goroutines() {
			if !background(g) {
				left = append(left, g)
			}
		}
		if len(left) == 0 {
			return ""
		}
		if time.Now().After(deadline) {
			return strings.Join(left, "\n\n")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// goroutines returns the stack of every goroutine but the caller's.
func goroutines() []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			return strings.Split(string(buf[:n]), "\n\n")[1:]
		}
		buf = make([]byte, 2*len(buf))
	}
}

// background tells the goroutines that outlive any test by design.
func background(stack string) bool {
	for _, s := range []string{"testing.(*M).", "runtime.ensureSigM", "os/signal.signal_recv", "runtime.goexit0"} {
		if strings.Contains(stack, s) {
			return true
		}
	}
	return false
}
