package ssepostgres_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/b2ce5911/sse"
	ssepostgres "github.com/b2ce5911/sse/postgres"
)

// TestTwoHubsOneDatabase: an event published on either node reaches the
// subscribers of both, once, in order.
func TestTwoHubsOneDatabase(t *testing.T) {
	_, url := newDB(t)
	a, b := newNode(t, url, ssepostgres.Options{}), newNode(t, url, ssepostgres.Options{})
	sa, sb := a.subscribe(t, "topic=t", ""), b.subscribe(t, "topic=t", "")
	var want []string
	for i := range 20 {
		n := a
		if i%2 == 1 {
			n = b
		}
		d := fmt.Sprint(i)
		n.publish(t, "t", d)
		want = append(want, d)
	}
	ga, gb := sa.expect(t, want...), sb.expect(t, want...)
	for i := range ga {
		if ga[i].id != gb[i].id {
			t.Fatalf("event %d: id %s on a, %s on b", i, ga[i].id, gb[i].id)
		}
	}
	sa.silent(t, 300*time.Millisecond)
	sb.silent(t, 0)
}

// TestClientMovesBetweenNodes: a client that reconnects to the other node
// with its Last-Event-ID gets what it missed, once.
func TestClientMovesBetweenNodes(t *testing.T) {
	_, url := newDB(t)
	a, b := newNode(t, url, ssepostgres.Options{}), newNode(t, url, ssepostgres.Options{})
	s := a.subscribe(t, "topic=t", "")
	a.publish(t, "t", "1", "2")
	last := s.expect(t, "1", "2")[1].id
	s.close()
	a.publish(t, "t", "3")
	b.publish(t, "t", "4")
	s = b.subscribe(t, "topic=t", last)
	s.expect(t, "3", "4")
	a.publish(t, "t", "5")
	last = s.expect(t, "5")[0].id
	s.close()
	s = a.subscribe(t, "topic=t", last)
	b.publish(t, "t", "6")
	s.expect(t, "6")
	s.silent(t, 300*time.Millisecond)
}

// TestSeveralTopicsOneStream: with one order for all topics, a client of
// several topics resumes from one id on the other node without loss.
func TestSeveralTopicsOneStream(t *testing.T) {
	_, url := newDB(t)
	a, b := newNode(t, url, ssepostgres.Options{}), newNode(t, url, ssepostgres.Options{})
	s := a.subscribe(t, "topic=x&topic=y", "")
	a.publish(t, "x", "x1")
	b.publish(t, "y", "y1")
	a.publish(t, "y", "y2")
	last := s.expect(t, "x1", "y1", "y2")[2].id
	s.close()
	b.publish(t, "x", "x2")
	a.publish(t, "y", "y3")
	s = b.subscribe(t, "topic=y&topic=x", last)
	s.expect(t, "x2", "y3")
	s.silent(t, 300*time.Millisecond)
}

// reset reads a reset event from s and returns its reason.
func reset(t *testing.T, s *stream) sse.GapReason {
	t.Helper()
	e := s.next(t)
	if e.typ != sse.DefaultResetType {
		t.Fatalf("got %+v, want a reset event", e)
	}
	var d sse.ResetData
	if err := json.Unmarshal([]byte(e.data), &d); err != nil {
		t.Fatal(err)
	}
	return d.Reason
}

