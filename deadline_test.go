//go:build go1.25

package sse_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"testing/synctest"
	"time"

	"github.com/b2ce5911/sse"
)

// deadlineWriter is a ResponseWriter that can set write deadlines, and
// records the deadline in effect at each write.
type deadlineWriter struct {
	header    http.Header
	deadline  time.Time
	sets      int
	atWrite   []time.Time // the time of each write
	dlAtWrite []time.Time // the deadline in effect then
}

func (w *deadlineWriter) Header() http.Header { return w.header }
func (w *deadlineWriter) WriteHeader(int)     {}
func (w *deadlineWriter) Flush()              {}
func (w *deadlineWriter) SetWriteDeadline(t time.Time) error {
	w.deadline = t
	w.sets++
	return nil
}
func (w *deadlineWriter) Write(b []byte) (int, error) {
	w.atWrite = append(w.atWrite, time.Now())
	w.dlAtWrite = append(w.dlAtWrite, w.deadline)
	return len(b), nil
}

// TestWriteDeadlineRenewedLazily pins the write timeout's contract: every
// write starts with at least WriteTimeout and at most 1.5 × WriteTimeout
// before its deadline, and the deadline is not set again on every write.
func TestWriteDeadlineRenewedLazily(t *testing.T) {
	t.Parallel()
	const timeout = 10 * time.Second
	for _, tt := range []struct {
		name    string
		every   time.Duration // between writes
		writes  int
		maxSets int // 1 at Upgrade, then at most one per timeout/2 of writing
	}{
		{"busy stream", 100 * time.Millisecond, 600, 1 + 60/5 + 1},
		{"every second", time.Second, 60, 1 + 60/5 + 1},
		{"slower than the timeout", 20 * time.Second, 5, 1 + 5},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				w := &deadlineWriter{header: http.Header{}}
				req := httptest.NewRequest("GET", "/", nil).WithContext(ctx)
				c, err := (&sse.Upgrader{WriteTimeout: timeout, Heartbeat: -1}).Upgrade(w, req)
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				for range tt.writes {
					time.Sleep(tt.every)
					if err := c.WriteString("x"); err != nil {
						t.Fatal(err)
					}
				}
				if len(w.atWrite) != tt.writes+1 { // and the opening comment
					t.Fatalf("%d writes, want %d", len(w.atWrite), tt.writes+1)
				}
				for i, at := range w.atWrite {
					if left := w.dlAtWrite[i].Sub(at); left < timeout || left > timeout*3/2 {
						t.Fatalf("write %d had %v before its deadline, want %v to %v", i, left, timeout, timeout*3/2)
					}
				}
				if w.sets > tt.maxSets {
					t.Fatalf("deadline set %d times for %d writes, want at most %d", w.sets, tt.writes+1, tt.maxSets)
				}
			})
		})
	}
}
