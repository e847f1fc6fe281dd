package sse_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/b2ce5911/sse"
)

// gapBroker is a MemoryBroker whose feeds can be held (their events never
// delivered, as a store that trims what a lagging feed has yet to read)
// and made to report a gap, as a feed that finds its place trimmed does.
type gapBroker struct {
	*sse.MemoryBroker
	mu         sync.Mutex
	hold       bool
	feeds      map[string]func(sse.Entry) // the newest feed of each topic
	subscribes map[string]int
}

func newGapBroker() *gapBroker {
	return &gapBroker{MemoryBroker: &sse.MemoryBroker{}, feeds: map[string]func(sse.Entry){}, subscribes: map[string]int{}}
}

func (b *gapBroker) Subscribe(ctx context.Context, topic string, deliver func(sse.Entry)) (string, error) {
	var mu sync.Mutex // one call of deliver at a time, the feed's or the test's
	serial := func(e sse.Entry) {
		mu.Lock()
		defer mu.Unlock()
		deliver(e)
	}
	b.mu.Lock()
	b.feeds[topic] = serial
	b.subscribes[topic]++
	b.mu.Unlock()
	return b.MemoryBroker.Subscribe(ctx, topic, func(e sse.Entry) {
		b.mu.Lock()
		hold := b.hold
		b.mu.Unlock()
		if !hold {
			serial(e)
		}
	})
}

func (b *gapBroker) setHold(hold bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.hold = hold
}

// gap makes topic's newest feed report a gap.
func (b *gapBroker) gap(topic string) {
	b.mu.Lock()
	deliver := b.feeds[topic]
	b.mu.Unlock()
	deliver(sse.Entry{Topic: topic, Gap: &sse.HistoryGapError{Reason: sse.GapExpired, Err: errors.New("trimmed")}})
}

func (b *gapBroker) subscribeCount(topic string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.subscribes[topic]
}

// ends checks that d's stream ends, without another event, within a bound
// on a hang.
func ends(t *testing.T, name string, d *sse.Decoder) {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		e, err := d.Decode()
		if err == nil {
			err = errors.New("event " + string(e.Bytes()) + " " + e.ID)
		} else {
			err = nil
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("%s: got %v, want the stream to end", name, err)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: the stream is still open after 10 s", name)
	}
}

// expectData reads len(want) events of d and checks their data.
func expectData(t *testing.T, name string, d *sse.Decoder, want ...string) []ev {
	t.Helper()
	var got []ev
	for _, w := range want {
		e := next(t, d)
		if e.data != w {
			t.Fatalf("%s: got %+v, want %q", name, e, w)
		}
		got = append(got, e)
	}
	return got
}

// TestHubFeedGapEvictsSubscribers: a feed that reports a gap cuts every
// subscriber of its topic off, those of other topics staying; a client
// that then resumes replays what it missed, from a new feed.
func TestHubFeedGapEvictsSubscribers(t *testing.T) {
	t.Parallel()
	b := newGapBroker()
	h := &sse.Hub{Broker: b}
	ts := hubServer(t, h)
	one := subscribed(t, h, ts, "topic=t", nil)
	two := subscribed(t, h, ts, "topic=t", nil)
	other := subscribed(t, h, ts, "topic=u", nil)
	e1 := publish(t, h, "t", "e1")
	expectData(t, "one", one, "e1")
	expectData(t, "two", two, "e1")
	b.setHold(true)
	publish(t, h, "t", "e2") // stored, never delivered by this feed
	b.gap("t")
	ends(t, "one", one)
	ends(t, "two", two)
	if s := h.Stats(); s.Evicted != 2 {
		t.Errorf("stats %+v, want 2 evicted", s)
	}
	b.setHold(false)
	publish(t, h, "u", "u1")
	expectData(t, "other topic", other, "u1")
	resumed := subscribed(t, h, ts, "topic=t", http.Header{"Last-Event-Id": e1})
	publish(t, h, "t", "e3")
	expectData(t, "resumed", resumed, "e2", "e3")
	if n := b.subscribeCount("t"); n != 2 {
		t.Errorf("%d feeds of t started, want 2", n)
	}
}

// TestHubGapEndsWaitForReplayHead: a client resumes on a node whose feed
// lags; its replay ends at a head the feed never delivers (it was trimmed
// before the feed read it). The Hub skips the feed's events up to that
// head, which would be forever: the feed's gap cuts the client off
// instead, and it resumes from what it has.
func TestHubGapEndsWaitForReplayHead(t *testing.T) {
	t.Parallel()
	b := newGapBroker()
	h := &sse.Hub{Broker: b}
	ts := hubServer(t, h)
	live := subscribed(t, h, ts, "topic=t", nil)
	e1 := publish(t, h, "t", "e1")
	expectData(t, "live", live, "e1")
	b.setHold(true)
	ids := publish(t, h, "t", "e2", "e3") // the feed will never deliver them
	resumed := subscribed(t, h, ts, "topic=t", http.Header{"Last-Event-Id": e1})
	for i, e := range expectData(t, "resumed", resumed, "e2", "e3") {
		if e.id != ids[i] {
			t.Fatalf("resumed: got %+v, want id %s", e, ids[i])
		}
	}
	b.gap("t")
	ends(t, "live", live)
	ends(t, "resumed", resumed)
	b.setHold(false)
	again := subscribed(t, h, ts, "topic=t", http.Header{"Last-Event-Id": {ids[1]}})
	publish(t, h, "t", "e4")
	expectData(t, "after the gap", again, "e4")
}

// TestHubGapServeReturnsErrEvicted: Serve of a subscriber whose feed
// reports a gap returns ErrEvicted, which tells the handler why.
func TestHubGapServeReturnsErrEvicted(t *testing.T) {
	t.Parallel()
	b := newGapBroker()
	h := &sse.Hub{Broker: b, Logger: quiet}
	t.Cleanup(func() { h.Close() })
	served := make(chan error, 1)
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := sse.Upgrade(w, r)
		if err != nil {
			return
		}
		served <- h.Serve(c, "t")
	}))
	t.Cleanup(ts.Close)
	_, d := open(t, ts.Client(), ts.URL, nil)
	waitStats(t, h, "counted the subscriber", func(s sse.HubStats) bool { return s.Subscribers == 1 })
	b.gap("t")
	if err := <-served; !errors.Is(err, sse.ErrEvicted) {
		t.Fatalf("Serve returned %v, want ErrEvicted", err)
	}
	ends(t, "stream", d)
}
