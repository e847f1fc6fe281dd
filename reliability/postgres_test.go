package reliability_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/b2ce5911/sse"
	ssepostgres "github.com/b2ce5911/sse/postgres"
	"github.com/b2ce5911/sse/postgres/pgtest"
	"github.com/jackc/pgx/v5/pgxpool"
)

// pgNode is a Hub on a Broker of its own on the database at url, served
// on loopback.
type pgNode struct {
	pool   *pgxpool.Pool
	broker *ssepostgres.Broker
	hub    *sse.Hub
	ts     *httptest.Server
}

func newPGNode(t *testing.T, url string) *pgNode {
	t.Helper()
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	b, err := ssepostgres.New(ctx, pool, ssepostgres.Options{Logger: quiet, PollInterval: 100 * time.Millisecond})
	if err != nil {
		pool.Close()
		t.Fatal(err)
	}
	n := &pgNode{pool: pool, broker: b, hub: &sse.Hub{Broker: b, Logger: quiet, Upgrader: sse.Upgrader{RetryTime: chaosRetry}}}
	n.ts = httptest.NewServer(n.hub)
	t.Cleanup(func() {
		n.hub.Close()
		n.ts.Close()
		n.broker.Close()
		n.pool.Close()
	})
	return n
}

// TestPostgresCrashUnderLoad kills PostgreSQL (SIGKILL, as a crash) and
// restarts it, several times, while a publisher writes events of three
// topics through one node and a client of all three reads them from the
// other node, reconnecting with its Last-Event-ID when its stream fails.
// Every publish that returned an id is delivered exactly once, each topic
// in order, with no reset; an event whose publish failed (its commit may
// have been lost on the way back) comes at most once, in its place.
func TestPostgresCrashUnderLoad(t *testing.T) {
	srv, err := pgtest.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close) // after the nodes, which close in their own Cleanups
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	url, err := srv.NewDB(ctx)
	if err != nil {
		t.Fatal(err)
	}
	a, b := newPGNode(t, url), newPGNode(t, url)
	topics := []string{"x", "y", "z"}
	crashes, perTopic := pick(3, 10), pick(300, 3000)

	// The client: every event of the three topics, by sse.Client.
	type got struct{ typ, data string }
	events := make(chan got, 1<<16)
	client := &sse.Client{ReconnectDelay: 10 * time.Millisecond, MaxReconnectDelay: 200 * time.Millisecond,
		RetryStatus: func(code int) bool { return code >= 500 }}
	var clientDone sync.WaitGroup
	defer clientDone.Wait()
	defer cancel()
	clientDone.Add(1)
	go func() {
		defer clientDone.Done()
		for e, err := range client.Events(ctx, b.ts.URL+"?topic=x&topic=y&topic=z") {
			if err != nil {
				return
			}
			events <- got{e.Type, string(e.Bytes())}
		}
	}()
	waitUntil := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("not within 60s: %s", what)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitUntil("the client is subscribed", func() bool { return b.hub.Stats().Subscriptions > 0 })

	// The publisher goes on until the crashes are over and it has
	// published at least perTopic rounds.
	ok := make([][]bool, len(topics)) // ok[i][n]: the publish of event n of topics[i] returned an id
	var succeeded, failed atomic.Int64
	crashed := make(chan struct{})
	published := make(chan struct{})
	go func() {
		defer close(published)
		for n := 0; ; n++ {
			if n >= perTopic {
				select {
				case <-crashed:
					return
				default:
				}
			}
			for i, topic := range topics {
				_, err := a.hub.Publish(ctx, topic, sse.Message{Data: fmt.Appendf(nil, "%s:%d", topic, n)})
				ok[i] = append(ok[i], err == nil)
				if err == nil {
					succeeded.Add(1)
				} else {
					failed.Add(1)
				}
			}
			time.Sleep(chaosPublishAt)
		}
	}()
	for c := range crashes {
		at := succeeded.Load() + 30
		waitUntil("30 more publishes", func() bool { return succeeded.Load() >= at })
		srv.Kill()
		f := failed.Load()
		waitUntil("a publish fails while the server is down", func() bool { return failed.Load() > f })
		if err := srv.Restart(); err != nil {
			t.Fatalf("restart %d: %v", c+1, err)
		}
	}
	close(crashed)
	<-published
	total := len(ok[0])
	for _, topic := range topics {
		if _, err := a.hub.Publish(ctx, topic, sse.Message{Data: []byte(topic + ":end")}); err != nil {
			t.Fatalf("the last publish, after the crashes: %v", err)
		}
	}

	next := make([]int, len(topics)) // per topic, the event expected next
	for ended := 0; ended < len(topics); {
		var e got
		select {
		case e = <-events:
		case <-time.After(60 * time.Second):
			t.Fatalf("no event within 60s; next expected %v", next)
		}
		if e.typ != "message" {
			t.Fatalf("got a %q event (%s): history was lost", e.typ, e.data)
		}
		topic, num, _ := strings.Cut(e.data, ":")
		i := strings.Index("xyz", topic)
		n, err := strconv.Atoi(num)
		switch {
		case len(topic) != 1 || i < 0:
			t.Fatalf("unexpected event %q", e.data)
		case num == "end":
			n, ended = total, ended+1
		case err != nil:
			t.Fatalf("unexpected event %q", e.data)
		}
		for ; next[i] < n; next[i]++ {
			if ok[i][next[i]] {
				t.Fatalf("event %s:%d was published but not delivered (got %q next)", topic, next[i], e.data)
			}
		}
		if n < total && n != next[i] {
			t.Fatalf("got %q after %s:%d: out of order or twice", e.data, topic, next[i]-1)
		}
		next[i]++
	}
	t.Logf("%d crashes; %d publishes returned an id, %d failed", crashes, succeeded.Load(), failed.Load())
}
