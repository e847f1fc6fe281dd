package sse_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/b2ce5911/sse"
)

// cutWriter blocks an armed write until a past write deadline cuts it
// short, as a connection to a client that stopped reading does, and
// records any use after a Close has returned (closeReturned).
type cutWriter struct {
	header        http.Header
	armed         atomic.Bool
	inWrite       chan struct{}
	cut           chan struct{}
	cutOnce       sync.Once
	closeReturned atomic.Bool
	late          atomic.Bool
}

func (w *cutWriter) Header() http.Header { return w.header }
func (w *cutWriter) WriteHeader(int)     {}

func (w *cutWriter) Flush() {
	if w.closeReturned.Load() {
		w.late.Store(true)
	}
}

func (w *cutWriter) Write(b []byte) (int, error) {
	if w.closeReturned.Load() {
		w.late.Store(true)
	}
	if w.armed.Load() {
		w.inWrite <- struct{}{}
		<-w.cut
		return 0, errors.New("i/o timeout")
	}
	return len(b), nil
}

func (w *cutWriter) SetWriteDeadline(t time.Time) error {
	if !t.IsZero() && t.Before(time.Now()) {
		w.cutOnce.Do(func() { close(w.cut) })
		return nil
	}
	// A deadline put back: give any Close that is about to return the
	// time to say so, so that a use after it cannot go unseen.
	for i := 0; i < 5 && !w.closeReturned.Load(); i++ {
		time.Sleep(10 * time.Millisecond)
	}
	if w.closeReturned.Load() {
		w.late.Store(true)
	}
	return nil
}

// TestConnSecondCloseLeavesWriterAlone is the reported interleaving: a
// Close on another goroutine cuts short the handler's blocked write, the
// handler closes too and returns, and only then does the other Close
// finish. Once either Close has returned, the ResponseWriter must not be
// used again: the handler may have returned, and on HTTP/2 a later
// SetWriteDeadline dereferences nil in net/http.
func TestConnSecondCloseLeavesWriterAlone(t *testing.T) {
	t.Parallel()
	w := &cutWriter{header: http.Header{}, inWrite: make(chan struct{}), cut: make(chan struct{})}
	c, err := (&sse.Upgrader{Heartbeat: -1}).Upgrade(w, httptest.NewRequest(http.MethodGet, "/", nil))
	if err != nil {
		t.Fatal(err)
	}
	w.armed.Store(true)
	wrote := make(chan error)
	go func() { wrote <- c.WriteString("x") }() // the handler's write
	<-w.inWrite
	other := make(chan struct{})
	go func() {
		defer close(other)
		c.Close()
		w.closeReturned.Store(true)
	}()
	if err := <-wrote; !errors.Is(err, sse.ErrConnectionClosed) {
		t.Fatalf("write error %v, want ErrConnectionClosed", err)
	}
	c.Close() // the handler's own, before it returns
	w.closeReturned.Store(true)
	<-other
	if w.late.Load() {
		t.Fatal("the ResponseWriter was used after a Close had returned")
	}
}

// startServer serves h over HTTP/1.1 or, with TLS, HTTP/2; it is closed
// when the test ends.
func startServer(t *testing.T, h http.Handler, http2 bool) *httptest.Server {
	t.Helper()
	ts := httptest.NewUnstartedServer(h)
	if http2 {
		ts.EnableHTTP2 = true
		ts.StartTLS()
	} else {
		ts.Start()
	}
	t.Cleanup(ts.Close)
	return ts
}

var protocols = []struct {
	name  string
	http2 bool
}{{"HTTP/1.1", false}, {"HTTP/2", true}}

