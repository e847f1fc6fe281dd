//go:build go1.25

package sse_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/b2ce5911/sse"
)

// recorder is a ResponseWriter that can flush and be read while in use.
type recorder struct {
	mu     sync.Mutex
	header http.Header
	body   strings.Builder
}

func (r *recorder) Header() http.Header { return r.header }
func (r *recorder) WriteHeader(int)     {}
func (r *recorder) Flush()              {}
func (r *recorder) Write(b []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.body.Write(b)
}
func (r *recorder) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.body.String()
}

func TestHeartbeatOnIdleStream(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		req := httptest.NewRequest("GET", "/", nil).WithContext(ctx)
		w := &recorder{header: http.Header{}}
		c, err := (&sse.Upgrader{Heartbeat: 15 * time.Second}).Upgrade(w, req)
		if err != nil {
			t.Fatal(err)
		}
		steps := []struct {
			at   time.Duration // since the stream opened
			act  func()
			want string
		}{
			{14 * time.Second, nil, ":\n"},    // the opening comment only
			{16 * time.Second, nil, ":\n:\n"}, // silent for 15 s: a heartbeat
			{20 * time.Second, func() { c.WriteString("x") }, ":\n:\ndata: x\n\n"},
			{34 * time.Second, nil, ":\n:\ndata: x\n\n"}, // 14 s after the event: nothing yet
			{36 * time.Second, nil, ":\n:\ndata: x\n\n:\n"},
			{52 * time.Second, nil, ":\n:\ndata: x\n\n:\n:\n"},
		}
		start := time.Now()
		for _, s := range steps {
			time.Sleep(s.at - time.Since(start))
			if s.act != nil {
				s.act()
			}
			synctest.Wait()
			if got := w.String(); got != s.want {
				t.Fatalf("at %v: stream %q, want %q", s.at, got, s.want)
			}
		}
		cancel() // the heartbeat goroutine must end with the request
		synctest.Wait()
		if c.IsOpen() {
			t.Fatal("Conn open after its request ended")
		}
	})
}

func TestHeartbeatOff(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		w := &recorder{header: http.Header{}}
		if _, err := (&sse.Upgrader{Heartbeat: -1}).Upgrade(w, httptest.NewRequest("GET", "/", nil).WithContext(ctx)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Hour)
		synctest.Wait()
		if got := w.String(); got != ":\n" {
			t.Fatalf("stream %q, want only the opening comment", got)
		}
	})
}
