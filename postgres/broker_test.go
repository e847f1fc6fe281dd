package ssepostgres_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/b2ce5911/sse"
	ssepostgres "github.com/b2ce5911/sse/postgres"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
)

// feed subscribes to topic on b and collects what it delivers.
func feed(t *testing.T, b *ssepostgres.Broker, topic string) (chan sse.Entry, string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	ch := make(chan sse.Entry, 1<<12)
	start, err := b.Subscribe(ctx, topic, func(e sse.Entry) { ch <- e })
	if err != nil {
		t.Fatal(err)
	}
	return ch, start
}

// take reads n entries from ch, waiting at most 30s for each.
func take(t *testing.T, ch chan sse.Entry, n int) []sse.Entry {
	t.Helper()
	var got []sse.Entry
	for range n {
		select {
		case e := <-ch:
			got = append(got, e)
		case <-time.After(30 * time.Second):
			t.Fatalf("got %d entries of %d within 30s each: %v", len(got), n, got)
		}
	}
	return got
}

// none checks that ch gets nothing within d.
func none(t *testing.T, ch chan sse.Entry, d time.Duration) {
	t.Helper()
	select {
	case e := <-ch:
		t.Fatalf("unexpected entry %+v", e)
	case <-time.After(d):
	}
}

func data(es []sse.Entry) []string {
	var out []string
	for _, e := range es {
		out = append(out, string(e.Data))
	}
	return out
}

func TestPublishSubscribeReplay(t *testing.T) {
	pool, _ := newDB(t)
	b := newBroker(t, pool, ssepostgres.Options{})
	ctx := context.Background()
	ch, start := feed(t, b, "t")
	m := sse.Message{Type: "chat", Data: []byte("a\nb"), Retry: 1500 * time.Millisecond, Comment: "c"}
	id, err := b.Publish(ctx, "t", m)
	if err != nil {
		t.Fatal(err)
	}
	got := take(t, ch, 1)[0]
	want := sse.Entry{Topic: "t", Message: m}
	want.ID = id
	if got.Topic != want.Topic || got.ID != want.ID || got.Type != want.Type || string(got.Data) != string(want.Data) || got.Retry != want.Retry || got.Comment != want.Comment {
		t.Fatalf("delivered %+v, want %+v", got, want)
	}
	entries, heads, err := b.Replay(ctx, []string{"t"}, start)
	if err != nil || len(entries) != 1 || entries[0].ID != id || !slices.Equal(heads, []string{id}) {
		t.Fatalf("Replay after start = %v, %v, %v", entries, heads, err)
	}
	entries, heads, err = b.Replay(ctx, []string{"t"}, id)
	if err != nil || len(entries) != 0 || !slices.Equal(heads, []string{id}) {
		t.Fatalf("Replay after the event = %v, %v, %v", entries, heads, err)
	}
	if _, err := b.Publish(ctx, "t", sse.Message{ID: "x"}); !errors.Is(err, ssepostgres.ErrOwnID) {
		t.Fatalf("Publish with an id: %v", err)
	}
}

// TestRollbackPublishesNothing: an event published in a transaction that
// rolls back is neither delivered nor replayed; one in a transaction that
// commits comes with the application's row.
func TestRollbackPublishesNothing(t *testing.T) {
	pool, _ := newDB(t)
	b := newBroker(t, pool, ssepostgres.Options{})
	ctx := context.Background()
	if _, err := pool.Exec(ctx, "CREATE TABLE orders (id int PRIMARY KEY)"); err != nil {
		t.Fatal(err)
	}
	ch, start := feed(t, b, "orders")
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tx.Exec(ctx, "INSERT INTO orders VALUES (1)")
	if _, err := b.PublishTx(ctx, tx, "orders", sse.Message{Data: []byte("rolled back")}); err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "INSERT INTO orders VALUES (2)"); err != nil {
			return err
		}
		_, err := b.PublishTx(ctx, tx, "orders", sse.Message{Data: []byte("committed")})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := data(take(t, ch, 1)); !slices.Equal(got, []string{"committed"}) {
		t.Fatalf("delivered %q", got)
	}
	none(t, ch, 300*time.Millisecond)
	entries, _, err := b.Replay(ctx, []string{"orders"}, start)
	if err != nil || !slices.Equal(data(entries), []string{"committed"}) {
		t.Fatalf("Replay = %q, %v", data(entries), err)
	}
}