// TestConnCloseDuringBlockedWriteOnRealServers runs the interleaving of
// TestConnSecondCloseLeavesWriterAlone on net/http's own ResponseWriters,
// where the race detector sees what a late use touches.
func TestConnCloseDuringBlockedWriteOnRealServers(t *testing.T) {
	t.Parallel()
	for _, p := range protocols {
		t.Run(p.name, func(t *testing.T) {
			t.Parallel()
			conns := make(chan *sse.Conn, 1)
			returned := make(chan error, 1)
			ts := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				c, err := (&sse.Upgrader{Heartbeat: -1, WriteTimeout: -1}).Upgrade(w, r)
				if err != nil {
					returned <- err
					return
				}
				conns <- c
				err = writeUntilError(c) // the client does not read: a write blocks
				c.Close()
				returned <- err
			}), p.http2)
			resp, err := ts.Client().Get(ts.URL) // its body is never read
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			c := <-conns
			time.Sleep(50 * time.Millisecond) // let the writer fill the buffers and block; not a measurement
			other := make(chan struct{})
			go func() {
				defer close(other)
				c.Close()
			}()
			select {
			case err := <-returned:
				if !errors.Is(err, sse.ErrConnectionClosed) {
					t.Fatalf("write error %v, want ErrConnectionClosed", err)
				}
			case <-time.After(30 * time.Second): // a hang, not a measurement
				t.Fatal("Close did not unblock the handler's write")
			}
			<-other
		})
	}
}

// TestHandlerReturnsWithoutClose: a handler that forgets Close returns
// while heartbeats run. No heartbeat may write after it, nor race with
// net/http finishing the response, nor bring the server down. The handler
// returns half way between two heartbeats, by its own clock, since the
// client may read late on a loaded machine: one that net/http's end
// overlapped would be a race no Conn can prevent, which is why a handler
// must call Close. Heartbeats sent before it returned may still arrive.
func TestHandlerReturnsWithoutClose(t *testing.T) {
	t.Parallel()
	const heartbeat = 400 * time.Millisecond
	for _, p := range protocols {
		t.Run(p.name, func(t *testing.T) {
			t.Parallel()
			leave := make(chan struct{})
			ts := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if _, err := (&sse.Upgrader{Heartbeat: heartbeat}).Upgrade(w, r); err != nil {
					t.Error(err)
					return
				}
				upgraded := time.Now()
				<-leave
				// The heartbeats fall near whole Heartbeats after the
				// upgrade: return between two, and without Close.
				mid := heartbeat/2 - time.Since(upgraded)%heartbeat
				if mid < 0 {
					mid += heartbeat
				}
				time.Sleep(mid)
			}), p.http2)
			resp, err := ts.Client().Get(ts.URL)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body := newLineReader(resp.Body)
			for range 2 { // the opening comment, and a heartbeat
				if line, err := body.line(); line != ":" {
					t.Fatalf("line %q (%v), want a heartbeat", line, err)
				}
			}
			close(leave)
			rest, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatalf("after the handler returned: %v", err)
			}
			if rest = append(body.buf, rest...); len(bytes.ReplaceAll(rest, []byte(":\n"), nil)) > 0 {
				t.Fatalf("stream ended with %q, want only whole heartbeats", rest)
			}
		})
	}
}

type lineReader struct {
	r   io.Reader
	buf []byte
}

func newLineReader(r io.Reader) *lineReader { return &lineReader{r: r} }

// line returns the next line, without its LF.
func (l *lineReader) line() (string, error) {
	for {
		if i := bytes.IndexByte(l.buf, '\n'); i >= 0 {
			line := string(l.buf[:i])
			l.buf = l.buf[i+1:]
			return line, nil
		}
		var b [512]byte
		n, err := l.r.Read(b[:])
		l.buf = append(l.buf, b[:n]...)
		if err != nil && n == 0 {
			return "", err
		}
	}
}

// stuckWriter is a ResponseWriter as a middleware without Unwrap presents
// it: it flushes but cannot set write deadlines. Every write of an event
// blocks until release is closed, as one to a client that stopped reading
// does; a flush after closeReturned is set is recorded as late.
type stuckWriter struct {
	header        http.Header
	entered       chan struct{}
	release       chan struct{}
	closeReturned atomic.Bool
	late          atomic.Bool
}

