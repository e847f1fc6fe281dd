package sse

import (
	"cmp"
	"context"
	"errors"
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

// history is what catchUp writes before the live events of s, asked of
// the Broker, and the heads it ends at, with which the queue of s is then
// reconciled; nil heads mean the feeds' own positions.
//
// A client with a Last-Event-ID gets the events after it, or when they are
// gone (gap), none. A new client gets the Recent events; and with several
// topics, a new client and a reset one get heads the Broker read at once:
// the feeds of this node may lag behind the store, each in its own way, and
// a position made of their cursors could stand past an event that one of
// them has still to deliver, which a client resuming from it would miss.
func (h *Hub) history(ctx context.Context, s *subscriber, after string) (entries []Entry, heads []string, gap, err error) {
	if after != "" {
		entries, heads, err = h.broker.Replay(ctx, s.topics, after)
		if !errors.Is(err, ErrHistoryGap) {
			return entries, heads, nil, err
		}
		gap, entries, heads = err, nil, nil
	}
	n := 0
	if gap == nil {
		n = max(h.Recent, 0)
	}
	rb, ok := h.broker.(RecentBroker)
	if !ok || (n == 0 && len(s.topics) == 1) {
		return nil, nil, gap, nil
	}
	entries, heads, err = rb.Recent(ctx, s.topics, n)
	return entries, heads, gap, err
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
