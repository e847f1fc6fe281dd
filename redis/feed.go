package sseredis

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/b2ce5911/sse"
	"github.com/redis/go-redis/v9"
)

// A Broker's feeds share one reader: a goroutine that reads the node's
// topics in one script call (a round), atomically, and delivers the new
// entries of all of them merged by id. A round reads the topics that
// Pub/Sub wake-ups named, up to the newest wake-up's id; or all of them,
// every Block and whenever wake-ups may have been lost. So a node holds
// one Pub/Sub connection and, during a round, one pooled connection,
// whatever its number of topics; no command blocks in Redis, and Close
// only has to close the Pub/Sub connection and wait for a round's reply.

// feed is one Subscribe call.
type feed struct {
	ctx     context.Context
	topic   string
	key     string // its stream
	deliver func(sse.Entry)
	// The reader's: the id of the newest entry delivered, or the start
	// position; how many entries the stream had gained up to it (XINFO's
	// entries-added), which trimming must exceed to take one after it;
	// and whether the feed ended with a gap.
	last  streamID
	added int64
	ended bool
	// epoch is the value of the Broker's epoch key when the feed started:
	// if it changes, Redis lost its data, and the feed what it had yet to
	// read.
	epoch string
}

// readTopic is what a round reads of one topic.
type readTopic struct {
	name, key string
	from      streamID // the oldest position of its feeds
	feeds     []*feed
}

// maxRead is how many entries of one topic a round reads.
const maxRead = 1024

// minPoll bounds how often a reader polls with a tiny Block.
const minPoll = 10 * time.Millisecond

// wakeChannel is the Pub/Sub channel that Publish wakes topic's readers on.
func (b *Broker) wakeChannel(topic string) string {
	return b.prefix() + "wake:" + topic
}

// startReader starts the reader and its Pub/Sub receiver, with b.mu held.
func (b *Broker) startReader() {
	ctx, stop := context.WithCancel(context.Background())
	b.stopReader = stop
	b.pubsub = b.Client.Subscribe(ctx) // no channel yet: it connects when the receiver first waits
	b.wake = make(chan struct{}, 1)
	b.topics = make(map[string][]*feed)
	b.dirty = make(map[string]bool)
	b.pending = make(map[string]bool)
	b.wg.Add(2)
	go b.receive(ctx)
	go b.read(ctx)
}

// poke asks the reader for a round.
func (b *Broker) poke() {
	select {
	case b.wake <- struct{}{}:
	default: // one is due already, and will read everything new
	}
}

// receive turns Pub/Sub messages into rounds, until the Pub/Sub is
// closed.
func (b *Broker) receive(ctx context.Context) {
	defer b.wg.Done()
	backoff := time.Duration(0)
	for {
		msg, err := b.pubsub.Receive(ctx)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			// go-redis reconnects and subscribes again on the next
			// Receive; wake-ups sent meanwhile are lost: every round reads
			// every topic until a subscription is confirmed.
			b.mu.Lock()
			b.degraded = true
			b.mu.Unlock()
			backoff = min(max(2*backoff, minBackoff), maxBackoff)
			if !sleep(ctx, backoff) {
				return
			}
			continue
		}
		backoff = 0
		b.woken(msg)
	}
}

// woken notes what a Pub/Sub message tells the reader. A wake-up names
// its topic and carries its entry's id. Wake-ups come in id order, since
// Redis runs the publish scripts one at a time: once the reader has one,
// it has had those of every older entry of the topics it is subscribed
// to, which a round of the woken topics can therefore deliver up to it. A
// confirmed subscription ends a time when wake-ups may have been lost (a
// reconnection) or did not come (a new topic): a round of every topic
// follows.
func (b *Broker) woken(msg any) {
	prefix := b.wakeChannel("")
	b.mu.Lock()
	switch m := msg.(type) {
	case *redis.Message:
		topic, ok := strings.CutPrefix(m.Channel, prefix)
		id, idOK := parseID(m.Payload)
		if !ok || !idOK {
			b.full = true // not ours: read everything
			break
		}
		b.dirty[topic] = true
		if id.compare(b.wakeMax) > 0 {
			b.wakeMax = id
		}
	case *redis.Subscription:
		if m.Kind != "subscribe" {
			b.mu.Unlock()
			return
		}
		if topic, ok := strings.CutPrefix(m.Channel, prefix); ok {
			delete(b.pending, topic)
		}
		b.degraded, b.full = false, true
	default:
		b.mu.Unlock()
		return
	}
	b.mu.Unlock()
	b.poke()
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// read is the reader: a round per wake-up or per Block, and after a Redis
// error, with backoff, until ctx ends. A feed keeps its place across
// errors, so it resumes without loss or duplicate when Redis answers
// again, or reports a gap if what it had yet to read is gone.
func (b *Broker) read(ctx context.Context) {
	defer b.wg.Done()
	poll := max(b.block(), minPoll)
	timer := time.NewTimer(poll)
	defer timer.Stop()
	backoff := time.Duration(0)
	for {
		select {
		case <-ctx.Done():
			return
		case <-b.wake:
		case <-timer.C:
			b.mu.Lock()
			b.full = true
			b.mu.Unlock()
		}
		more, err := b.round(ctx)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			backoff = min(max(2*backoff, minBackoff), maxBackoff)
			b.logger().Warn("sseredis: feeds' read failed; retrying", "in", backoff, "err", err)
			if !sleep(ctx, backoff) {
				return
			}
			b.poke()
			continue
		}
		if backoff > 0 {
			backoff = 0
			b.logger().Info("sseredis: feeds reading again")
		}
		if more {
			b.poke()
		}
		timer.Reset(poll)
	}
}

