package reliability_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/b2ce5911/sse"
)

// TestScaleHTTP1 serves thousands of concurrent streams, one TCP connection
// each, from one Hub on the handler path (DisableDetach): see testScale.
func TestScaleHTTP1(t *testing.T) {
	testScale(t, scaleRun{proto: "h1", streams: pick(300, 10000), disableDetach: true})
}

// TestScaleHTTP2 serves thousands of concurrent streams over a few h2c
// connections, which stay on the handler path: see testScale.
func TestScaleHTTP2(t *testing.T) { testScale(t, scaleRun{proto: "h2", streams: pick(300, 10000)}) }

// TestScaleDetached serves 19,000 idle detached HTTP/1.1 streams (500
// with -short), as many as fit under this machine's limit of 20,000 files
// per process with the listener: see testScale. While they are idle the
// server has a constant number of goroutines, not one per stream.
// SSE_SCALE_N sets another number of streams.
func TestScaleDetached(t *testing.T) {
	n := 19000
	if v, err := strconv.Atoi(os.Getenv("SSE_SCALE_N")); err == nil {
		n = v
	}
	if testing.Short() {
		n = 500
	}
	testScale(t, scaleRun{proto: "h1", streams: n, detached: true})
}

// scaleRun is one run of testScale.
type scaleRun struct {
	proto         string // "h1" or "h2"
	streams       int
	disableDetach bool // Hub.DisableDetach
	detached      bool // the streams must be detached, and idle without goroutines
}

// scaleIdleGoroutines is how many goroutines more than before the streams
// came the server may have while detached streams are idle: the poller's,
// and the test's own reader of the child; none per stream.
const scaleIdleGoroutines = 10

// scaleHeapMargin is how far above its baseline the server's live heap may
// stay once every stream is gone: the maps that held the streams keep
// their size (Go maps do not shrink), and the history keeps the events;
// a stream left behind costs kilobytes, so a few thousand would not fit,
// and the count of subscribers shows a single one.
const scaleHeapMargin = 4 << 20