func newStuckWriter() *stuckWriter {
	return &stuckWriter{header: http.Header{}, entered: make(chan struct{}, 1), release: make(chan struct{})}
}

func (w *stuckWriter) Header() http.Header { return w.header }
func (w *stuckWriter) WriteHeader(int)     {}

func (w *stuckWriter) Flush() {
	if w.closeReturned.Load() {
		w.late.Store(true)
	}
}

func (w *stuckWriter) Write(b []byte) (int, error) {
	if bytes.Contains(b, []byte("data:")) {
		select {
		case w.entered <- struct{}{}:
		default:
		}
		<-w.release
	}
	return len(b), nil
}

// logBuffer collects what a slog.Logger writes.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) count(s string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Count(b.buf.String(), s)
}

// returnsWithin runs f and fails the test if it has not returned after d,
// which is a bound on a hang, not a measurement.
func returnsWithin(t *testing.T, d time.Duration, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("%s still blocked after %v", what, d)
	}
}

// TestCloseWithoutWriteDeadline: behind a wrapper that hides
// SetWriteDeadline, Close cannot cut a stuck write short, and must return
// all the same; the user is told, once, that WriteTimeout cannot work.
func TestCloseWithoutWriteDeadline(t *testing.T) {
	t.Parallel()
	var log logBuffer
	u := &sse.Upgrader{Heartbeat: -1, WriteTimeout: 50 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(&log, nil))}
	w := newStuckWriter()
	defer close(w.release)
	c, err := u.Upgrade(w, httptest.NewRequest(http.MethodGet, "/", nil))
	if err != nil {
		t.Fatal(err)
	}
	wrote := make(chan error, 1)
	go func() { wrote <- c.WriteString("x") }() // on a goroutine other than the handler's
	<-w.entered
	returnsWithin(t, 20*time.Second, "Close", c.Close)
	w.closeReturned.Store(true)
	w.release <- struct{}{} // the stuck write ends at last
	if err := <-wrote; !errors.Is(err, sse.ErrConnectionClosed) {
		t.Fatalf("write error %v, want ErrConnectionClosed", err)
	}
	if w.late.Load() {
		t.Fatal("the write that Close stopped waiting for flushed after Close returned")
	}
	c2, err := u.Upgrade(newStuckWriter(), httptest.NewRequest(http.MethodGet, "/", nil))
	if err != nil {
		t.Fatal(err)
	}
	c2.Close()
	if n := log.count("cannot set write deadlines"); n != 1 {
		t.Fatalf("warned %d times, want once per Upgrader:\n%s", n, log.buf.String())
	}
}

// TestHubCloseWithoutWriteDeadline: Hub.Close and Hub.Shutdown return
// even when a subscriber's writer is stuck where no deadline can reach.
func TestHubCloseWithoutWriteDeadline(t *testing.T) {
	t.Parallel()
	for _, shutdown := range []bool{false, true} {
		name := map[bool]string{false: "Close", true: "Shutdown"}[shutdown]
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			discard := slog.New(slog.NewTextHandler(io.Discard, nil))
			h := &sse.Hub{Upgrader: sse.Upgrader{Heartbeat: -1, WriteTimeout: 50 * time.Millisecond, Logger: discard}, Logger: discard}
			w := newStuckWriter()
			served := make(chan struct{})
			go func() {
				defer close(served)
				h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/?topic=a", nil))
			}()
			waitStats(t, h, "had a subscriber", func(s sse.HubStats) bool { return s.Subscribers != 0 })
			if _, err := h.Publish(context.Background(), "a", sse.Message{Data: []byte("x")}); err != nil {
				t.Fatal(err)
			}
			<-w.entered
			returnsWithin(t, 20*time.Second, "Hub."+name, func() {
				if shutdown {
					ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
					defer cancel()
					h.Shutdown(ctx)
				} else {
					h.Close()
				}
			})
			close(w.release)
			<-served
		})
	}
}