// subscriptions brings the Pub/Sub's channels in line with the topics
// that have feeds. go-redis keeps the set across reconnections, so an
// error here is mended when the connection is made again. A topic is
// pending until its subscription is confirmed: every round reads it,
// since no wake-up tells of its entries yet.
func (b *Broker) subscriptions(ctx context.Context) {
	b.mu.Lock()
	want := make(map[string]bool, len(b.topics))
	var add []string
	for topic := range b.topics {
		ch := b.wakeChannel(topic)
		want[ch] = true
		if !b.channels[ch] {
			add = append(add, ch)
			b.pending[topic] = true
		}
	}
	var drop []string
	for ch := range b.channels {
		if !want[ch] {
			drop = append(drop, ch)
			delete(b.pending, strings.TrimPrefix(ch, b.wakeChannel("")))
		}
	}
	b.mu.Unlock()
	if len(drop) > 0 {
		if err := b.pubsub.Unsubscribe(ctx, drop...); err != nil {
			b.logger().Warn("sseredis: unsubscribing from wake-ups failed", "err", err)
		}
	}
	if len(add) > 0 {
		if err := b.pubsub.Subscribe(ctx, add...); err != nil {
			b.logger().Warn("sseredis: subscribing to wake-ups failed; feeds poll meanwhile", "err", err)
		}
	}
	b.channels = want
}

// round reads the topics that have news (or all of them) once and
// delivers what is new, in id order across topics, up to the watermark
// that keeps that order. more reports that a topic had more entries than
// one round reads.
func (b *Broker) round(ctx context.Context) (more bool, err error) {
	b.subscriptions(ctx)
	topics, watermark := b.readTopics()
	if len(topics) == 0 {
		return false, nil
	}
	all, wm, more, err := b.readAll(ctx, topics)
	if err != nil {
		b.redo()
		return false, err
	}
	if wm.compare(watermark) < 0 {
		watermark = wm
	}
	// A feed that started during the read was not in it, and may have
	// entries older than the newest read of other topics: they must come
	// first. Its entries up to that newest one all exist already, so a
	// second read gets them.
	if added := b.takeAdded(); len(added) > 0 && len(all) > 0 {
		newest := all[0].id
		for _, e := range all {
			if e.id.compare(newest) > 0 {
				newest = e.id
			}
		}
		extra, wm, more2, err := b.readAll(ctx, group(added))
		if err != nil {
			b.redo()
			return false, err
		}
		more = more || more2
		if wm.compare(watermark) < 0 {
			watermark = wm
		}
		for _, e := range extra {
			if e.id.compare(newest) <= 0 {
				all = append(all, e)
			}
			// the rest when Subscribe's wake-up, or the topic's, comes
		}
	}
	slices.SortStableFunc(all, func(x, y feedEntry) int { return x.id.compare(y.id) })
	for i, e := range all {
		if e.id.compare(watermark) > 0 {
			// Read again when wake-ups tell that nothing older can come.
			b.mu.Lock()
			for _, e := range all[i:] {
				b.dirty[e.Topic] = true
			}
			b.mu.Unlock()
			break
		}
		for _, f := range e.feeds {
			if f.ended || f.ctx.Err() != nil || e.id.compare(f.last) <= 0 {
				continue // stopped, gone, or it started after e
			}
			f.deliver(e.Entry)
			f.last = e.id
			f.added++
		}
	}
	return more, nil
}

// feedEntry is an entry read and the feeds to deliver it to.
type feedEntry struct {
	idEntry
	feeds []*feed
}