// TestGapReasons: a pruned id gives "expired"; a malformed one, or one of
// a database that was recreated (another epoch), "unknown".
func TestGapReasons(t *testing.T) {
	_, url := newDB(t)
	n := newNode(t, url, ssepostgres.Options{MaxLen: 2, PruneInterval: -1})
	ctx := context.Background()
	ids := n.publish(t, "t", "1", "2", "3", "4")
	if err := n.broker.Prune(ctx); err != nil {
		t.Fatal(err)
	}
	// Pruning kept 3 and 4: after 2 nothing is missing, after 1 it is.
	s := n.subscribe(t, "topic=t", ids[1])
	s.expect(t, "3", "4")
	s.close()
	if _, _, err := n.broker.Replay(ctx, []string{"t"}, ids[0]); !isGap(err, sse.GapExpired) {
		t.Fatalf("Replay after a pruned id: %v", err)
	}
	s = n.subscribe(t, "topic=t", ids[0])
	if r := reset(t, s); r != sse.GapExpired {
		t.Fatalf("pruned id: reason %q", r)
	}
	s.close()
	epoch, _, _ := strings.Cut(ids[3], "-")
	for _, id := range []string{"nonsense", "abc-1-2", epoch + "-99999999" + ids[3][len(epoch)+1:], epoch + "-01-2"} {
		if _, _, err := n.broker.Replay(ctx, []string{"t"}, id); !isGap(err, sse.GapUnknown) {
			t.Fatalf("Replay after %q: %v", id, err)
		}
	}
	// The same table in a new database: a new epoch.
	_, url2 := newDB(t)
	m := newNode(t, url2, ssepostgres.Options{})
	m.publish(t, "t", "1", "2", "3", "4", "5")
	s = m.subscribe(t, "topic=t", ids[3])
	if r := reset(t, s); r != sse.GapUnknown {
		t.Fatalf("id of another epoch: reason %q", r)
	}
}

func isGap(err error, reason sse.GapReason) bool {
	g, ok := err.(*sse.HistoryGapError)
	return ok && g.Reason == reason
}

// TestMaxAgePrunesByItself: the Broker's own pruner removes what is older
// than MaxAge, and its floor tells a client from before it that events
// are gone, and one from after it that nothing is.
func TestMaxAgePrunesByItself(t *testing.T) {
	pool, _ := newDB(t)
	b := newBroker(t, pool, ssepostgres.Options{MaxAge: time.Second, PruneInterval: 100 * time.Millisecond})
	ctx := context.Background()
	ch, start := feed(t, b, "t")
	id, err := b.Publish(ctx, "t", sse.Message{Data: []byte("old")})
	if err != nil {
		t.Fatal(err)
	}
	take(t, ch, 1)
	deadline := time.Now().Add(30 * time.Second)
	for {
		var left int
		if err := pool.QueryRow(ctx, "SELECT count(*) FROM sse_events").Scan(&left); err != nil {
			t.Fatal(err)
		}
		if left == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the event is still there after 30s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, _, err := b.Replay(ctx, []string{"t"}, start); !isGap(err, sse.GapExpired) {
		t.Fatalf("Replay from before the pruned event: %v", err)
	}
	entries, heads, err := b.Replay(ctx, []string{"t"}, id)
	if err != nil || len(entries) != 0 || !slices.Equal(heads, []string{id}) {
		t.Fatalf("Replay after the pruned event = %v, %v, %v", entries, heads, err)
	}
}

// TestFreshClientOfNewTopic: a client of a topic new to its node gets
// only what is published after it connected, though the node served
// another topic meanwhile.
func TestFreshClientOfNewTopic(t *testing.T) {
	_, url := newDB(t)
	a := newNode(t, url, ssepostgres.Options{})
	p := newNode(t, url, ssepostgres.Options{})
	a.publish(t, "quiet", "q")
	a.subscribe(t, "topic=quiet", "")
	p.publish(t, "busy", "old1", "old2", "old3")
	s := a.subscribe(t, "topic=busy", "")
	p.publish(t, "busy", "new")
	s.expect(t, "new")
}

// TestMaxAgeCountsFromPublish: an event's age starts when it is published,
// not when its transaction began, so that a transaction older than MaxAge
// does not see its events pruned as soon as it commits.
func TestMaxAgeCountsFromPublish(t *testing.T) {
	pool, _ := newDB(t)
	b := newBroker(t, pool, ssepostgres.Options{MaxAge: 2 * time.Second, PruneInterval: -1})
	ctx := context.Background()
	tx := begin(t, pool, "SELECT 1")
	time.Sleep(3 * time.Second) // the transaction is older than MaxAge
	if _, err := b.PublishTx(ctx, tx, "t", sse.Message{Data: []byte("late")}); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.Prune(ctx); err != nil {
		t.Fatal(err)
	}
	entries, _, err := b.Recent(ctx, []string{"t"}, 10)
	if err != nil || len(entries) != 1 || string(entries[0].Data) != "late" {
		t.Fatalf("Recent after a prune = %v, %v, want the event just published", entries, err)
	}
}
