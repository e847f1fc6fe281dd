// Package brokertest holds every [sse.Broker] to the contract the
// [sse.Hub] relies on: one suite that the in-memory Broker, the Redis one
// and any Broker of your own run alike.
//
// [Run] runs each property as a subtest of its own, on a fresh Broker:
// ids and fields that round-trip through the feeds and Replay, invalid
// fields refused, feeds in publish order and exactly once from the
// position Subscribe returns, Replay after an id and its heads, Newest of
// positions, history gaps with their reasons, feeds that stop with their
// context, a Close that does not hang, and [sse.RecentBroker.Recent] for a
// Broker that has it. The subtests run in parallel. Waits are bounded by
// generous timeouts (10 s) and nothing is timed, so the suite is as
// reliable on a loaded machine as the Broker is.
//
// Run does not look for goroutines left behind: the brokers' feeds may end
// a moment after their context, and the test binary's other tests run
// meanwhile. Check that in TestMain, after every test (goleak's
// VerifyTestMain does).
package brokertest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/b2ce5911/sse"
)

// Options says what the brokers under test can do, where the contract of
// [sse.Broker] lets a Broker choose. The zero value describes a Broker that
// keeps the ids publishers set and whose history is not bounded (or not
// bounded enough for the suite to reach).
type Options struct {
	// AssignsIDs says that the brokers assign every id themselves: Publish
	// of a Message whose ID is set must then fail and store nothing. When
	// false, Publish must return a set ID as the event's id, and the feeds
	// and Replay must know the event by it.
	AssignsIDs bool

	// History, when positive, is how the suite makes a broker drop old
	// events: once History more events are published on a topic after an
	// event, that event is no longer kept, and Replay after the one before
	// it must fail with [sse.GapExpired]. Configure newBroker's brokers so
	// (a MemoryBroker with History n keeps this promise for n). The other
	// subtests publish up to [MaxEvents] events on a topic and need them
	// all kept: the brokers' history must hold at least as many. Zero
	// skips the subtest of expired history.
	History int

	// Prune, when set, is called once the History events are published,
	// before Replay: for a broker that drops events only when asked to,
	// or on a timer.
	Prune func(t *testing.T, b sse.Broker)
}

// MaxEvents is the most events a subtest publishes on one topic, but for
// the one of [Options.History]. Brokers under test must keep at least as
// many per topic.
const MaxEvents = 128

// hang bounds every wait of the suite: anything slower is taken for a
// Broker that hangs, not a slow machine.
const hang = 10 * time.Second