// readAll reads topics in one call, and reports a gap to each feed that
// lost entries. The entries of a topic that had more than maxRead are
// read up to the watermark, its last one read: events of other topics
// after it wait for the next round, so that none is delivered before an
// older one of another topic.
func (b *Broker) readAll(ctx context.Context, topics []readTopic) (all []feedEntry, watermark streamID, more bool, err error) {
	watermark = maxID
	keys := make([]string, 1, 1+len(topics))
	keys[0] = b.epochKey()
	args := make([]any, 1, 1+len(topics))
	args[0] = maxRead
	for _, t := range topics {
		keys = append(keys, t.key)
		args = append(args, t.from.String())
	}
	res, err := readScript.Run(ctx, b.Client, keys, args...).Slice()
	if err != nil {
		return nil, maxID, false, fmt.Errorf("sseredis: reading %d topics: %w", len(topics), err)
	}
	if len(res) != 1+len(topics) {
		return nil, maxID, false, fmt.Errorf("sseredis: reading %d topics: %d replies", len(topics), len(res))
	}
	epoch, _ := res[0].(string) // nil: none
	for i, t := range topics {
		xs, info, err := readReply(res[1+i])
		if err != nil {
			return nil, maxID, false, fmt.Errorf("sseredis: reading %q: %w", t.name, err)
		}
		for _, f := range t.feeds {
			if f.ended {
				continue
			}
			if f.epoch != epoch {
				b.gap(f, sse.GapUnknown, errors.New("Redis lost its data (a restart without persistence?): the feed's place is gone"))
			} else if info != nil {
				if err := trimmed(info, f); err != nil {
					b.gap(f, sse.GapExpired, err)
				}
			}
		}
		if len(xs) == maxRead {
			more = true
			if id, _ := parseID(xs[len(xs)-1].ID); id.compare(watermark) < 0 {
				watermark = id
			}
		}
		for _, x := range xs {
			id, ok := parseID(x.ID)
			if !ok {
				return nil, maxID, false, fmt.Errorf("sseredis: reading %q: entry id %q", t.name, x.ID)
			}
			all = append(all, feedEntry{idEntry{id, entry(t.name, x)}, t.feeds})
		}
	}
	return all, watermark, more, nil
}

// trimmed tells whether the stream st no longer holds some entry after
// f's place. Trimming takes the oldest entries, and st.EntriesAdded -
// st.Length is how many are gone: more than f.added, entries after f's
// place are among them. XDEL records the greatest id it removed. A stream
// that gained fewer than f.added was deleted and made again: what it held
// after f's place is gone.
func trimmed(st *redis.XInfoStream, f *feed) error {
	if md, ok := parseID(st.MaxDeletedEntryID); ok && f.last.compare(md) < 0 {
		return errors.New("entries the feed had yet to read were deleted")
	}
	if st.EntriesAdded < f.added {
		return errors.New("the stream was deleted and made again")
	}
	if gone := st.EntriesAdded - st.Length; gone > f.added {
		return fmt.Errorf("the stream was trimmed past the feed: %d entries gone, the feed had read %d", gone, f.added)
	}
	return nil
}

// gap tells f that entries after its place are gone, and ends it.
func (b *Broker) gap(f *feed, reason sse.GapReason, err error) {
	b.drop(f)
	f.ended = true
	if f.ctx.Err() != nil {
		return
	}
	b.logger().Warn("sseredis: feed fell behind the history kept: its subscribers resume by replay", "topic", f.topic, "after", f.last.String(), "err", err)
	f.deliver(sse.Entry{Topic: f.topic, Gap: &sse.HistoryGapError{Reason: reason, Err: fmt.Errorf("sseredis: topic %q: %w", f.topic, err)}})
}

// readTopics is what the next round reads, and up to which id it may
// deliver: the topics woken since the last round and those whose
// subscription is pending, up to the newest wake-up; or every topic with
// feeds, with no bound, on the reader's timer, after a confirmed
// subscription, and while the Pub/Sub connection is down.
func (b *Broker) readTopics() ([]readTopic, streamID) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.added = nil
	var feeds []*feed
	watermark := maxID
	if b.full || b.degraded {
		for _, fs := range b.topics {
			feeds = append(feeds, fs...)
		}
	} else {
		watermark = b.wakeMax
		for topic := range b.dirty {
			feeds = append(feeds, b.topics[topic]...)
		}
		for topic := range b.pending {
			if !b.dirty[topic] {
				feeds = append(feeds, b.topics[topic]...)
			}
		}
	}
	b.full = false
	clear(b.dirty)
	return group(feeds), watermark
}

// redo makes the round after a failed one read every topic, with no
// bound: the failed one may have been such a round.
func (b *Broker) redo() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.full = true
}