// TestPublishSQLTx publishes through database/sql, committed and rolled
// back.
func TestPublishSQLTx(t *testing.T) {
	pool, _ := newDB(t)
	b := newBroker(t, pool, ssepostgres.Options{})
	ctx := context.Background()
	db := stdlib.OpenDBFromPool(pool)
	defer db.Close()
	ch, _ := feed(t, b, "t")
	for _, commit := range []bool{false, true} {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := b.PublishSQLTx(ctx, tx, "t", sse.Message{Data: []byte(strings.Repeat("x", 10))}); err != nil {
			t.Fatal(err)
		}
		if commit {
			err = tx.Commit()
		} else {
			err = tx.Rollback()
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	take(t, ch, 1)
	none(t, ch, 300*time.Millisecond)
}

// TestOutOfOrderCommits: transaction A inserts first (lower xid), B
// inserts and commits, the reader runs, then A commits. Nothing is lost
// or duplicated, and the feed delivers in id order, which is also Replay's.
func TestOutOfOrderCommits(t *testing.T) {
	pool, _ := newDB(t)
	b := newBroker(t, pool, ssepostgres.Options{})
	ctx := context.Background()
	ch, start := feed(t, b, "t")
	txA, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer txA.Rollback(ctx)
	idA, err := b.PublishTx(ctx, txA, "t", sse.Message{Data: []byte("A")})
	if err != nil {
		t.Fatal(err)
	}
	var idB string
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		idB, err = b.PublishTx(ctx, tx, "t", sse.Message{Data: []byte("B")})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	// The reader runs meanwhile (a notification, then polls), and must
	// not pass A: B waits.
	none(t, ch, 500*time.Millisecond)
	entries, heads, err := b.Replay(ctx, []string{"t"}, start)
	if err != nil || len(entries) != 0 || heads[0] != start {
		t.Fatalf("Replay while A is open = %v, %v, %v", entries, heads, err)
	}
	if err := txA.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	got := take(t, ch, 2)
	if got[0].ID != idA || got[1].ID != idB {
		t.Fatalf("delivered %v, want A (%s) then B (%s)", got, idA, idB)
	}
	none(t, ch, 300*time.Millisecond)
	entries, _, err = b.Replay(ctx, []string{"t"}, start)
	if err != nil || !slices.Equal(data(entries), []string{"A", "B"}) {
		t.Fatalf("Replay = %q, %v", data(entries), err)
	}
}

// TestSchemaAndTable: names that need quoting work, and Brokers of
// different tables in one database do not see each other's events.
func TestSchemaAndTable(t *testing.T) {
	pool, _ := newDB(t)
	ctx := context.Background()
	a := newBroker(t, pool, ssepostgres.Options{Schema: "My Events", Table: "feed-A"})
	b := newBroker(t, pool, ssepostgres.Options{Schema: "My Events", Table: "feed-B"})
	cha, _ := feed(t, a, "t")
	chb, _ := feed(t, b, "t")
	if _, err := a.Publish(ctx, "t", sse.Message{Data: []byte("a")}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Publish(ctx, "t", sse.Message{Data: []byte("b")}); err != nil {
		t.Fatal(err)
	}
	if got := data(take(t, cha, 1)); got[0] != "a" {
		t.Fatalf("a got %q", got)
	}
	if got := data(take(t, chb, 1)); got[0] != "b" {
		t.Fatalf("b got %q", got)
	}
	none(t, cha, 200*time.Millisecond)
	none(t, chb, 0)
	var n int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM "My Events"."feed-A"`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("rows of feed-A: %d, %v", n, err)
	}
}

// TestOrderAcrossDigitCounts: ids whose xids have more digits come later,
// in feeds, Replay, Recent and the positions of Subscribe (an xid compared
// as text would put 10000 before 9999).
func TestOrderAcrossDigitCounts(t *testing.T) {
	pool, _ := newDB(t)
	b := newBroker(t, pool, ssepostgres.Options{})
	ctx := context.Background()
	var xid int64
	if err := pool.QueryRow(ctx, "SELECT pg_current_xact_id()::text::bigint").Scan(&xid); err != nil {
		t.Fatal(err)
	}
	next := int64(10)
	for next <= xid+20 {
		next *= 10
	}
	// One xid per transaction, to just below the next power of ten.
	_, err := pool.Exec(ctx, `DO $$ BEGIN
	FOR i IN 1..`+fmt.Sprint(next-3-xid-1)+` LOOP
		PERFORM pg_current_xact_id();
		COMMIT;
	END LOOP;
END $$`)
	if err != nil {
		t.Fatal(err)
	}
	ch, start := feed(t, b, "t")
	var want []string
	for i := range 6 {
		id, err := b.Publish(ctx, "t", sse.Message{Data: []byte(fmt.Sprint(i))})
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, id)
	}
	idsOf := func(es []sse.Entry) []string {
		var out []string
		for _, e := range es {
			out = append(out, e.ID)
		}
		return out
	}
	if got := idsOf(take(t, ch, 6)); !slices.Equal(got, want) {
		t.Fatalf("feed: %v, want %v", got, want)
	}
	entries, heads, err := b.Replay(ctx, []string{"t"}, start)
	if err != nil || !slices.Equal(idsOf(entries), want) || heads[0] != want[5] {
		t.Fatalf("Replay = %v, %v, %v; want %v", idsOf(entries), heads, err, want)
	}
	entries, _, err = b.Recent(ctx, []string{"t"}, 6)
	if err != nil || !slices.Equal(idsOf(entries), want) {
		t.Fatalf("Recent = %v, %v; want %v", idsOf(entries), err, want)
	}
	b2 := newBroker(t, pool, ssepostgres.Options{})
	if _, pos := feed(t, b2, "t"); pos != want[5] {
		t.Fatalf("a new node's Subscribe position is %s, want %s", pos, want[5])
	}
}

// TestLongTransactionHoldsBack: a writing transaction left open holds back
// the events committed after it began, on every feed, and Subscribe gives
// up waiting for it: its position comes before them, and the feed then
// delivers them once the transaction ends.
func TestLongTransactionHoldsBack(t *testing.T) {
	pool, _ := newDB(t)
	b := newBroker(t, pool, ssepostgres.Options{})
	ctx := context.Background()
	early, _ := feed(t, b, "t")
	long := begin(t, pool, "CREATE TABLE app (v int); INSERT INTO app VALUES (1)")
	id, err := b.Publish(ctx, "t", sse.Message{Data: []byte("held")})
	if err != nil {
		t.Fatal(err)
	}
	late, pos := feed(t, b, "t") // returns, after its bounded wait
	if pos == id {
		t.Fatalf("Subscribe's position is the held event %s", id)
	}
	none(t, early, 300*time.Millisecond)
	none(t, late, 0)
	if err := long.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	for name, ch := range map[string]chan sse.Entry{"early": early, "late": late} {
		if got := take(t, ch, 1)[0]; got.ID != id {
			t.Fatalf("%s feed: got %s, want %s", name, got.ID, id)
		}
	}
	entries, _, err := b.Replay(ctx, []string{"t"}, pos)
	if err != nil || len(entries) != 1 || entries[0].ID != id {
		t.Fatalf("Replay after the late position = %v, %v", entries, err)
	}
}

// TestNewFeedStartsAtNow: a node that serves only a quiet topic still
// moves its cursor with the rows of other topics, so that a feed of a busy
// topic that starts later does not get the topic's earlier events as new.
func TestNewFeedStartsAtNow(t *testing.T) {
	pool, _ := newDB(t)
	b := newBroker(t, pool, ssepostgres.Options{})
	other := newBroker(t, pool, ssepostgres.Options{})
	ctx := context.Background()
	if _, err := b.Publish(ctx, "quiet", sse.Message{Data: []byte("q")}); err != nil {
		t.Fatal(err)
	}
	feed(t, b, "quiet")
	for i := range 20 {
		if _, err := other.Publish(ctx, "busy", sse.Message{Data: []byte(fmt.Sprint("old", i))}); err != nil {
			t.Fatal(err)
		}
	}
	ch, start := feed(t, b, "busy")
	id, err := other.Publish(ctx, "busy", sse.Message{Data: []byte("new")})
	if err != nil {
		t.Fatal(err)
	}
	if got := data(take(t, ch, 1)); got[0] != "new" {
		t.Fatalf("a feed that started at %s, after 20 events, delivered %q first, want the one published after it (%s)", start, got[0], id)
	}
}

// TestLongNames: names up to the longest PostgreSQL keeps work, though
// together they are longer than a channel name may be; longer ones are
// refused before anything is created.
func TestLongNames(t *testing.T) {
	pool, _ := newDB(t)
	ctx := context.Background()
	schema, table := strings.Repeat("s", 63), strings.Repeat("t", 49)
	b := newBroker(t, pool, ssepostgres.Options{Schema: schema, Table: table})
	ch, _ := feed(t, b, "t")
	if _, err := b.Publish(ctx, "t", sse.Message{Data: []byte("x")}); err != nil {
		t.Fatalf("Publish with a %d-byte schema and a %d-byte table: %v", len(schema), len(table), err)
	}
	if got := data(take(t, ch, 1)); got[0] != "x" {
		t.Fatalf("got %q", got)
	}
	for _, o := range []ssepostgres.Options{{Schema: schema + "s"}, {Table: table + "t"}} {
		if _, err := ssepostgres.New(ctx, pool, o); !errors.Is(err, ssepostgres.ErrLongName) {
			t.Errorf("New(%d-byte schema, %d-byte table): %v, want ErrLongName", len(o.Schema), len(o.Table), err)
		}
	}
}
