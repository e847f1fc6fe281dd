package reliability_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"testing"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"
)

// childEnv names the role a re-executed test binary plays (see child).
const childEnv = "SSE_RELIABILITY_CHILD"

// children are the roles a test can run in a process of its own (a server
// to kill, ten thousand clients that would not fit in this process's file
// limit): each reads its arguments from the environment and exits.
var children = map[string]func(){}

// long reports whether the long versions of the tests run (SSE_LONG=1).
func long() bool { return os.Getenv("SSE_LONG") == "1" }

// pick returns short, or long when SSE_LONG=1.
func pick[T any](short, long_ T) T {
	if long() {
		return long_
	}
	return short
}

// child returns a command that runs role in a copy of this test binary
// with env added to the environment.
func child(role string, env ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(append(os.Environ(), childEnv+"="+role), env...)
	cmd.Stderr = os.Stderr
	return cmd
}

type silent struct{}

func (silent) Printf(context.Context, string, ...any) {}

// TestMain runs a child role when asked to, and otherwise the tests,
// failing a passing run that leaves goroutines behind.
func TestMain(m *testing.M) {
	if role := os.Getenv(childEnv); role != "" {
		run, ok := children[role]
		if !ok {
			fmt.Fprintf(os.Stderr, "unknown child role %q\n", role)
			os.Exit(2)
		}
		run()
		os.Exit(0)
	}
	redis.SetLogger(silent{}) // dial errors while Redis restarts are expected
	goleak.VerifyTestMain(m)
}
