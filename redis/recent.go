package sseredis

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/b2ce5911/sse"
	"github.com/redis/go-redis/v9"
)

var _ sse.RecentBroker = (*Broker)(nil)

// Recent implements [sse.RecentBroker], for [sse.Hub.Recent]: the topics
// are read in one script call (XINFO STREAM and XREVRANGE COUNT n of each),
// so at one moment, as in Replay, and each topic's entries end at its
// head; the topics are merged by id. A topic without stream has no entries
// and the position "0-0".
func (b *Broker) Recent(ctx context.Context, topics []string, n int) ([]sse.Entry, []string, error) {
	if b.Client == nil {
		return nil, nil, ErrNoClient
	}
	res, err := b.snapshot(ctx, topics, "recent", max(n, 1))
	if err != nil {
		return nil, nil, fmt.Errorf("sseredis: recent events of %q: %w", topics, err)
	}
	heads := make([]string, len(topics))
	var all []idEntry
	for i, topic := range topics {
		heads[i] = emptyPosition
		if res[i] == nil {
			continue // no stream
		}
		heads[i] = head(res[i].info)
		xs := res[i].xs[0]
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

// snapshotScript reads every stream KEYS[i] at one moment, for Replay
// (ARGV[1] "replay": XINFO STREAM, the entry ARGV[2] itself, and the
// entries after it) or Recent ("recent": XINFO STREAM and the newest
// ARGV[2] entries, newest first). A missing stream is false.
var snapshotScript = redis.NewScript(`
local out = {}
for i, key in ipairs(KEYS) do
	if redis.call('EXISTS', key) == 0 then
		out[i] = false
	elseif ARGV[1] == 'replay' then
		out[i] = {redis.call('XINFO', 'STREAM', key),
			redis.call('XRANGE', key, ARGV[2], ARGV[2], 'COUNT', 1),
			redis.call('XRANGE', key, '(' .. ARGV[2], '+')}
	else
		out[i] = {redis.call('XINFO', 'STREAM', key),
			redis.call('XREVRANGE', key, '+', '-', 'COUNT', ARGV[2])}
	end
end
return out
`)

// topicSnapshot is what snapshotScript read of one stream.
type topicSnapshot struct {
	info *redis.XInfoStream
	xs   [][]redis.XMessage // the replies of its XRANGEs or XREVRANGE
}

// snapshot runs snapshotScript on the streams of topics; an element is nil
// for a topic without stream.
func (b *Broker) snapshot(ctx context.Context, topics []string, mode string, arg any) ([]*topicSnapshot, error) {
	keys := make([]string, len(topics))
	for i, topic := range topics {
		keys[i] = b.key(topic)
	}
	res, err := snapshotScript.Run(ctx, b.Client, keys, mode, arg).Slice()
	if err != nil {
		return nil, err
	}
	if len(res) != len(topics) {
		return nil, fmt.Errorf("%d replies for %d topics", len(res), len(topics))
	}
	out := make([]*topicSnapshot, len(topics))
	for i, v := range res {
		if v == nil {
			continue
		}
		parts, ok := v.([]any)
		if !ok || len(parts) < 2 {
			return nil, errors.New("unexpected reply")
		}
		s := &topicSnapshot{info: scriptInfo(parts[0])}
		if s.info == nil {
			return nil, errors.New("unexpected stream info")
		}
		for _, p := range parts[1:] {
			xs, err := scriptEntries(p)
			if err != nil {
				return nil, err
			}
			s.xs = append(s.xs, xs)
		}
		out[i] = s
	}
	return out, nil
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