// Run runs the contract of [sse.Broker] against brokers that newBroker
// makes, each subtest with a broker of its own, which Run closes when the
// subtest ends (newBroker may register cleanups of its own with t.Cleanup,
// for what the broker needs: they run after that Close). newBroker is
// called from the subtests' goroutines, possibly at once.
//
// The subtests, which -run can pick:
//   - PublishReturnsDistinctIDs: an id per event, by which Replay knows it.
//   - PublisherSetID: a set Message.ID is kept, or refused
//     ([Options.AssignsIDs]).
//   - FieldsRoundTrip: Type, multi-line and empty Data, Retry and Comment
//     come back unchanged from the feed, Replay and Recent.
//   - InvalidFieldsRefused: a line break in Type, Comment or ID, or a NUL
//     in ID, fails with [sse.ErrInvalidField] and stores nothing.
//   - SubscribeFeedsLaterEvents: a feed delivers what is published after
//     Subscribe, in order, once, one call at a time; Replay after its
//     position has nothing yet.
//   - SubscribePositionIsExact: with publishes racing Subscribe, Replay up
//     to its position and the feed after it hold every event once.
//   - ConcurrentPublishers: two feeds of a topic with four publishers
//     deliver the order Replay returns, which keeps each publisher's order.
//   - ReplayAfterID: the later events of the topics asked, oldest first,
//     other topics left out, and the heads.
//   - NewestOfPositions: Replay after Newest of a client's positions gives
//     it what it has not seen, and nothing it has.
//   - GapUnknown: an id the broker never made, or another broker's, fails
//     with [sse.GapUnknown].
//   - GapExpired: an id whose successors are gone fails with
//     [sse.GapExpired] ([Options.History]).
//   - SubscribeEndsWithContext: nothing published after a feed's ctx ended
//     is delivered to it.
//   - Close: returns with feeds running; Publish and Subscribe fail after.
//   - Recent: for an [sse.RecentBroker], the newest n events of each topic
//     in Replay's order, and the heads.
func Run(t *testing.T, newBroker func(t *testing.T) sse.Broker, o Options) {
	s := &suite{newBroker: newBroker, o: o}
	for _, c := range []struct {
		name string
		test func(*testing.T)
	}{
		{"PublishReturnsDistinctIDs", s.publishReturnsDistinctIDs},
		{"PublisherSetID", s.publisherSetID},
		{"FieldsRoundTrip", s.fieldsRoundTrip},
		{"InvalidFieldsRefused", s.invalidFieldsRefused},
		{"SubscribeFeedsLaterEvents", s.subscribeFeedsLaterEvents},
		{"SubscribePositionIsExact", s.subscribePositionIsExact},
		{"ConcurrentPublishers", s.concurrentPublishers},
		{"ReplayAfterID", s.replayAfterID},
		{"NewestOfPositions", s.newestOfPositions},
		{"GapUnknown", s.gapUnknown},
		{"GapExpired", s.gapExpired},
		{"SubscribeEndsWithContext", s.subscribeEndsWithContext},
		{"Close", s.close},
		{"Recent", s.recent},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			c.test(t)
		})
	}
}

type suite struct {
	newBroker func(t *testing.T) sse.Broker
	o         Options
}

