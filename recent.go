package sse

import (
	"cmp"
	"context"
	"slices"
	"time"
)

// RecentBroker is a [Broker] that can also return the newest events of
// topics, for [Hub.Recent]. [MemoryBroker] is one; the Hub finds out with a
// type assertion, so a Broker without the method still works, with no
// recent events for new subscribers.
type RecentBroker interface {
	Broker

	// Recent returns up to n of the newest stored events of each of
	// topics, all of them oldest first in the order Replay uses, and heads
	// as Replay returns them: the events of topics[i] end at heads[i], so
	// that Recent up to the heads and the feeds after them together hold
	// every event once. A topic without events returns none and its
	// position; that is not an error. An error fails the stream that
	// waits for it, as one of Replay does, and its client reconnects.
	Recent(ctx context.Context, topics []string, n int) (entries []Entry, heads []string, err error)
}

var _ RecentBroker = (*MemoryBroker)(nil)

// recentBroker returns the Broker that answers Recent, and how many events
// of each topic a new subscriber gets; nil when it gets none.
func (h *Hub) recentBroker() (RecentBroker, int) {
	rb, ok := h.broker.(RecentBroker)
	if !ok || h.Recent <= 0 {
		return nil, 0
	}
	return rb, h.Recent
}

// history is what catchUp writes before live events: the events after
// after, or for a new subscriber the recent ones when the Hub keeps some.
// It is reconciled with the live events in one way either way, by the heads.
func (h *Hub) history(ctx context.Context, topics []string, after string) ([]Entry, []string, error) {
	if after == "" {
		rb, n := h.recentBroker()
		return rb.Recent(ctx, topics, n)
	}
	return h.broker.Replay(ctx, topics, after)
}

// Recent implements [RecentBroker]: the newest n events kept of each topic,
// after the pruning that HistoryAge asks.
func (b *MemoryBroker) Recent(ctx context.Context, topics []string, n int) ([]Entry, []string, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.init()
	var events []memEvent
	heads := make([]string, len(topics))
	now := time.Now()
	for i, name := range topics {
		t := b.topics[name]
		if t == nil {
			heads[i] = b.head(&memTopic{dropped: b.forgotten}) // as Replay does
			continue
		}
		b.prune(t, now)
		b.settle(t, now)
		events = append(events, t.events[max(len(t.events)-max(n, 0), 0):]...)
		heads[i] = b.head(t)
	}
	return inOrder(events), heads, nil
}

// inOrder returns the entries of events of several topics in publish
// order.
func inOrder(events []memEvent) []Entry {
	slices.SortFunc(events, func(a, b memEvent) int { return cmp.Compare(a.seq, b.seq) })
	out := make([]Entry, len(events))
	for i, e := range events {
		out[i] = e.Entry
	}
	return out
}
