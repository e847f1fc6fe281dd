package ssepostgres_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/b2ce5911/sse"
	ssepostgres "github.com/b2ce5911/sse/postgres"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// newDB makes a database of the test's own and a pool on it.
func newDB(t testing.TB) (*pgxpool.Pool, string) {
	t.Helper()
	ctx := context.Background()
	url, err := server.NewDB(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return newPool(t, url), url
}

func newPool(t testing.TB, url string) *pgxpool.Pool {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	cfg.MaxConns = 8
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// newBroker makes a Broker on pool that polls every 50 ms, closed when
// the test ends.
func newBroker(t testing.TB, pool *pgxpool.Pool, opts ssepostgres.Options) *ssepostgres.Broker {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = quiet
	}
	if opts.PollInterval == 0 {
		opts.PollInterval = 50 * time.Millisecond
	}
	b, err := ssepostgres.New(context.Background(), pool, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// node is one server of a deployment: a Hub with its own pool and Broker,
// served over HTTP on loopback.
type node struct {
	hub    *sse.Hub
	broker *ssepostgres.Broker
	pool   *pgxpool.Pool
	ts     *httptest.Server
}

func newNode(t testing.TB, url string, opts ssepostgres.Options) *node {
	t.Helper()
	n := &node{pool: newPool(t, url)}
	n.broker = newBroker(t, n.pool, opts)
	n.hub = &sse.Hub{Broker: n.broker, Logger: quiet}
	n.ts = httptest.NewServer(n.hub)
	t.Cleanup(n.shutdown)
	return n
}

func (n *node) shutdown() {
	n.hub.Close()
	n.broker.Close()
	n.ts.Close()
	n.pool.Close()
}

func (n *node) publish(t testing.TB, topic string, data ...string) []string {
	t.Helper()
	var ids []string
	for _, d := range data {
		id, err := n.hub.Publish(context.Background(), topic, sse.Message{Data: []byte(d)})
		if err != nil {
			t.Fatalf("publish %q: %v", d, err)
		}
		ids = append(ids, id)
	}
	return ids
}

type event struct{ id, typ, data string }

// stream is a client's event stream, decoded by sse.Decoder.
type stream struct {
	events chan event
	body   io.Closer
	cancel context.CancelFunc
}

// subscribe opens a stream of n's Hub and returns once the Hub has
// registered it. lastID, when not empty, is sent as Last-Event-ID.
func (n *node) subscribe(t testing.TB, query, lastID string) *stream {
	t.Helper()
	before := n.hub.Stats().Subscriptions
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, n.ts.URL+"?"+query, nil)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := n.ts.Client().Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		cancel()
		t.Fatalf("status %d", resp.StatusCode)
	}
	s := &stream{events: make(chan event, 1<<14), body: resp.Body, cancel: cancel}
	go func() {
		defer close(s.events)
		d := sse.NewDecoder(resp.Body)
		for {
			e, err := d.Decode()
			if err != nil {
				return
			}
			s.events <- event{e.ID, e.Type, string(e.Bytes())}
		}
	}()
	t.Cleanup(s.close)
	deadline := time.Now().Add(30 * time.Second)
	for n.hub.Stats().Subscriptions == before {
		if time.Now().After(deadline) {
			t.Fatal("the Hub did not register the stream within 30s")
		}
		time.Sleep(time.Millisecond)
	}
	return s
}

func (s *stream) close() {
	s.cancel()
	s.body.Close()
}

// next returns the stream's next event; it fails the test after 30s.
func (s *stream) next(t testing.TB) event {
	t.Helper()
	select {
	case e, ok := <-s.events:
		if !ok {
			t.Fatal("stream ended")
		}
		return e
	case <-time.After(30 * time.Second):
		t.Fatal("no event within 30s")
	}
	panic("unreachable")
}

// expect reads len(want) events and checks their data.
func (s *stream) expect(t testing.TB, want ...string) []event {
	t.Helper()
	var got []event
	for _, w := range want {
		e := s.next(t)
		if e.data != w || e.typ != "message" {
			t.Fatalf("got %+v after %v, want data %q", e, got, w)
		}
		got = append(got, e)
	}
	return got
}

// silent checks that nothing more comes within d.
func (s *stream) silent(t testing.TB, d time.Duration) {
	t.Helper()
	select {
	case e, ok := <-s.events:
		if ok {
			t.Fatalf("unexpected event %+v", e)
		}
	case <-time.After(d):
	}
}

func names(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s%d", prefix, i+1)
	}
	return out
}

// begin starts a transaction on pool and runs stmt in it; the transaction
// rolls back when the test ends unless the test commits it.
func begin(t testing.TB, pool *pgxpool.Pool, stmt string) pgx.Tx {
	t.Helper()
	ctx := context.Background()
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tx.Rollback(ctx) })
	if _, err := tx.Exec(ctx, stmt); err != nil {
		t.Fatal(err)
	}
	return tx
}