// testScale opens thousands of streams to a Hub from a child process,
// publishes events that every stream must receive once and in order, and
// after the streams disconnect checks that the server's goroutines and
// live heap are back to where they were before.
func testScale(t *testing.T, run scaleRun) {
	proto, streams, events := run.proto, run.streams, int64(pick(20, 50))
	raiseFileLimit(t)
	hub := &sse.Hub{Logger: quietLogger, DisableDetach: run.disableDetach, Upgrader: sse.Upgrader{Heartbeat: -1}}
	var conns, hijacked atomic.Int64
	srv := &http.Server{
		Handler: hub,
		ConnState: func(_ net.Conn, s http.ConnState) {
			switch s {
			case http.StateNew:
				conns.Add(1)
			case http.StateHijacked:
				hijacked.Add(1)
			}
		},
	}
	if proto == "h2" {
		srv.Protocols = new(http.Protocols)
		srv.Protocols.SetUnencryptedHTTP2(true)
		// A client opens another connection when one is full.
		srv.HTTP2 = &http.HTTP2Config{MaxConcurrentStreams: 1000}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var served sync.WaitGroup
	served.Go(func() { srv.Serve(ln) })
	defer func() {
		hub.Close()
		srv.Close()
		served.Wait()
	}()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	// The hub's topic exists before the baseline, as a server's would.
	if _, err := hub.Publish(ctx, "t", sse.Message{Data: []byte("before")}); err != nil {
		t.Fatal(err)
	}
	// The runtime keeps the descriptor of every goroutine it ever had
	// (about 400 bytes each, in the heap) for reuse, and never frees it:
	// had this process as many goroutines before as it will have with
	// the streams, as a server that has been up for a while has.
	// A detached stream has at most its writer; one on the handler path
	// its handler and its Conn's.
	perStream := 2
	if run.detached {
		perStream = 1
	}
	warmGoroutines(perStream*streams + 100)
	baseG, baseHeap := runtime.NumGoroutine(), liveHeap()
	began := time.Now()

	cmd := child(scaleRole, scaleEnvAddr+"="+ln.Addr().String(), scaleEnvStreams+"="+strconv.Itoa(streams), scaleEnvProto+"="+proto)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		exited <- cmd.Wait() // after the reads, as Wait closes stdout
	}()
	stopped := false
	stop := func() error {
		if stopped {
			return nil
		}
		stopped = true
		stdin.Close()
		for range lines { // drain, so that the reader gets to Wait
		}
		select {
		case err := <-exited:
			return err
		case <-time.After(time.Minute):
			cmd.Process.Kill()
			return fmt.Errorf("the child did not exit: %v", <-exited)
		}
	}
	defer stop()
	read := func(what string) string {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("the child exited while the test waited for %s", what)
			}
			return l
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s", what)
		}
		return ""
	}

	if l := read("the streams to open"); l != "ready" {
		t.Fatalf("child says %q, want ready", l)
	}
	for deadline := time.Now().Add(2 * time.Minute); hub.Stats().Subscribers != streams; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("Stats() = %+v two minutes after every stream had its response: want %d subscribers (%d connections, %d hijacked)", hub.Stats(), streams, conns.Load(), hijacked.Load())
		}
	}
	opened := time.Since(began)
	idle := func(when string) int {
		var g int
		waitFor(t, time.Minute, func() bool {
			g = runtime.NumGoroutine()
			return g <= baseG+scaleIdleGoroutines
		}, fmt.Sprintf("the server's goroutines %s to be at most %d (%d before the streams): not one per stream", when, baseG+scaleIdleGoroutines, baseG))
		return g
	}
	var idleG [2]int
	switch got := hijacked.Load(); {
	case run.detached:
		if got != int64(streams) {
			t.Fatalf("%d of %d streams detached", got, streams)
		}
		idleG[0] = idle("with every stream idle")
	case got != 0:
		t.Fatalf("%d streams detached, want none", got)
	}
	start := time.Now()
	for seq := int64(1); seq <= events; seq++ {
		if _, err := hub.Publish(ctx, "t", sse.Message{Data: eventData(seq, time.Now(), 64)}); err != nil {
			t.Fatal(err)
		}
	}
	fmt.Fprintf(stdin, "check %d\n", events)
	var ok, bad, dials int
	var first string
	l := read("the streams to receive the events")
	if _, err := fmt.Sscanf(l, "done %d %d %d", &ok, &bad, &dials); err != nil {
		t.Fatalf("child says %q: %v", l, err)
	}
	if f := strings.SplitN(l, " ", 5); len(f) == 5 {
		first = f[4]
	}
	delivery := time.Since(start)
	if ok != streams || bad != 0 {
		t.Errorf("%d of %d streams received events 1..%d once and in order; %d did not (%s)", ok, streams, events, bad, first)
	}
	st := hub.Stats()
	if st.Evicted != 0 || st.Delivered != int64(streams)*events {
		t.Errorf("Stats() = %+v: want %d delivered and none evicted", st, int64(streams)*events)
	}
	peakG, peakHeap := runtime.NumGoroutine(), liveHeap()
	if run.detached {
		idleG[1] = idle("once the events are out")
	}

	left := time.Now()
	if err := stop(); err != nil {
		t.Fatalf("child: %v", err)
	}
	var afterG int
	waitFor(t, time.Minute, func() bool {
		afterG = runtime.NumGoroutine()
		return afterG <= baseG && hub.Stats().Subscribers == 0
	}, "the goroutines to return to their baseline "+strconv.Itoa(baseG))
	gone := time.Since(left)
	afterHeap := liveHeap()
	if afterHeap > baseHeap+scaleHeapMargin {
		t.Errorf("live heap is %s after the streams left, %s before they came: more than %s above",
			mib(afterHeap), mib(baseHeap), mib(scaleHeapMargin))
	}
	name := map[string]string{"h1": "http1", "h2": "http2"}[proto]
	if run.detached {
		name += "-detached"
	}
	delivered := "all"
	if ok != streams {
		delivered = fmt.Sprintf("%d/%d", ok, streams)
	}
	t.Logf("scale %s: streams=%d events=%d opened in %v, delivered=%s in %v, gone in %v; tcp-conns=%d (server saw %d, hijacked %d) goroutines base=%d idle=%d/%d peak=%d after=%d heap base/peak/after=%s/%s/%s",
		name, streams, events, opened.Round(time.Millisecond), delivered, delivery.Round(time.Millisecond), gone.Round(time.Millisecond),
		dials, conns.Load(), hijacked.Load(), baseG, idleG[0], idleG[1], peakG, afterG, mib(baseHeap), mib(peakHeap), mib(afterHeap))
}

// raiseFileLimit raises this process's soft limit of open files to its
// hard limit: the streams' sockets need most of it.
func raiseFileLimit(t *testing.T) {
	if err := raiseNofile(); err != nil {
		t.Fatalf("raising RLIMIT_NOFILE: %v", err)
	}
}

// raiseNofile is raiseFileLimit for the child too.
func raiseNofile() error {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return err
	}
	l.Cur = l.Max
	return syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l)
}

// warmGoroutines runs n goroutines at once, and returns once they ended.
func warmGoroutines(n int) {
	var started, done sync.WaitGroup
	release := make(chan struct{})
	for range n {
		started.Add(1)
		done.Go(func() {
			started.Done()
			<-release
		})
	}
	started.Wait()
	close(release)
	done.Wait()
}
