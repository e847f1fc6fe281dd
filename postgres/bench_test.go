package ssepostgres_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/b2ce5911/sse"
	ssepostgres "github.com/b2ce5911/sse/postgres"
	"github.com/jackc/pgx/v5"
)

var benchMessage = sse.Message{Type: "chat", Data: []byte(`{"room":"lobby","from":"ann","text":"hello, world"}`)}

// publishers runs b.N calls of publish spread over n goroutines.
func publishers(b *testing.B, n int, publish func(ctx context.Context) error) {
	ctx := context.Background()
	var left atomic.Int64
	left.Store(int64(b.N))
	var wg sync.WaitGroup
	b.ResetTimer()
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for left.Add(-1) >= 0 {
				if err := publish(ctx); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// BenchmarkPublish measures Broker.Publish (a transaction of its own)
// and PublishTx in an application transaction that also inserts a row,
// with 1 and 8 concurrent publishers, on a local server over a unix
// socket with fsync off. "locked" is the alternative ordering: an
// advisory lock from publish to commit, which serialises publishers.
func BenchmarkPublish(b *testing.B) {
	pool, _ := newDB(b)
	br := newBroker(b, pool, ssepostgres.Options{PruneInterval: -1})
	if _, err := pool.Exec(context.Background(), "CREATE TABLE app (id bigint GENERATED ALWAYS AS IDENTITY, v text)"); err != nil {
		b.Fatal(err)
	}
	inTx := func(lock bool) func(ctx context.Context) error {
		return func(ctx context.Context) error {
			return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
				if _, err := tx.Exec(ctx, "INSERT INTO app (v) VALUES ('x')"); err != nil {
					return err
				}
				if lock {
					if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock(42)"); err != nil {
						return err
					}
				}
				_, err := br.PublishTx(ctx, tx, "t", benchMessage)
				return err
			})
		}
	}
	for _, n := range []int{1, 8} {
		b.Run(fmt.Sprintf("alone/publishers=%d", n), func(b *testing.B) {
			publishers(b, n, func(ctx context.Context) error {
				_, err := br.Publish(ctx, "t", benchMessage)
				return err
			})
		})
		b.Run(fmt.Sprintf("tx/publishers=%d", n), func(b *testing.B) { publishers(b, n, inTx(false)) })
		b.Run(fmt.Sprintf("tx-locked/publishers=%d", n), func(b *testing.B) { publishers(b, n, inTx(true)) })
	}
}

// BenchmarkCrossNodeLatency publishes on node A's Hub and waits until a
// client of node B's Hub has decoded the event from its HTTP stream; it
// reports the percentiles of that latency, from before the commit.
func BenchmarkCrossNodeLatency(b *testing.B) {
	_, url := newDB(b)
	a, n := newNode(b, url, ssepostgres.Options{}), newNode(b, url, ssepostgres.Options{})
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
