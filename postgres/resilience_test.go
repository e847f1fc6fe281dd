package ssepostgres_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/b2ce5911/sse"
	ssepostgres "github.com/b2ce5911/sse/postgres"
	"github.com/jackc/pgx/v5/pgxpool"
)

// listeners returns how many backends of the test's database LISTEN.
func listeners(t *testing.T, pool *pgxpool.Pool) int {
	t.Helper()
	var n int
	err := pool.QueryRow(context.Background(),
		"SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'LISTEN%'").Scan(&n)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// waitFor polls cond every 10 ms, failing the test after 30 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within 30s: %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestListenerKilled: the listening connection is terminated; the Broker
// reconnects and reads what was committed meanwhile. Polling is off (an
// hour), so only the reconnect can deliver.
func TestListenerKilled(t *testing.T) {
	pool, _ := newDB(t)
	b := newBroker(t, pool, ssepostgres.Options{PollInterval: time.Hour})
	ctx := context.Background()
	ch, _ := feed(t, b, "t")
	waitFor(t, "the Broker listens", func() bool { return listeners(t, pool) == 1 })
	b.Publish(ctx, "t", sse.Message{Data: []byte("0")})
	take(t, ch, 1)
	for round := 1; round <= 3; round++ {
		if _, err := pool.Exec(ctx, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'LISTEN%'"); err != nil {
			t.Fatal(err)
		}
		var want []string
		for i := range 5 {
			d := fmt.Sprint(round, i)
			if _, err := b.Publish(ctx, "t", sse.Message{Data: []byte(d)}); err != nil {
				t.Fatal(err)
			}
			want = append(want, d)
		}
		if got := data(take(t, ch, 5)); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("round %d: got %q, want %q", round, got, want)
		}
		waitFor(t, "the Broker listens again", func() bool { return listeners(t, pool) == 1 })
	}
	none(t, ch, 200*time.Millisecond)
}

// TestPollingFindsRowsWithoutNotification: a row committed without a
// NOTIFY is delivered by the next poll.
func TestPollingFindsRowsWithoutNotification(t *testing.T) {
	pool, _ := newDB(t)
	b := newBroker(t, pool, ssepostgres.Options{PollInterval: 100 * time.Millisecond})
	ch, _ := feed(t, b, "t")
	if _, err := pool.Exec(context.Background(), "INSERT INTO sse_events (topic, data) VALUES ('t', 'quiet')"); err != nil {
		t.Fatal(err)
	}
	if got := data(take(t, ch, 1)); got[0] != "quiet" {
		t.Fatalf("got %q", got)
	}
}

