package sse_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"runtime/pprof"
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

// BenchmarkHubIdleStreams opens 2,000 idle streams on loopback, with the
// handler path and detached, and reports what each costs the process once
// they are all subscribed: heap bytes and goroutines per stream (the
// clients' side included, which is a socket and no goroutine). Run it with
// -benchtime=1x.
func BenchmarkHubIdleStreams(b *testing.B) {
	if os.Getenv("HEAPPROF") != "" {
		runtime.MemProfileRate = 1
	}
	const n = 2000
	for _, attached := range []bool{true, false} {
		b.Run(fmt.Sprint("attached=", attached), func(b *testing.B) {
			for range b.N {
				h := &sse.Hub{Logger: quiet, DisableDetach: attached, Upgrader: sse.Upgrader{Heartbeat: time.Minute}}
				ts := httptest.NewServer(h)
				publish(b, h, "t", "warm")
				runtime.GC()
				var before runtime.MemStats
				runtime.ReadMemStats(&before)
				g0 := runtime.NumGoroutine()
				conns := make([]net.Conn, n)
				for i := range conns {
					c, err := net.Dial("tcp", ts.Listener.Addr().String())
					if err != nil {
						b.Fatal(err)
					}
					fmt.Fprintf(c, "GET /?topic=t HTTP/1.1\r\nHost: x\r\n\r\n")
					conns[i] = c
				}
				for h.Stats().Subscribers < n {
					time.Sleep(time.Millisecond)
				}
				time.Sleep(100 * time.Millisecond) // handlers of detached streams return
				runtime.GC()
				var after runtime.MemStats
				runtime.ReadMemStats(&after)
				if f := os.Getenv("HEAPPROF"); f != "" && !attached {
					w, _ := os.Create(f)
					runtime.MemProfileRate = 1
					pprof.WriteHeapProfile(w)
					w.Close()
				}
				b.ReportMetric((float64(after.HeapInuse)-float64(before.HeapInuse))/n, "heapB/stream")
				b.ReportMetric((float64(after.StackInuse)-float64(before.StackInuse))/n, "stackB/stream")
				b.ReportMetric(float64(runtime.NumGoroutine()-g0)/n, "goroutines/stream")
				for _, c := range conns {
					c.Close()
				}
				h.Close()
				ts.Close()
			}
		})
	}
}

// BenchmarkHubFanout publishes to 2,000 loopback streams, with the handler
// path and detached, each read by a client that counts events: ns/op is
// the cost of one event delivered to all of them.
func BenchmarkHubFanout(b *testing.B) {
	const n, window = 2000, 64
	for _, attached := range []bool{true, false} {
		b.Run(fmt.Sprint("attached=", attached), func(b *testing.B) {
			h := &sse.Hub{Logger: quiet, DisableDetach: attached, History: 4 * window}
			ts := httptest.NewServer(h)
			defer ts.Close()
			defer h.Close()
			var total atomic.Int64
			var wg sync.WaitGroup
			conns := make([]net.Conn, n)
			for i := range conns {
				c, err := net.Dial("tcp", ts.Listener.Addr().String())
				if err != nil {
					b.Fatal(err)
				}
				defer c.Close()
				fmt.Fprintf(c, "GET /?topic=t HTTP/1.1\r\nHost: x\r\n\r\n")
				conns[i] = c
				wg.Add(1)
				go func() {
					defer wg.Done()
					buf := make([]byte, 32<<10)
					for {
						k, err := c.Read(buf)
						total.Add(int64(bytes.Count(buf[:k], []byte("}\n\n"))))
						if err != nil {
							return
						}
					}
				}()
			}
			for h.Stats().Subscribers < n {
				time.Sleep(time.Millisecond)
			}
			m := sse.Message{Type: "update", Data: jsonEvent}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 1; i <= b.N; i++ {
				if _, err := h.Publish(context.Background(), "t", m); err != nil {
					b.Fatal(err)
				}
				if i%window == 0 || i == b.N {
					for total.Load() < int64(i)*n {
						if h.Stats().Evicted > 0 {
							b.Fatal("a subscriber was evicted")
						}
						time.Sleep(50 * time.Microsecond)
					}
				}
			}
			b.StopTimer()
			for _, c := range conns {
				c.Close()
			}
			wg.Wait()
		})
	}
}
