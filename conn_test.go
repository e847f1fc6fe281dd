package sse_test

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/b2ce5911/sse"
)

// TestConnKeepsOnlySmallBuffers checks that a Conn reuses its write buffer
// for ordinary events and batches, and lets go of the buffer of a large
// event instead of holding it for the rest of the stream; a large batch is
// written in parts of a buffer it keeps.
func TestConnKeepsOnlySmallBuffers(t *testing.T) {
	t.Parallel()
	small, large := bytes.Repeat([]byte("s"), 4<<10), bytes.Repeat([]byte("l"), 1<<20)
	batch := make([]*sse.PreparedMessage, 128)
	for i := range batch {
		pm, err := sse.NewPreparedMessage(sse.Message{Data: small})
		if err != nil {
			t.Fatal(err)
		}
		batch[i] = pm
	}
	largePM, err := sse.NewPreparedMessage(sse.Message{Data: large})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		write func(c *sse.Conn) error
		kept  bool
		n     int // events written
	}{
		{"small event", func(c *sse.Conn) error { return c.Write(small) }, true, 1},
		{"large event", func(c *sse.Conn) error { return c.Write(large) }, false, 1},
		{"small batch", func(c *sse.Conn) error { return c.WritePrepared(batch[:2]...) }, true, 2},
		{"large batch", func(c *sse.Conn) error { return c.WritePrepared(batch...) }, true, len(batch)},
		{"batch with a large event", func(c *sse.Conn) error { return c.WritePrepared(batch[0], largePM, batch[1]) }, true, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rec := httptest.NewRecorder()
			c, err := sse.Upgrade(rec, httptest.NewRequest(http.MethodGet, "/", nil))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if err := tt.write(c); err != nil {
				t.Fatal(err)
			}
			// What was written arrived whole.
			if n := bytes.Count(rec.Body.Bytes(), []byte("\n\n")); n != tt.n {
				t.Fatalf("%d events arrived, want %d", n, tt.n)
			}
			if got := sse.BufferCap(c); (got > 0) != tt.kept || got > 16<<10 {
				t.Errorf("after the write the Conn keeps a buffer of %d bytes; want one kept: %v, and never a large one", got, tt.kept)
			}
		})
	}
}

// TestConnBatchBufferStaysSmall checks that joining a batch never grows
// the kept buffer past its bound, whatever the event size.
func TestConnBatchBufferStaysSmall(t *testing.T) {
	t.Parallel()
	for _, size := range []int{3000, 5000, 6000, 7000} {
		pm, err := sse.NewPreparedMessage(sse.Message{Data: bytes.Repeat([]byte("x"), size)})
		if err != nil {
			t.Fatal(err)
		}
		rec := httptest.NewRecorder()
		c, err := sse.Upgrade(rec, httptest.NewRequest(http.MethodGet, "/", nil))
		if err != nil {
			t.Fatal(err)
		}
		if err := c.WritePrepared(pm, pm, pm, pm, pm); err != nil {
			t.Fatal(err)
		}
		if n := bytes.Count(rec.Body.Bytes(), []byte("\n\n")); n != 5 {
			t.Errorf("%d-byte events: %d arrived, want 5", size, n)
		}
		if got := sse.BufferCap(c); got > 16<<10 {
			t.Errorf("%d-byte events: the Conn keeps a buffer of %d bytes, over 16 KiB", size, got)
		}
		c.Close()
	}
}

// lateWriter completes a write while a Close from elsewhere (Hub.Close, an
// eviction) is stalled between finding that write in progress and setting
// its past deadline, as a preempted goroutine would be; it records any use
// after the handler, told by Close that it may return, is done.
type lateWriter struct {
	header      http.Header
	armed       atomic.Bool
	inWrite     chan struct{}
	stall       chan struct{}
	stalled     chan struct{}
	handlerDone atomic.Bool
	lateUse     atomic.Bool
}

func (w *lateWriter) Header() http.Header { return w.header }
func (w *lateWriter) WriteHeader(int)     {}

func (w *lateWriter) Flush() {
	if w.handlerDone.Load() {
		w.lateUse.Store(true)
	}
}

func (w *lateWriter) Write(b []byte) (int, error) {
	if w.armed.Load() {
		w.inWrite <- struct{}{}
		<-w.stalled // the other Close is stalled: this write ends on its own
	}
	return len(b), nil
}

func (w *lateWriter) SetWriteDeadline(t time.Time) error {
	if w.armed.Load() && t.Before(time.Now()) {
		close(w.stalled)
		<-w.stall
	}
	if w.handlerDone.Load() {
		w.lateUse.Store(true)
	}
	return nil
}

// TestConnCloseOrdersConcurrentShut checks that once the handler's Close
// returns, a close from another goroutine that found a write in progress
// no longer touches the ResponseWriter: net/http may have finished it.
func TestConnCloseOrdersConcurrentShut(t *testing.T) {
	t.Parallel()
	w := &lateWriter{header: http.Header{}, inWrite: make(chan struct{}), stall: make(chan struct{}), stalled: make(chan struct{})}
	c, err := (&sse.Upgrader{Heartbeat: -1}).Upgrade(w, httptest.NewRequest(http.MethodGet, "/", nil))
	if err != nil {
		t.Fatal(err)
	}
	w.armed.Store(true)
	wrote := make(chan error)
	go func() { wrote <- c.WriteString("x") }()
	<-w.inWrite // the write holds the Conn's lock
	shutDone := make(chan struct{})
	go func() {
		defer close(shutDone)
		sse.Fail(c)
	}()
	<-wrote
	closed := make(chan struct{})
	go func() { c.Close(); close(closed) }()
	select {
	case <-closed:
		w.handlerDone.Store(true) // Close returned: the handler may return
	case <-time.After(200 * time.Millisecond): // Close waits for the other one, as it must
	}
	close(w.stall)
	<-shutDone
	<-closed
	if w.lateUse.Load() {
		t.Fatal("the ResponseWriter was used after Close returned")
	}
}

type panickingFlusher struct{ http.ResponseWriter }

func (panickingFlusher) Flush() { panic(http.ErrAbortHandler) }

// TestUpgradePanicReachesHandler checks that a panic of the ResponseWriter
// during Upgrade's first flush comes out of Upgrade, on the handler's
// goroutine, where net/http recovers it.
func TestUpgradePanicReachesHandler(t *testing.T) {
	t.Parallel()
	defer func() {
		if p := recover(); p != http.ErrAbortHandler {
			t.Fatalf("recovered %v, want http.ErrAbortHandler", p)
		}
	}()
	sse.Upgrade(panickingFlusher{httptest.NewRecorder()}, httptest.NewRequest(http.MethodGet, "/", nil))
	t.Fatal("Upgrade returned")
}
