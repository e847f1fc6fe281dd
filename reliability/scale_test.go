package reliability_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/b2ce5911/sse"
)

// TestScaleHTTP1 serves thousands of concurrent streams, one TCP connection
// each, from one Hub: see testScale.
func TestScaleHTTP1(t *testing.T) { testScale(t, "h1") }

// TestScaleHTTP2 serves thousands of concurrent streams over a few h2c
// connections: see testScale.
func TestScaleHTTP2(t *testing.T) { testScale(t, "h2") }

// scaleHeapMargin is how far above its baseline the server's live heap may
// stay once every stream is gone: the maps that held the streams keep
// their size (Go maps do not shrink), and the history keeps the events;
// a stream left behind costs tens of KiB, so a few hundred would not fit.
const scaleHeapMargin = 4 << 20

// testScale opens thousands of streams to a Hub from a child process,
// publishes events that every stream must receive once and in order, and
// after the streams disconnect checks that the server's goroutines and
// live heap are back to where they were before.
func testScale(t *testing.T, proto string) {
	streams, events := pick(300, 10000), int64(pick(20, 50))
	hub := &sse.Hub{Logger: quietLogger, Upgrader: sse.Upgrader{Heartbeat: -1}}
	var conns atomic.Int64
	srv := &http.Server{
		Handler: hub,
		ConnState: func(_ net.Conn, s http.ConnState) {
			if s == http.StateNew {
				conns.Add(1)
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
	warmGoroutines(2*streams + 100)
	baseG, baseHeap := runtime.NumGoroutine(), liveHeap()

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
	waitFor(t, 2*time.Minute, func() bool { return hub.Stats().Subscribers == streams }, "the hub to serve every stream")
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

	if err := stop(); err != nil {
		t.Fatalf("child: %v", err)
	}
	var afterG int
	waitFor(t, 10*time.Second, func() bool {
		afterG = runtime.NumGoroutine()
		return afterG <= baseG && hub.Stats().Subscribers == 0
	}, "the goroutines to return to their baseline "+strconv.Itoa(baseG))
	afterHeap := liveHeap()
	if afterHeap > baseHeap+scaleHeapMargin {
		t.Errorf("live heap is %s after the streams left, %s before they came: more than %s above",
			mib(afterHeap), mib(baseHeap), mib(scaleHeapMargin))
	}
	name := map[string]string{"h1": "http1", "h2": "http2"}[proto]
	delivered := "all"
	if ok != streams {
		delivered = fmt.Sprintf("%d/%d", ok, streams)
	}
	t.Logf("scale %s: streams=%d events=%d delivered=%s in %v tcp-conns=%d (server saw %d) goroutines base=%d peak=%d after=%d heap base/peak/after=%s/%s/%s",
		name, streams, events, delivered, delivery.Round(time.Millisecond), dials, conns.Load(), baseG, peakG, afterG, mib(baseHeap), mib(peakHeap), mib(afterHeap))
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
