package sse_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/b2ce5911/sse"
)

// sink is a ResponseWriter that discards what it gets and counts the
// events: each ends with the only blank line in it.
type sink struct {
	header http.Header
	total  *atomic.Int64 // shared by all sinks of a benchmark
}

func (s *sink) Header() http.Header { return s.header }
func (s *sink) WriteHeader(int)     {}
func (s *sink) Flush()              {}
func (s *sink) Write(b []byte) (int, error) {
	s.total.Add(int64(bytes.Count(b, []byte("\n\n"))))
	return len(b), nil
}

// BenchmarkHubPublish publishes to n in-process subscribers and, every
// window events, waits until all of them have written everything: ns/op is
// the cost of a publish delivered to every subscriber, allocs/op must not
// grow with n.
func BenchmarkHubPublish(b *testing.B) {
	for _, n := range []int{1, 100, 10000} {
		b.Run(fmt.Sprint("subscribers=", n), func(b *testing.B) {
			const window = 256
			h := &sse.Hub{QueueSize: 2 * window, Logger: quiet}
			ctx, cancel := context.WithCancel(context.Background())
			sinks := make([]*sink, n)
			var total atomic.Int64
			var wg sync.WaitGroup
			for i := range sinks {
				sinks[i] = &sink{header: http.Header{}, total: &total}
				req := httptest.NewRequest("GET", "/", nil).WithContext(ctx)
				c, err := (&sse.Upgrader{Heartbeat: -1}).Upgrade(sinks[i], req)
				if err != nil {
					b.Fatal(err)
				}
				wg.Add(1)
				go func() { defer wg.Done(); h.Serve(c, "t") }()
			}
			for h.Stats().Subscribers < n {
				runtime.Gosched()
			}
			m := sse.Message{Type: "update", Data: jsonEvent}
			waitAll := func(events int64) {
				for total.Load() < events*int64(n) {
					if h.Stats().Evicted > 0 {
						b.Fatal("a subscriber was evicted")
					}
					time.Sleep(50 * time.Microsecond)
				}
			}
			// Warm up: every subscriber's writer has started and grown its
			// buffers to the largest batch before the timer runs.
			const warmup = 4 * window
			for i := 1; i <= warmup; i++ {
				if _, err := h.Publish(ctx, "t", m); err != nil {
					b.Fatal(err)
				}
				if i%window == 0 {
					waitAll(int64(i))
				}
			}
			total.Store(0)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 1; i <= b.N; i++ {
				if _, err := h.Publish(ctx, "t", m); err != nil {
					b.Fatal(err)
				}
				if i%window == 0 || i == b.N {
					waitAll(int64(i))
				}
			}
			b.StopTimer()
			if s := h.Stats(); s.Evicted != 0 {
				b.Fatalf("%d subscribers evicted", s.Evicted)
			}
			cancel()
			wg.Wait()
			h.Close()
		})
	}
}