// broker makes a broker that is closed when t ends.
func (s *suite) broker(t *testing.T) sse.Broker {
	t.Helper()
	b := s.newBroker(t)
	if b == nil {
		t.Fatal("newBroker returned nil")
	}
	t.Cleanup(func() {
		if err := closeWithin(b); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return b
}

var errCloseHangs = errors.New("brokertest: Close did not return within 10 s")

// closeWithin closes b, giving up after hang.
func closeWithin(b sse.Broker) error {
	done := make(chan error, 1)
	go func() { done <- b.Close() }()
	select {
	case err := <-done:
		return err
	case <-time.After(hang):
		return errCloseHangs
	}
}

// publishReturnsDistinctIDs: Publish returns an id, another for each
// event, by which Replay knows them.
func (s *suite) publishReturnsDistinctIDs(t *testing.T) {
	b := s.broker(t)
	f := subscribe(t, b, "a")
	want := publishN(t, b, "a", "e", 5)
	seen := map[string]bool{}
	for _, e := range want {
		if e.ID == "" {
			t.Fatalf("Publish returned an empty id")
		}
		if seen[e.ID] {
			t.Fatalf("Publish returned id %q twice", e.ID)
		}
		seen[e.ID] = true
	}
	same(t, "Replay after the position of Subscribe", replay(t, b, []string{"a"}, f.pos), want)
	same(t, "feed", f.until(t, b), want)
}

// publisherSetID: a set m.ID is the event's id, or is refused when the
// broker assigns them all.
func (s *suite) publisherSetID(t *testing.T) {
	b := s.broker(t)
	f := subscribe(t, b, "a")
	m := sse.Message{ID: "publisher-1", Data: []byte("set id")}
	id, err := b.Publish(context.Background(), "a", m)
	if s.o.AssignsIDs {
		if err == nil {
			t.Fatalf("Publish of a Message with ID %q returned id %q and no error; Options.AssignsIDs says it must refuse it", m.ID, id)
		}
		same(t, "feed after a refused Publish", f.until(t, b), nil)
		same(t, "Replay after a refused Publish", withoutEnd(t, replay(t, b, []string{"a"}, f.pos)), nil)
		return
	}
	if err != nil {
		t.Fatalf("Publish of a Message with ID %q: %v (if the broker cannot keep ids, set Options.AssignsIDs)", m.ID, err)
	}
	if id != m.ID {
		t.Fatalf("Publish of a Message with ID %q returned id %q", m.ID, id)
	}
	first := sse.Entry{Topic: "a", Message: m}
	later := publishN(t, b, "a", "later", 2)
	want := append([]sse.Entry{first}, later...)
	same(t, "Replay after the position of Subscribe", replay(t, b, []string{"a"}, f.pos), want)
	same(t, "Replay after the publisher-set id", replay(t, b, []string{"a"}, m.ID), later)
	newest := newest(t, b, []string{"a"}, []string{m.ID})
	same(t, "Replay after Newest of the publisher-set id", replay(t, b, []string{"a"}, newest), later)
	same(t, "feed", f.until(t, b), want)
}

// fieldsRoundTrip: every field of a Message comes back as it was
// published, from the feed, Replay and Recent.
func (s *suite) fieldsRoundTrip(t *testing.T) {
	b := s.broker(t)
	f := subscribe(t, b, "a")
	var want []sse.Entry
	for _, m := range []sse.Message{
		{Type: "greeting", Data: []byte("hello")},
		{Data: []byte("line 1\nline 2\r\nline 3\rline 4")},
		{Data: []byte("ends with a line break\n")},
		{Data: []byte{}},
		{},
		{Data: []byte("retry"), Retry: 2500 * time.Millisecond},
		{Data: []byte("commented"), Comment: "a comment"},
		{Type: "all", Data: []byte("every\nfield"), Retry: time.Second, Comment: "all of them"},
		{Data: []byte(": not a comment, data: not a field\n\nid: not an id")},
		{Data: []byte("unicode: é ✓ 😀 \u2028")},
	} {
		want = append(want, publish(t, b, "a", m))
	}
	if rb, ok := b.(sse.RecentBroker); ok {
		got, _, err := rb.Recent(context.Background(), []string{"a"}, len(want))
		if err != nil {
			t.Fatalf("Recent: %v", err)
		}
		same(t, "Recent", got, want)
	}
	same(t, "Replay", replay(t, b, []string{"a"}, f.pos), want)
	same(t, "feed", f.until(t, b), want)
}

// invalidFieldsRefused: a Message that cannot go on the wire as it is
// fails with an error wrapping ErrInvalidField and stores nothing.
func (s *suite) invalidFieldsRefused(t *testing.T) {
	b := s.broker(t)
	f := subscribe(t, b, "a")
	for _, m := range []sse.Message{
		{Type: "two\nlines", Data: []byte("x")},
		{Type: "two\rlines", Data: []byte("x")},
		{Comment: "two\nlines", Data: []byte("x")},
		{ID: "two\nlines", Data: []byte("x")},
		{ID: "two\r\nlines", Data: []byte("x")},
		{ID: "nul\x00byte", Data: []byte("x")},
	} {
		id, err := b.Publish(context.Background(), "a", m)
		switch {
		case err == nil:
			t.Errorf("Publish of %s returned id %q and no error", describe(m), id)
		case m.ID != "" && s.o.AssignsIDs:
			// Refusing the id is refusing the message, whichever check
			// comes first.
		case !errors.Is(err, sse.ErrInvalidField):
			t.Errorf("Publish of %s: %v, which does not wrap sse.ErrInvalidField", describe(m), err)
		}
	}
	same(t, "feed after the refused publishes", f.until(t, b), nil)
	same(t, "Replay after the refused publishes", withoutEnd(t, replay(t, b, []string{"a"}, f.pos)), nil)
}

// subscribeFeedsLaterEvents: a feed delivers the events published after
// Subscribe, none before, and Replay from its position has nothing yet.
func (s *suite) subscribeFeedsLaterEvents(t *testing.T) {
	b := s.broker(t)
	before := publishN(t, b, "a", "before", 3)
	f := subscribe(t, b, "a")
	entries, heads := replayHeads(t, b, []string{"a"}, f.pos)
	same(t, "Replay after the position of Subscribe, before anything new", entries, nil)
	if heads[0] != f.pos {
		t.Errorf("Replay after the position %q of Subscribe: head %q", f.pos, heads[0])
	}
	if f.pos != before[len(before)-1].ID {
		t.Errorf("Subscribe returned position %q; the newest event stored is %q", f.pos, before[len(before)-1].ID)
	}
	want := publishN(t, b, "a", "after", 20)
	same(t, "feed", f.until(t, b), want)
}

// subscribePositionIsExact: with events published while Subscribe runs,
// Replay up to its position and the feed after it hold every event once.
func (s *suite) subscribePositionIsExact(t *testing.T) {
	b := s.broker(t)
	const n = 20
	for round := range 10 {
		topic := fmt.Sprint("round-", round)
		before := subscribe(t, b, topic) // where the round starts
		var wg sync.WaitGroup
		wg.Add(1)
		errs := make(chan error, 1)
		go func() {
			defer wg.Done()
			for i := range n {
				if _, err := b.Publish(context.Background(), topic, sse.Message{Data: []byte(fmt.Sprint("during-", i))}); err != nil {
					errs <- err
					return
				}
			}
		}()
		f := subscribe(t, b, topic)
		wg.Wait()
		select {
		case err := <-errs:
			t.Fatalf("Publish: %v", err)
		default:
		}
		fed := f.until(t, b)
		all := withoutEnd(t, replay(t, b, []string{topic}, before.pos))
		if len(all) != n {
			t.Fatalf("round %d: Replay after the position of a feed that started first returned %d events; %d were published", round, len(all), n)
		}
		// The position may be any that Replay takes: the events after it
		// must be the last of the round, and the feed's.
		rest := withoutEnd(t, replay(t, b, []string{topic}, f.pos))
		if len(rest) > n || !slices.Equal(ids(rest), ids(all[n-len(rest):])) {
			t.Fatalf("round %d: Replay after the position %q of Subscribe returned %v, which are not the last of the round's %v", round, f.pos, ids(rest), ids(all))
		}
		same(t, fmt.Sprintf("round %d: feed after position %q", round, f.pos), fed, rest)
	}
}

// concurrentPublishers: with several publishers on a topic, two feeds of
// it deliver every event once, in the one order Replay returns them in,
// and each publisher's events in its order.
func (s *suite) concurrentPublishers(t *testing.T) {
	b := s.broker(t)
	f1 := subscribe(t, b, "a")
	f2 := subscribe(t, b, "a")
	const publishers, each = 4, 25
	published := make([][]string, publishers)
	var wg sync.WaitGroup
	errs := make(chan error, publishers)
	for p := range publishers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				id, err := b.Publish(context.Background(), "a", sse.Message{Data: []byte(fmt.Sprintf("%d-%d", p, i))})
				if err != nil {
					errs <- err
					return
				}
				published[p] = append(published[p], id)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("Publish: %v", err)
	}
	// The feeds first: a broker whose reads lag behind its writes has
	// caught up with them once a feed delivered what came after.
	end := publishEnd(t, b, "a")
	fed1, fed2 := f1.wait(t, end.ID), f2.wait(t, end.ID)
	all := withoutEnd(t, replay(t, b, []string{"a"}, f1.pos))
	if len(all) != publishers*each {
		t.Fatalf("Replay returned %d events; %d were published", len(all), publishers*each)
	}
	returned := map[string]bool{}
	for _, ids := range published {
		for _, id := range ids {
			returned[id] = true
		}
	}
	next := make([]int, publishers)
	for _, e := range all {
		if !returned[e.ID] {
			t.Fatalf("Replay returned id %q, which Publish did not return (or returned twice)", e.ID)
		}
		delete(returned, e.ID)
		var p, i int
		fmt.Sscanf(string(e.Data), "%d-%d", &p, &i)
		if p < 0 || p >= publishers || i != next[p] || published[p][i] != e.ID {
			t.Fatalf("Replay returned %q (id %q) where publisher %d's event %d was next", e.Data, e.ID, p, next[p])
		}
		next[p]++
	}
	same(t, "first feed", fed1, all)
	same(t, "second feed", fed2, all)
}

// replayAfterID: Replay after the id of an event returns the later events
// of the topics asked, oldest first, with the heads of the topics.
func (s *suite) replayAfterID(t *testing.T) {
	b := s.broker(t)
	empty := subscribe(t, b, "empty")
	all := publishSeq(t, b, "a b c a a b c b a c") // and some on topic c
	of := func(topic string, es []sse.Entry) []sse.Entry {
		return slices.DeleteFunc(slices.Clone(es), func(e sse.Entry) bool { return e.Topic != topic })
	}
	headA, headB := newestOf("a", all), newestOf("b", all)
	for k, after := range all {
		topics := []string{"a", "b", "empty"}
		got, heads := replayHeads(t, b, topics, after.ID)
		same(t, fmt.Sprintf("Replay of %q after %q", topics, after.ID), got, all[k+1:])
		if want := []string{headA, headB, empty.pos}; !slices.Equal(heads, want) {
			t.Errorf("Replay of %q after %q: heads %q, want %q", topics, after.ID, heads, want)
		}
		topics = []string{after.Topic}
		got, heads = replayHeads(t, b, topics, after.ID)
		same(t, fmt.Sprintf("Replay of %q after %q", topics, after.ID), got, of(after.Topic, all[k+1:]))
		if want := map[string]string{"a": headA, "b": headB}[after.Topic]; heads[0] != want {
			t.Errorf("Replay of %q after %q: head %q, want %q", topics, after.ID, heads[0], want)
		}
	}
}

// newestOfPositions: for a client that has seen the events up to some
// point, Newest of its positions in its topics is where Replay gives it
// exactly the events after that point.
func (s *suite) newestOfPositions(t *testing.T) {
	b := s.broker(t)
	topics := []string{"a", "b", "empty"}
	pos := make([]string, len(topics))
	for i, topic := range topics {
		pos[i] = subscribe(t, b, topic).pos
	}
	all := publishSeq(t, b, "a b c a b b c a") // and some on topic c
	for k := -1; k < len(all); k++ {
		if k >= 0 {
			pos[slices.Index(topics, all[k].Topic)] = all[k].ID
		}
		n := newest(t, b, topics, pos)
		same(t, fmt.Sprintf("Replay of %q after Newest(%q) = %q", topics, pos, n), replay(t, b, topics, n), all[k+1:])
	}
	_, heads := replayHeads(t, b, topics, all[0].ID)
	n := newest(t, b, topics, heads)
	more := publishN(t, b, "b", "more", 2)
	same(t, fmt.Sprintf("Replay of %q after Newest of heads %q", topics, heads), replay(t, b, topics, n), more)
}

// gapUnknown: Replay after an id the broker does not know fails with
// GapUnknown.
func (s *suite) gapUnknown(t *testing.T) {
	b := s.broker(t)
	other := s.broker(t)
	otherID := publish(t, other, "a", sse.Message{Data: []byte("elsewhere")}).ID
	empty := subscribe(t, b, "empty")
	known := publishN(t, b, "a", "e", 3)
	bad := []string{"garbage", "0", "-", known[0].ID + "x", "x" + known[0].ID}
	if !slices.ContainsFunc(known, func(e sse.Entry) bool { return e.ID == otherID }) && otherID != empty.pos {
		bad = append(bad, otherID) // another broker's: unknown, unless both made it
	}
	for _, topics := range [][]string{{"a"}, {"a", "empty"}, {"empty"}} {
		for _, id := range bad {
			entries, _, err := b.Replay(context.Background(), topics, id)
			gap(t, fmt.Sprintf("Replay of %q after unknown id %q", topics, id), entries, err, sse.GapUnknown)
		}
	}
}

// gapExpired: Replay after an id whose successors are no longer kept
// fails with GapExpired.
func (s *suite) gapExpired(t *testing.T) {
	if s.o.History <= 0 {
		t.Skip("Options.History is not set: the suite cannot make the broker drop events")
	}
	b := s.broker(t)
	f := subscribe(t, b, "a")
	old := publishN(t, b, "a", "old", 2)
	publishN(t, b, "b", "other topic", 1)
	kept := publishN(t, b, "a", "kept", s.o.History)
	if s.o.Prune != nil {
		s.o.Prune(t, b)
	}
	for _, topics := range [][]string{{"a"}, {"a", "b"}} {
		entries, _, err := b.Replay(context.Background(), topics, old[0].ID)
		gap(t, fmt.Sprintf("Replay of %q after %q, whose successor was pushed out by %d later events", topics, old[0].ID, s.o.History), entries, err, sse.GapExpired)
	}
	same(t, "Replay after the newest event, once older ones are gone", replay(t, b, []string{"a"}, kept[len(kept)-1].ID), nil)
	same(t, "feed", f.until(t, b), append(old, kept...))
}

// subscribeEndsWithContext: a feed delivers nothing published after its
// context ended, including one whose context ended before Subscribe.
func (s *suite) subscribeEndsWithContext(t *testing.T) {
	b := s.broker(t)
	witness := subscribe(t, b, "a")
	var ended []*feed
	for range 3 {
		ctx, cancel := context.WithCancel(context.Background())
		f := newFeed("a")
		pos, err := b.Subscribe(ctx, "a", f.deliver)
		if err != nil {
			t.Fatalf("Subscribe: %v", err)
		}
		f.pos = pos
		ended = append(ended, f)
		first := publish(t, b, "a", sse.Message{Data: []byte("while subscribed")})
		f.wait(t, first.ID)
		cancel()
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	late := newFeed("a")
	if _, err := b.Subscribe(ctx, "a", late.deliver); err == nil {
		ended = append(ended, late)
	}
	after := publishN(t, b, "a", "after cancel", 10)
	witness.wait(t, after[len(after)-1].ID)
	time.Sleep(10 * time.Millisecond) // a moment for a feed that lags the witness to show it was not stopped
	for i, f := range ended {
		for _, e := range f.entries() {
			if slices.ContainsFunc(after, func(a sse.Entry) bool { return a.ID == e.ID }) {
				t.Errorf("feed %d delivered %q, published after its context was cancelled", i, e.Data)
			}
		}
		f.check(t)
	}
}

// close: Close returns with feeds running, and later Publish and
// Subscribe calls fail.
func (s *suite) close(t *testing.T) {
	b := s.newBroker(t)
	if b == nil {
		t.Fatal("newBroker returned nil")
	}
	feeds := []*feed{subscribe(t, b, "a"), subscribe(t, b, "a"), subscribe(t, b, "b")}
	a := publish(t, b, "a", sse.Message{Data: []byte("a")})
	bb := publish(t, b, "b", sse.Message{Data: []byte("b")})
	feeds[0].wait(t, a.ID)
	feeds[1].wait(t, a.ID)
	feeds[2].wait(t, bb.ID)
	if err := closeWithin(b); err != nil {
		t.Fatalf("Close with feeds running: %v", err)
	}
	if id, err := b.Publish(context.Background(), "a", sse.Message{Data: []byte("after Close")}); err == nil {
		t.Errorf("Publish after Close returned id %q and no error", id)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if _, err := b.Subscribe(ctx, "a", func(sse.Entry) {}); err == nil {
		t.Errorf("Subscribe after Close returned no error")
	}
}

// recent: Recent returns the newest n events of each topic, in Replay's
// order, and the topics' heads.
func (s *suite) recent(t *testing.T) {
	b := s.broker(t)
	rb, ok := b.(sse.RecentBroker)
	if !ok {
		t.Skipf("%T is not an sse.RecentBroker", b)
	}
	empty := subscribe(t, b, "empty")
	all := publishSeq(t, b, "a b c a a b c a") // and some on topic c
	topics := []string{"a", "b", "empty"}
	heads := []string{newestOf("a", all), newestOf("b", all), empty.pos}
	for _, n := range []int{0, 1, 2, 3, 100} {
		var want []sse.Entry
		for i, e := range all {
			later := 0
			for _, l := range all[i+1:] {
				if l.Topic == e.Topic {
					later++
				}
			}
			if later < n {
				want = append(want, e)
			}
		}
		got, gotHeads, err := rb.Recent(context.Background(), topics, n)
		if err != nil {
			t.Fatalf("Recent(%q, %d): %v", topics, n, err)
		}
		same(t, fmt.Sprintf("Recent(%q, %d)", topics, n), got, want)
		if !slices.Equal(gotHeads, heads) {
			t.Errorf("Recent(%q, %d): heads %q, want %q", topics, n, gotHeads, heads)
		}
	}
}

// feed records what a feed delivers.
type feed struct {
	topic   string
	pos     string
	busy    atomic.Int32
	overlap atomic.Bool // deliver was called while a call ran

	mu      sync.Mutex
	got     []sse.Entry
	changed chan struct{} // closed at the next delivery
}

func newFeed(topic string) *feed { return &feed{topic: topic, changed: make(chan struct{})} }

// subscribe starts a feed of topic that ends with t.
func subscribe(t *testing.T, b sse.Broker, topic string) *feed {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	f := newFeed(topic)
	pos, err := b.Subscribe(ctx, topic, f.deliver)
	if err != nil {
		t.Fatalf("Subscribe(%q): %v", topic, err)
	}
	f.pos = pos
	return f
}

func (f *feed) deliver(e sse.Entry) {
	if f.busy.Add(1) != 1 {
		f.overlap.Store(true)
	}
	runtime.Gosched() // room for another call to overlap this one
	e.Data = bytes.Clone(e.Data)
	f.mu.Lock()
	f.got = append(f.got, e)
	close(f.changed)
	f.changed = make(chan struct{})
	f.mu.Unlock()
	f.busy.Add(-1)
}

func (f *feed) entries() []sse.Entry {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.got)
}

// wait waits until f has delivered the event with id, and returns what it
// delivered up to it.
func (f *feed) wait(t *testing.T, id string) []sse.Entry {
	t.Helper()
	deadline := time.NewTimer(hang)
	defer deadline.Stop()
	for {
		f.mu.Lock()
		i := slices.IndexFunc(f.got, func(e sse.Entry) bool { return e.ID == id })
		got, changed := slices.Clone(f.got), f.changed
		f.mu.Unlock()
		if i >= 0 {
			f.check(t)
			if len(got) > i+1 {
				t.Errorf("the feed delivered %d events after %q, the newest published: %v", len(got)-i-1, id, ids(got[i+1:]))
			}
			return got[:i]
		}
		select {
		case <-changed:
		case <-deadline.C:
			t.Fatalf("the feed did not deliver event %q within %v; it delivered %d: %v", id, hang, len(got), ids(got))
		}
	}
}

// until publishes an end marker on f's topic, waits until f delivered it,
// and returns what f delivered before it.
func (f *feed) until(t *testing.T, b sse.Broker) []sse.Entry {
	t.Helper()
	return f.wait(t, publishEnd(t, b, f.topic).ID)
}

// publishEnd publishes an end marker: once a feed delivered it, the feed
// has delivered what it will of the events published before.
func publishEnd(t *testing.T, b sse.Broker, topic string) sse.Entry {
	t.Helper()
	return publish(t, b, topic, sse.Message{Type: "end", Data: []byte("end marker")})
}

// withoutEnd returns es, which Replay returned after an end marker was
// published, without it.
func withoutEnd(t *testing.T, es []sse.Entry) []sse.Entry {
	t.Helper()
	if len(es) == 0 || es[len(es)-1].Type != "end" {
		t.Fatalf("Replay did not return the end marker last: %v", ids(es))
	}
	return es[:len(es)-1]
}

// check reports calls of deliver that overlapped.
func (f *feed) check(t *testing.T) {
	t.Helper()
	if f.overlap.Load() {
		t.Errorf("the feed called deliver while a call was still running")
	}
}

func publish(t *testing.T, b sse.Broker, topic string, m sse.Message) sse.Entry {
	t.Helper()
	id, err := b.Publish(context.Background(), topic, m)
	if err != nil {
		t.Fatalf("Publish on %q: %v", topic, err)
	}
	m.ID = id
	return sse.Entry{Topic: topic, Message: m}
}

// publishSeq publishes an event on each topic of seq, in order, and
// returns those of topics other than "c", the topic left out of every
// Replay.
func publishSeq(t *testing.T, b sse.Broker, seq string) []sse.Entry {
	t.Helper()
	var es []sse.Entry
	for i, topic := range strings.Fields(seq) {
		e := publish(t, b, topic, sse.Message{Data: []byte(fmt.Sprint(topic, i))})
		if topic != "c" {
			es = append(es, e)
		}
	}
	return es
}

// publishN publishes n events with data prefix-0, prefix-1...
func publishN(t *testing.T, b sse.Broker, topic, prefix string, n int) []sse.Entry {
	t.Helper()
	var es []sse.Entry
	for i := range n {
		es = append(es, publish(t, b, topic, sse.Message{Data: []byte(fmt.Sprint(prefix, "-", i))}))
	}
	return es
}

func replay(t *testing.T, b sse.Broker, topics []string, after string) []sse.Entry {
	t.Helper()
	entries, _ := replayHeads(t, b, topics, after)
	return entries
}

func replayHeads(t *testing.T, b sse.Broker, topics []string, after string) ([]sse.Entry, []string) {
	t.Helper()
	entries, heads, err := b.Replay(context.Background(), topics, after)
	if err != nil {
		t.Fatalf("Replay of %q after %q: %v", topics, after, err)
	}
	if len(heads) != len(topics) {
		t.Fatalf("Replay of %q after %q: %d heads", topics, after, len(heads))
	}
	return entries, heads
}

func newest(t *testing.T, b sse.Broker, topics, ids []string) string {
	t.Helper()
	id, err := b.Newest(context.Background(), topics, ids)
	if err != nil {
		t.Fatalf("Newest(%q, %q): %v", topics, ids, err)
	}
	return id
}

// gap checks that err is a history gap for reason.
func gap(t *testing.T, what string, entries []sse.Entry, err error, reason sse.GapReason) {
	t.Helper()
	var ge *sse.HistoryGapError
	switch {
	case err == nil:
		t.Errorf("%s: no error, %d events; want a gap (%s)", what, len(entries), reason)
	case !errors.Is(err, sse.ErrHistoryGap):
		t.Errorf("%s: %v, which does not match sse.ErrHistoryGap", what, err)
	case !errors.As(err, &ge):
		t.Errorf("%s: %v, which is no *sse.HistoryGapError", what, err)
	case ge.Reason != reason:
		t.Errorf("%s: gap for reason %q, want %q (%v)", what, ge.Reason, reason, err)
	}
}

// same reports where got and want differ, field by field.
func same(t *testing.T, what string, got, want []sse.Entry) {
	t.Helper()
	for i := range max(len(got), len(want)) {
		switch {
		case i >= len(got):
			t.Errorf("%s: %d events, want %d: missing %s", what, len(got), len(want), describeEntry(want[i]))
			return
		case i >= len(want):
			t.Errorf("%s: %d events, want %d: extra %s", what, len(got), len(want), describeEntry(got[i]))
			return
		}
		g, w := got[i], want[i]
		if g.Topic != w.Topic || g.ID != w.ID || g.Type != w.Type || !bytes.Equal(g.Data, w.Data) || g.Retry != w.Retry || g.Comment != w.Comment {
			t.Errorf("%s: event %d is %s, want %s", what, i, describeEntry(g), describeEntry(w))
			return
		}
	}
}

func describeEntry(e sse.Entry) string {
	return fmt.Sprintf("{Topic: %q, %s}", e.Topic, describe(e.Message))
}

func describe(m sse.Message) string {
	return fmt.Sprintf("{ID: %q, Type: %q, Data: %q, Retry: %v, Comment: %q}", m.ID, m.Type, m.Data, m.Retry, m.Comment)
}

// newestOf returns the id of the newest event of topic in es.
func newestOf(topic string, es []sse.Entry) string {
	for _, e := range slices.Backward(es) {
		if e.Topic == topic {
			return e.ID
		}
	}
	return ""
}

func ids(es []sse.Entry) []string {
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = e.ID
	}
	return out
}
