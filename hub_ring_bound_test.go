package sse_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/b2ce5911/sse"
)

// gateWriter is a ResponseWriter that keeps what it is written and whose
// writes block, once armed, until the test opens it: its subscriber's
// writer holds one batch while the history behind it fills.
type gateWriter struct {
	header  http.Header
	armed   chan struct{} // closed: writes block
	entered chan struct{} // a blocked write has started
	release chan struct{} // closed: writes go on
	once    sync.Once
	mu      sync.Mutex
	buf     bytes.Buffer
}

// newGateWriter returns a gateWriter that the test opens when it ends, if
// it has not, before the Hub's Close, which waits for the writer.
func newGateWriter(t *testing.T) *gateWriter {
	w := &gateWriter{header: http.Header{}, armed: make(chan struct{}), entered: make(chan struct{}, 1), release: make(chan struct{})}
	t.Cleanup(w.open)
	return w
}

func (w *gateWriter) open() { w.once.Do(func() { close(w.release) }) }

func (w *gateWriter) Header() http.Header { return w.header }
func (w *gateWriter) WriteHeader(int)     {}
func (w *gateWriter) Flush()              {}
func (w *gateWriter) Write(b []byte) (int, error) {
	select {
	case <-w.armed:
		select {
		case w.entered <- struct{}{}:
		default:
		}
		<-w.release
	default:
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Write(b)
}

// events decodes what w was written.
func (w *gateWriter) events() []*sse.Event {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []*sse.Event
	d := sse.NewDecoder(bytes.NewReader(w.buf.Bytes()))
	for {
		e, err := d.Decode()
		if err != nil {
			return out
		}
		out = append(out, e)
	}
}

// TestHubHistoryIsExact pins that a topic's history, which grows on
// demand, still holds exactly History events behind the one being written,
// whatever the size's place between the steps of its growth, and evicts on
// the next. The deprecated QueueSize, which sets History, must do the same.
func TestHubHistoryIsExact(t *testing.T) {
	t.Parallel()
	for _, size := range []int{1, 7, 8, 9, 64, 65, 100} {
		for _, field := range []string{"History", "QueueSize"} {
			t.Run(fmt.Sprint(field, "=", size), func(t *testing.T) {
				t.Parallel()
				h := &sse.Hub{History: size, Logger: quiet}
				if field == "QueueSize" {
					h = &sse.Hub{QueueSize: size, Logger: quiet}
				}
				testHistoryIsExact(t, h, size)
			})
		}
	}
}

func testHistoryIsExact(t *testing.T, h *sse.Hub, size int) {
	t.Cleanup(func() { h.Close() })
	w := newGateWriter(t)
	// With an event in the topic, a new subscriber is first sent
	// its position: the batch its writer holds, blocked, below.
	publish(t, h, "t", "before")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c, err := (&sse.Upgrader{Heartbeat: -1}).Upgrade(w, httptest.NewRequest("GET", "/", nil).WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	close(w.armed)
	served := make(chan error, 1)
	go func() { served <- h.Serve(c, "t") }()
	for h.Stats().Subscribers == 0 {
		time.Sleep(time.Millisecond) // registration happens on Serve's goroutine
	}
	waitDelivered := func(n int64) {
		t.Helper()
		for h.Stats().Delivered < n {
			time.Sleep(time.Millisecond) // the Broker's feed delivers on its own goroutine
		}
	}
	<-w.entered // the writer is blocked writing the position
	for i := range size {
		publish(t, h, "t", fmt.Sprint(i))
	}
	waitDelivered(int64(size))
	if s := h.Stats(); s.Evicted != 0 {
		t.Fatalf("evicted with %d events waiting, History %d", size, size)
	}
	publish(t, h, "t", "one too many")
	for deadline := time.Now().Add(10 * time.Second); h.Stats().Evicted == 0; {
		if time.Now().After(deadline) { // a hang, not a measurement
			t.Fatalf("not evicted with %d events waiting, History %d", size+1, size)
		}
		time.Sleep(time.Millisecond)
	}
	if s := h.Stats(); s.Delivered != int64(size) {
		t.Fatalf("%d events delivered, want %d", s.Delivered, size)
	}
	w.open()
	if err := <-served; !errors.Is(err, sse.ErrEvicted) {
		t.Fatalf("Serve returned %v, want ErrEvicted", err)
	}
}
