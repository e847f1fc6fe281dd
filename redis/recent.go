package sseredis

import (
	"context"
	"fmt"
	"slices"

	"github.com/b2ce5911/sse"
)

var _ sse.RecentBroker = (*Broker)(nil)

// Recent implements [sse.RecentBroker], for [sse.Hub.Recent]: each topic is
// read atomically (XINFO STREAM and XREVRANGE COUNT n in one MULTI), so its
// entries end at its head; the topics are merged by id, as in Replay. A
// topic without stream has no entries and the position "0-0".
func (b *Broker) Recent(ctx context.Context, topics []string, n int) ([]sse.Entry, []string, error) {
	if b.Client == nil {
		return nil, nil, ErrNoClient
	}
	heads := make([]string, len(topics))
	var all []idEntry
	for i, topic := range topics {
		heads[i] = emptyPosition
		key := b.key(topic)
		pipe := b.Client.TxPipeline()
		info := pipe.XInfoStream(ctx, key)
		newest := pipe.XRevRangeN(ctx, key, "+", "-", int64(max(n, 1)))
		_, _ = pipe.Exec(ctx) // errors are the commands'
		for _, err := range []error{info.Err(), newest.Err()} {
			if err != nil && !isNoSuchKey(err) {
				return nil, nil, fmt.Errorf("sseredis: recent events of %q: %w", topic, err)
			}
		}
		if info.Err() != nil {
			continue // no stream
		}
		heads[i] = head(info.Val())
		xs := newest.Val()
		if n <= 0 {
			xs = nil
		}
		for j := len(xs) - 1; j >= 0; j-- { // oldest first
			id, _ := parseID(xs[j].ID)
			all = append(all, idEntry{id, entry(topic, xs[j])})
		}
	}
	return merged(all, len(topics) > 1), heads, nil
}

// idEntry is an entry and its parsed id, to merge topics by.
type idEntry struct {
	id streamID
	sse.Entry
}

// merged returns the entries of all; of several topics, in id order, which
// for Redis ids is time order.
func merged(all []idEntry, several bool) []sse.Entry {
	if several {
		slices.SortStableFunc(all, func(x, y idEntry) int { return x.id.compare(y.id) })
	}
	entries := make([]sse.Entry, len(all))
	for i, e := range all {
		entries[i] = e.Entry
	}
	return entries
}
