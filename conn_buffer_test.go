package sse_test

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"testing"

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