// TestThousandTopicsConstantConnections: 1,000 topics with a subscriber
// each on one node use the listening connection and the pool's, no more;
// every subscriber gets the event of its topic.
func TestThousandTopicsConstantConnections(t *testing.T) {
	pool, url := newDB(t)
	n := newNode(t, url, ssepostgres.Options{})
	count := func() int {
		var c int
		err := pool.QueryRow(context.Background(),
			"SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()").Scan(&c)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	topics := names("t", 1000)
	streams := make([]*stream, len(topics))
	for i, topic := range topics {
		streams[i] = n.subscribe(t, "topic="+topic, "")
	}
	for _, topic := range topics {
		n.publish(t, topic, topic)
	}
	for i, s := range streams {
		s.expect(t, topics[i])
	}
	limit := int(n.pool.Config().MaxConns) + 1 // the pool, and the listening connection
	if c := count(); c > limit {
		t.Fatalf("%d connections for 1,000 topics, want at most %d", c, limit)
	}
}

// TestCloseWhenServerHangs: Close returns within a bounded time when the
// server stops answering (SIGSTOP) while feeds read.
func TestCloseWhenServerHangs(t *testing.T) {
	pool, _ := newDB(t)
	b, err := ssepostgres.New(context.Background(), pool, ssepostgres.Options{Logger: quiet, PollInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	feed(t, b, "t")
	server.Pause()
	t.Cleanup(server.Resume)           // before the pool closes
	time.Sleep(100 * time.Millisecond) // reads are under way, and hang
	done := make(chan struct{})
	go func() {
		b.Close()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		server.Resume()
		<-done
		t.Fatal("Close took more than 20s while the server hung")
	}
}

// TestServerRestartUnderLoad: PostgreSQL stops and restarts while events
// are published on one node and read by another. Every publish that
// returned an id is delivered once, in publish order; an event whose
// publish failed may come (its commit may have been lost on the way back),
// once, in its place.
func TestServerRestartUnderLoad(t *testing.T) {
	_, url := newDB(t)
	a, b := newNode(t, url, ssepostgres.Options{}), newNode(t, url, ssepostgres.Options{})
	s := b.subscribe(t, "topic=t", "")
	ctx := context.Background()
	const total = 300
	ok := make([]bool, total) // the publish of event i returned an id
	var succeeded, failures atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range total {
			_, err := a.hub.Publish(ctx, "t", sse.Message{Data: []byte(fmt.Sprint(i))})
			ok[i] = err == nil
			if ok[i] {
				succeeded.Add(1)
			} else {
				failures.Add(1)
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()
	waitFor(t, "20 events published", func() bool { return succeeded.Load() >= 20 })
	server.Stop()
	waitFor(t, "a publish fails", func() bool { return failures.Load() > 0 })
	if err := server.Restart(); err != nil {
		t.Fatal(err)
	}
	<-done
	// A marker after the load: once it has come, everything before it has.
	a.publish(t, "t", "end")
	next := 0
	for {
		e := s.next(t)
		if e.data == "end" {
			break
		}
		var i int
		fmt.Sscan(e.data, &i)
		for ; next < i; next++ {
			if ok[next] {
				t.Fatalf("event %d was published but not delivered (got %d next)", next, i)
			}
		}
		if i != next {
			t.Fatalf("got event %d after %d: out of order or twice", i, next-1)
		}
		next++
	}
	for ; next < total; next++ {
		if ok[next] {
			t.Fatalf("event %d was published but not delivered", next)
		}
	}
}

// logBuffer is a slog handler's output, safe for concurrent use.
type logBuffer struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// TestLaggingNodeReportsPrunedEvents: rows pruned before a node read them
// end the topic's feeds there with an entry whose Gap is GapExpired (the
// Hub then cuts their subscribers off, who replay or get a reset), and the
// loss is logged; a feed started afterwards goes on from the rows kept.
func TestLaggingNodeReportsPrunedEvents(t *testing.T) {
	pool, _ := newDB(t)
	var log logBuffer
	lagging := newBroker(t, pool, ssepostgres.Options{Logger: slog.New(slog.NewTextHandler(&log, nil))})
	other := newBroker(t, pool, ssepostgres.Options{MaxLen: 1, PruneInterval: -1})
	ctx := context.Background()
	ch, start := feed(t, lagging, "t")
	release := ssepostgres.HoldReader(lagging)
	var ids []string
	for _, d := range []string{"1", "2", "3"} {
		id, err := other.Publish(ctx, "t", sse.Message{Data: []byte(d)})
		if err != nil {
			release()
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	err := other.Prune(ctx)
	release()
	if err != nil {
		t.Fatal(err)
	}
	e := take(t, ch, 1)[0]
	if g, ok := e.Gap.(*sse.HistoryGapError); !ok || g.Reason != sse.GapExpired || e.Topic != "t" {
		t.Fatalf("got %+v, want an entry with Gap expired", e)
	}
	none(t, ch, 300*time.Millisecond) // the feed ended
	if !strings.Contains(log.String(), "pruned before this node read them") {
		t.Fatalf("log: %s", log.String())
	}
	if _, _, err := lagging.Replay(ctx, []string{"t"}, start); !isGap(err, sse.GapExpired) {
		t.Fatalf("Replay from the feed's start: %v", err)
	}
	again, pos := feed(t, lagging, "t")
	if pos != ids[2] {
		t.Fatalf("new feed's position %s, want %s", pos, ids[2])
	}
	id, err := other.Publish(ctx, "t", sse.Message{Data: []byte("4")})
	if err != nil {
		t.Fatal(err)
	}
	if got := take(t, again, 1)[0]; got.ID != id || got.Gap != nil {
		t.Fatalf("new feed got %+v, want event 4", got)
	}
}

// TestRestoredIntoAnotherCluster: a table whose xids are ahead of the
// server's (a dump restored elsewhere) starts a new epoch without its
// history, so that new events are delivered and old ids give a reset.
func TestRestoredIntoAnotherCluster(t *testing.T) {
	pool, _ := newDB(t)
	ctx := context.Background()
	b := newBroker(t, pool, ssepostgres.Options{})
	old, err := b.Publish(ctx, "t", sse.Message{Data: []byte("old")})
	if err != nil {
		t.Fatal(err)
	}
	b.Close()
	if _, err := pool.Exec(ctx, "INSERT INTO sse_events (xid, topic, data) OVERRIDING SYSTEM VALUE VALUES ('999999999', 't', '')"); err != nil {
		t.Fatal(err)
	}
	b = newBroker(t, pool, ssepostgres.Options{})
	ch, _ := feed(t, b, "t")
	if _, err := b.Publish(ctx, "t", sse.Message{Data: []byte("new")}); err != nil {
		t.Fatal(err)
	}
	if got := data(take(t, ch, 1)); got[0] != "new" {
		t.Fatalf("got %q", got)
	}
	if _, _, err := b.Replay(ctx, []string{"t"}, old); !isGap(err, sse.GapUnknown) {
		t.Fatalf("Replay after an id of before the restore: %v", err)
	}
}

// TestNewTopicHeldBackArrivesWithoutPoll: a row of a topic new to the
// node, held back by an older transaction when the feed starts, comes when
// that transaction ends, though it sends no notification, without
// waiting for PollInterval.
func TestNewTopicHeldBackArrivesWithoutPoll(t *testing.T) {
	pool, _ := newDB(t)
	b := newBroker(t, pool, ssepostgres.Options{PollInterval: 10 * time.Minute})
	ctx := context.Background()
	tx := begin(t, pool, "SELECT pg_current_xact_id()")
	if _, err := b.Publish(ctx, "t", sse.Message{Data: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	ch, _ := feed(t, b, "t")
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if got := data(take(t, ch, 1)); got[0] != "x" {
		t.Fatalf("got %q", got)
	}
}

// TestSubscribeDuringPruneEndsFeeds: when another node prunes past this
// node's cursor while a Subscribe is under way, the topic's existing feeds
// are told of the gap, not left to skip the pruned events silently.
func TestSubscribeDuringPruneEndsFeeds(t *testing.T) {
	pool, _ := newDB(t)
	a := newBroker(t, pool, ssepostgres.Options{MaxLen: 1, PruneInterval: -1})
	b := newBroker(t, pool, ssepostgres.Options{MaxLen: 1, PruneInterval: -1})
	ctx := context.Background()
	old, _ := feed(t, a, "t")
	if _, err := b.Publish(ctx, "t", sse.Message{Data: []byte("1")}); err != nil {
		t.Fatal(err)
	}
	take(t, old, 1)
	ssepostgres.AfterCatchUp(t, func() {
		for _, d := range []string{"2", "3"} {
			if _, err := b.Publish(ctx, "t", sse.Message{Data: []byte(d)}); err != nil {
				t.Error(err)
			}
		}
		if err := b.Prune(ctx); err != nil {
			t.Error(err)
		}
	})
	feed(t, a, "t")
	e := take(t, old, 1)[0]
	if !isGap(e.Gap, sse.GapExpired) {
		t.Fatalf("the existing feed got %+v after 2 was pruned unread, want a gap", e)
	}
}

// TestEpochChangeUnderNode: a database re-initialised under a running node
// (here: its history dropped and a new epoch) ends the node's feeds with a
// gap of reason unknown, and new feeds get the new epoch's events.
func TestEpochChangeUnderNode(t *testing.T) {
	pool, _ := newDB(t)
	b := newBroker(t, pool, ssepostgres.Options{})
	ctx := context.Background()
	old, _ := feed(t, b, "t")
	if _, err := b.Publish(ctx, "t", sse.Message{Data: []byte("1")}); err != nil {
		t.Fatal(err)
	}
	take(t, old, 1)
	if _, err := pool.Exec(ctx, "DELETE FROM sse_events; DELETE FROM sse_events_floor; UPDATE sse_events_meta SET epoch = 'feedbeef'"); err != nil {
		t.Fatal(err)
	}
	if e := take(t, old, 1)[0]; !isGap(e.Gap, sse.GapUnknown) {
		t.Fatalf("the feed got %+v after the epoch changed, want a gap", e)
	}
	ch, _ := feed(t, b, "t")
	id, err := b.Publish(ctx, "t", sse.Message{Data: []byte("2")})
	if err != nil || !strings.HasPrefix(id, "feedbeef-") {
		t.Fatalf("Publish in the new epoch = %q, %v", id, err)
	}
	if e := take(t, ch, 1)[0]; e.ID != id {
		t.Fatalf("the new feed got %+v, want %s", e, id)
	}
}
