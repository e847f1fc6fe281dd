package sseredis_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/b2ce5911/sse"
	sseredis "github.com/b2ce5911/sse/redis"
	"github.com/b2ce5911/sse/redis/redistest"
)

var benchMessage = sse.Message{Type: "chat", Data: []byte(`{"room":"lobby","from":"ann","text":"hello, world"}`)}

// benchBroker is a Broker on a redis-server of the benchmark's own.
func benchBroker(b *testing.B) *sseredis.Broker {
	br := &sseredis.Broker{Client: redistest.Start(b, false).Client(b), Logger: quiet}
	b.Cleanup(func() { br.Close() })
	b.ReportAllocs()
	return br
}

// BenchmarkPublish measures Broker.Publish: one script run (XADD) per
// event on a local redis-server over a unix socket, without persistence.
func BenchmarkPublish(b *testing.B) {
	br := benchBroker(b)
	ctx := context.Background()
	for b.Loop() {
		if _, err := br.Publish(ctx, "t", benchMessage); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPublishParallel is BenchmarkPublish from GOMAXPROCS publishers
// sharing one Broker.
func BenchmarkPublishParallel(b *testing.B) {
	br := benchBroker(b)
	ctx := context.Background()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := br.Publish(ctx, "t", benchMessage); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkCrossNodeLatency publishes on node A's Hub and waits until a
// client of node B's Hub has decoded the event from its HTTP stream; it
// reports the percentiles of that latency.
func BenchmarkCrossNodeLatency(b *testing.B) {
	srv := redistest.Start(b, false)
	a, n := newNode(b, srv), newNode(b, srv)
	s := n.subscribe(b, "topic=t", "")
	var lat []time.Duration
	for b.Loop() {
		start := time.Now()
		if _, err := a.hub.Publish(context.Background(), "t", benchMessage); err != nil {
			b.Fatal(err)
		}
		s.next(b)
		lat = append(lat, time.Since(start))
	}
	slices.Sort(lat)
	at := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) }
	b.ReportMetric(at(0.50), "p50-µs")
	b.ReportMetric(at(0.99), "p99-µs")
}