// takeAdded returns the feeds added since readTopics.
func (b *Broker) takeAdded() []*feed {
	b.mu.Lock()
	defer b.mu.Unlock()
	added := b.added
	b.added = nil
	return added
}

// group is the topics of feeds, each read from the oldest place of its
// feeds.
func group(feeds []*feed) []readTopic {
	var topics []readTopic
	index := make(map[string]int)
	for _, f := range feeds {
		i, ok := index[f.topic]
		if !ok {
			i = len(topics)
			index[f.topic] = i
			topics = append(topics, readTopic{name: f.topic, key: f.key, from: f.last})
		}
		t := &topics[i]
		t.feeds = append(t.feeds, f)
		if f.last.compare(t.from) < 0 {
			t.from = f.last
		}
	}
	return topics
}

// drop takes f out of the reader's topics.
func (b *Broker) drop(f *feed) {
	b.mu.Lock()
	defer b.mu.Unlock()
	feeds := slices.DeleteFunc(b.topics[f.topic], func(g *feed) bool { return g == f })
	if len(feeds) == 0 {
		delete(b.topics, f.topic)
	} else {
		b.topics[f.topic] = feeds
	}
}

// readScript reads the value of the epoch key KEYS[1] (false: none), then
// the entries after ARGV[i] of each stream KEYS[i] from i = 2, up to
// ARGV[1] of them. When the first one is the oldest the stream keeps,
// entries before it may have been trimmed: it adds XINFO STREAM then, which
// tells whether they were (see lost). One script, so one moment for all
// the topics: no entry of one is missing while a later one of another is
// read.
var readScript = redis.NewScript(`
local out = {redis.call('GET', KEYS[1])}
for i = 2, #KEYS do
	local key = KEYS[i]
	local xs = redis.call('XRANGE', key, '(' .. ARGV[i], '+', 'COUNT', ARGV[1])
	local info = false
	if #xs > 0 then
		local first = redis.call('XRANGE', key, '-', '+', 'COUNT', 1)
		if first[1][1] == xs[1][1] then
			info = redis.call('XINFO', 'STREAM', key)
		end
	end
	out[i] = {xs, info}
end
return out
`)

// readReply parses one topic's part of readScript's reply.
func readReply(v any) ([]redis.XMessage, *redis.XInfoStream, error) {
	pair, ok := v.([]any)
	if !ok || len(pair) != 2 {
		return nil, nil, errors.New("unexpected reply")
	}
	xs, err := scriptEntries(pair[0])
	if err != nil {
		return nil, nil, err
	}
	return xs, scriptInfo(pair[1]), nil
}

// scriptEntries parses the reply of an XRANGE or XREVRANGE in a script.
func scriptEntries(v any) ([]redis.XMessage, error) {
	raw, ok := v.([]any)
	if !ok {
		return nil, errors.New("unexpected entries")
	}
	xs := make([]redis.XMessage, 0, len(raw))
	for _, r := range raw {
		x, ok := r.([]any)
		if !ok || len(x) != 2 {
			return nil, errors.New("unexpected entry")
		}
		id, _ := x[0].(string)
		kv, _ := x[1].([]any)
		values := make(map[string]any, len(kv)/2)
		for j := 0; j+1 < len(kv); j += 2 {
			if k, ok := kv[j].(string); ok {
				values[k] = kv[j+1]
			}
		}
		xs = append(xs, redis.XMessage{ID: id, Values: values})
	}
	return xs, nil
}

// scriptInfo parses the reply of an XINFO STREAM in a script, as far as
// head and lost need it; nil for none (false).
func scriptInfo(v any) *redis.XInfoStream {
	flat, ok := v.([]any)
	if !ok {
		return nil
	}
	st := &redis.XInfoStream{}
	for j := 0; j+1 < len(flat); j += 2 {
		k, _ := flat[j].(string)
		switch k {
		case "length":
			st.Length, _ = flat[j+1].(int64)
		case "entries-added":
			st.EntriesAdded, _ = flat[j+1].(int64)
		case "last-generated-id":
			st.LastGeneratedID, _ = flat[j+1].(string)
		case "max-deleted-entry-id":
			st.MaxDeletedEntryID, _ = flat[j+1].(string)
		case "first-entry":
			if e, ok := flat[j+1].([]any); ok && len(e) > 0 {
				st.FirstEntry.ID, _ = e[0].(string)
			}
		case "last-entry":
			if e, ok := flat[j+1].([]any); ok && len(e) > 0 {
				st.LastEntry.ID, _ = e[0].(string)
			}
		}
	}
	return st
}
