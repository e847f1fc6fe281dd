// Package sseredis is an [sse.Broker] on Redis Streams, so that several
// servers behind a load balancer share one history: an event published on
// any node reaches the subscribers of every node, and a client that
// reconnects to another node resumes there without loss.
//
// Every topic is one stream, and a stream entry's id ("<ms>-<seq>") is the
// event's id. Each node reads all of its topics with one reader, woken by
// Redis Pub/Sub, whatever its number of topics and subscribers, and its Hub
// fans the entries out: a node holds a constant number of Redis
// connections. The reader reads all the topics at one moment and delivers
// their entries in id order, so a client may subscribe to several topics in
// one stream and resume from one id.
package sseredis

import (
	"cmp"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/b2ce5911/sse"
	"github.com/redis/go-redis/v9"
)

// Defaults of [Broker].
const (
	DefaultPrefix = "sse:"
	DefaultMaxLen = 10000
	DefaultBlock  = 5 * time.Second
)

// Errors of [Broker].
var (
	// ErrClosed is returned by Publish and Subscribe once the Broker is
	// closed.
	ErrClosed = errors.New("sseredis: broker closed")
	// ErrOwnID is returned by Publish for a Message whose ID is set:
	// Redis assigns the ids, which are what Replay and the feeds order
	// events by, so an id of the publisher's own cannot be kept.
	ErrOwnID = errors.New("sseredis: a message ID cannot be set: Redis assigns the event ids")
	// ErrNoClient is returned when Broker.Client is nil.
	ErrNoClient = errors.New("sseredis: Broker.Client is nil")
)

// emptyPosition is the position of a topic whose stream does not exist:
// every entry Redis will ever add to it comes after it.
const emptyPosition = "0-0"

// Broker implements [sse.Broker] on Redis Streams. Give each [sse.Hub] one
// of its own; every node of a deployment uses the same Redis and Prefix.
//
// Keys: topic T is the stream Prefix+"topic:"+T, Prefix+"lastid" holds
// the last id given out, and Prefix+"epoch" a random value that Publish
// and Subscribe set when it is missing: a feed that finds another value,
// or none, knows Redis lost its data (a restart without persistence) and
// reports a gap, however many entries the streams made anew hold. Publish runs a script that picks an id the way
// XADD "*" does (server time in ms, then a sequence) but across all topics
// of the Prefix, XADDs the event with an approximate MAXLEN bound, and
// publishes its id on the Pub/Sub channel Prefix+"wake:"+T: so ids are
// unique across topics and in publish order, and a client of several topics
// resumes correctly from one id. Streams must be written through a Broker
// only. On Redis Cluster, put a hash tag in Prefix ("{sse}:") so that all
// the keys are in one slot.
//
// The feeds of a Broker share one reader, started by the first Subscribe:
// one goroutine that reads its topics in one script call (a round, with
// non-blocking XRANGEs after each feed's place) and delivers the new
// entries in id order. The wake-up carries the entry's id, and wake-ups
// come in id order, so a round reads only the topics woken since the last
// one and delivers their entries up to the newest wake-up: nothing older
// can be missing. Every topic is read in a round every Block, after each
// confirmed Pub/Sub subscription (a new topic, or the connection back
// after an outage that may have lost wake-ups), and while the Pub/Sub
// connection is down. So a node holds one Pub/Sub connection, outside
// Client's pool, and uses one pooled connection per round, however many
// topics it serves: go-redis' default pool does. A Redis error is retried
// with backoff from where each feed stands, so a feed survives a Redis
// restart without loss or duplicate as far as Redis kept what it
// acknowledged (run it with appendonly yes and appendfsync always for
// that guarantee). A feed that finds that entries it had yet to read were
// trimmed meanwhile (it lagged more than MaxLen behind) reports a gap,
// and its Hub cuts the topic's subscribers off so that they replay, or get
// the reset event: never a silent hole. Replay is XRANGE after the given
// id, and answers [sse.ErrHistoryGap] for an id that is malformed, unknown
// to the topics, or older than entries Redis no longer keeps. Recent, for
// [sse.Hub.Recent], is XREVRANGE with a count.
//
// go-redis retries a command whose reply it lost (Client's MaxRetries):
// for a publish that can store the event twice if Redis had taken it. Set
// MaxRetries to -1 for at-most-once publishes and let the publisher retry
// on error (its event is then stored at most once per call); the reader
// retries on its own.
//
// It needs Redis 7.0 or later (XINFO STREAM's entries-added and
// max-deleted-entry-id tell trimmed history). The zero value with Client
// set is ready to use. Set the fields before first use; all methods are
// safe for concurrent use. Close stops the reader.
type Broker struct {
	// Client is the Redis connection; required. The Broker does not close
	// it.
	Client redis.UniversalClient
	// Prefix starts every key of the Broker; "" means DefaultPrefix.
	// Nodes that share events use the same Prefix.
	Prefix string
	// MaxLen bounds each stream, approximately (XADD MAXLEN ~): Redis
	// trims whole nodes of entries, so a stream may hold somewhat more.
	// 0 means DefaultMaxLen; a negative value never trims.
	MaxLen int64
	// Block is how often the reader reads all of its topics, woken or
	// not: the longest a lost wake-up delays an event. 0 means
	// DefaultBlock; under 10 ms counts as 10 ms.
	Block time.Duration
	// Logger receives the Redis errors the reader retries and the gaps
	// of feeds; nil means slog.Default().
	Logger *slog.Logger

	mu         sync.Mutex // guards the fields below but channels and wg
	closed     bool
	topics     map[string][]*feed // the feeds of each topic the reader reads
	stopReader context.CancelFunc
	pubsub     *redis.PubSub
	wake       chan struct{}   // one token: a round is due
	added      []*feed         // since the reader last listed the feeds
	dirty      map[string]bool // topics woken since the reader last listed them
	pending    map[string]bool // topics whose wake-ups are not yet confirmed
	wakeMax    streamID        // the id of the newest wake-up
	full       bool            // the next round reads every topic
	degraded   bool            // the Pub/Sub connection is down: every round reads every topic
	channels   map[string]bool // the reader's: the Pub/Sub channels it subscribed to
	wg         sync.WaitGroup  // the reader and its receiver
}

var _ sse.Broker = (*Broker)(nil)

// key is the stream of topic.
func (b *Broker) key(topic string) string {
	return b.prefix() + "topic:" + topic
}

// idKey holds the last id given out, for every topic of the Prefix.
func (b *Broker) idKey() string {
	return b.prefix() + "lastid"
}

// epochKey holds a random value that Publish and Subscribe set when it is
// missing: a Redis that lost its data (a restart without persistence, a
// flush) has another one, or none, which tells a feed that what it had
// yet to read is gone, however many entries the streams made anew have.
func (b *Broker) epochKey() string {
	return b.prefix() + "epoch"
}

func (b *Broker) prefix() string {
	if b.Prefix == "" {
		return DefaultPrefix
	}
	return b.Prefix
}

func (b *Broker) logger() *slog.Logger {
	if b.Logger != nil {
		return b.Logger
	}
	return slog.Default()
}

func (b *Broker) block() time.Duration {
	if b.Block <= 0 {
		return DefaultBlock
	}
	return b.Block
}

// check reports why the Broker cannot be used, if it cannot.
func (b *Broker) check() error {
	if b.Client == nil {
		return ErrNoClient
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return ErrClosed
	}
	return nil
}

// Publish implements [sse.Broker]: it appends m to the topic's stream and
// returns the entry id, which is the event id. Type, Data, Retry and Comment
// are stored; a set m.ID gives [ErrOwnID], and a Type or Comment that the
// Hub could not send (a line break) an error wrapping [sse.ErrInvalidField],
// storing nothing. Another error means Redis did not acknowledge the event:
// it may or may not have been stored.
func (b *Broker) Publish(ctx context.Context, topic string, m sse.Message) (string, error) {
	if m.ID != "" {
		return "", ErrOwnID
	}
	// The Hub's rules for the single-line fields, without encoding Data:
	// a Type with a line break would be stored, then refused by every
	// node's Hub and by Replay.
	fields := sse.Message{Type: m.Type, Comment: m.Comment}
	var scratch [64]byte
	if _, err := fields.AppendTo(scratch[:0]); err != nil {
		return "", err
	}
	if err := b.check(); err != nil {
		return "", err
	}
	maxLen := b.MaxLen
	if maxLen == 0 {
		maxLen = DefaultMaxLen
	}
	args := append([]any{maxLen, b.wakeChannel(topic), rand.Text()}, entryFields(m)...)
	id, err := publish.Run(ctx, b.Client, []string{b.key(topic), b.idKey(), b.epochKey()}, args...).Text()
	if err != nil {
		return "", fmt.Errorf("sseredis: publish on %q: %w", topic, err)
	}
	return id, nil
}

// publish is XADD with an id that is unique across the streams of a
// Prefix, and greater than every id given before: Redis's own "*" ids are
// only unique within a stream, and a client subscribed to several topics
// resumes from one id, which must place it in all of them. The id is made
// as Redis makes its own, from the server's clock, keeping the last one in
// KEYS[2]. It sets the epoch KEYS[3] to ARGV[3] if it is missing. ARGV[1]
// is the MAXLEN bound (negative: none), ARGV[2] the channel that wakes the
// topic's readers up; then the fields.
var publish = redis.NewScript(`
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local seq = 0
local last = redis.call('GET', KEYS[2])
if last then
	local lms, lseq = string.match(last, '^(%d+)-(%d+)$')
	lms, lseq = tonumber(lms), tonumber(lseq)
	if lms >= ms then
		ms, seq = lms, lseq + 1
	end
end
local id = string.format('%.0f-%.0f', ms, seq)
local maxlen = tonumber(ARGV[1])
if maxlen >= 0 then
	redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], id, unpack(ARGV, 4))
else
	redis.call('XADD', KEYS[1], id, unpack(ARGV, 4))
end
redis.call('SET', KEYS[3], ARGV[3], 'NX')
redis.call('SET', KEYS[2], id)
redis.call('PUBLISH', ARGV[2], id)
return id
`)

// entryFields is how m is stored in an entry. Data is always there, since an
// entry needs a field; the others only when set, retry in milliseconds as
// it goes on the wire.
func entryFields(m sse.Message) []any {
	f := []any{"data", m.Data}
	if m.Type != "" {
		f = append(f, "type", m.Type)
	}
	if m.Retry > 0 {
		f = append(f, "retry", int64((m.Retry+time.Millisecond-1)/time.Millisecond))
	}
	if m.Comment != "" {
		f = append(f, "comment", m.Comment)
	}
	return f
}

// entry reads back what fields stored. Entries written by others without
// these fields come as events without data rather than not at all: a
// feed must not skip an id the Hub may be waiting for.
func entry(topic string, x redis.XMessage) sse.Entry {
	e := sse.Entry{Topic: topic, Message: sse.Message{ID: x.ID}}
	if t, ok := x.Values["type"].(string); ok {
		e.Type = t
	}
	if d, ok := x.Values["data"].(string); ok {
		e.Data = []byte(d)
	}
	if r, ok := x.Values["retry"].(string); ok {
		if ms, err := strconv.ParseInt(r, 10, 64); err == nil && ms > 0 {
			e.Retry = time.Duration(ms) * time.Millisecond
		}
	}
	if c, ok := x.Values["comment"].(string); ok {
		e.Comment = c
	}
	return e
}

// Subscribe implements [sse.Broker]. It returns the id of the topic's
// newest entry; for a stream without entries, the id Redis generated last;
// for a topic without stream, "0-0". The Broker's one reader delivers the
// entries after it until ctx ends or the Broker closes; deliver is not
// called after that. A feed that finds entries it had yet to read trimmed
// delivers an [sse.Entry] with Gap set (reason [sse.GapExpired]) and ends;
// one that finds Redis lost its data (a restart without persistence), the
// same with reason [sse.GapUnknown].
func (b *Broker) Subscribe(ctx context.Context, topic string, deliver func(sse.Entry)) (string, error) {
	if err := b.check(); err != nil {
		return "", err
	}
	// The epoch and the stream at one moment: the feed's place is in the
	// history of that epoch.
	pipe := b.Client.TxPipeline()
	pipe.SetNX(ctx, b.epochKey(), rand.Text(), 0)
	epoch := pipe.Get(ctx, b.epochKey())
	info := pipe.XInfoStream(ctx, b.key(topic))
	_, _ = pipe.Exec(ctx) // errors are the commands'
	if err := epoch.Err(); err != nil {
		return "", fmt.Errorf("sseredis: subscribe to %q: %w", topic, err)
	}
	st, err := info.Result()
	pos, added := emptyPosition, int64(0)
	switch {
	case err == nil:
		pos, added = head(st), st.EntriesAdded
	case !isNoSuchKey(err):
		return "", fmt.Errorf("sseredis: subscribe to %q: %w", topic, err)
	}
	last, _ := parseID(pos)
	f := &feed{ctx: ctx, topic: topic, key: b.key(topic), deliver: deliver, last: last, added: added, epoch: epoch.Val()}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return "", ErrClosed
	}
	if b.pubsub == nil {
		b.startReader()
	}
	b.topics[topic] = append(b.topics[topic], f)
	b.added = append(b.added, f)
	b.dirty[topic] = true
	b.mu.Unlock()
	b.poke()
	context.AfterFunc(ctx, func() { b.drop(f) })
	return pos, nil
}

// Retry delays of the reader after a Redis error.
const (
	minBackoff = 10 * time.Millisecond
	maxBackoff = time.Second
)

// head is the position of a stream: its newest entry, or when it has none
// left the last id Redis generated, which nothing to come can precede.
func head(st *redis.XInfoStream) string {
	if st.Length > 0 && st.LastEntry.ID != "" {
		return st.LastEntry.ID
	}
	if st.LastGeneratedID == "" {
		return emptyPosition
	}
	return st.LastGeneratedID
}

func isNoSuchKey(err error) bool {
	return err != nil && strings.Contains(err.Error(), "no such key")
}

// Replay implements [sse.Broker]. The topics are read in one script call
// (XINFO STREAM and XRANGE of each), so at one moment: no event of one is
// missing while a later one of another is there, which a client resuming
// from one id would pass. Events of several topics are merged by id, which
// for Redis ids is time order.
// It answers an [*sse.HistoryGapError] with reason [sse.GapUnknown] when
// after is not a stream id or no topic knows it (not an entry, nor a
// position given out), and [sse.GapExpired] when a topic lost entries after
// it (trimmed or deleted); other errors are Redis's.
func (b *Broker) Replay(ctx context.Context, topics []string, after string) ([]sse.Entry, []string, error) {
	if b.Client == nil {
		return nil, nil, ErrNoClient
	}
	a, ok := parseID(after)
	if !ok || a == maxID {
		return nil, nil, &sse.HistoryGapError{Reason: sse.GapUnknown, Err: fmt.Errorf("sseredis: last event ID %q is not a stream id", after)}
	}
	known := a == streamID{}
	res, err := b.snapshot(ctx, topics, "replay", after)
	if err != nil {
		return nil, nil, fmt.Errorf("sseredis: replay of %q: %w", topics, err)
	}
	heads := make([]string, len(topics))
	var all []idEntry
	for i, topic := range topics {
		heads[i] = emptyPosition // no stream, so nothing to replay either
		if res[i] == nil {
			continue
		}
		st, at, rest := res[i].info, res[i].xs[0], res[i].xs[1]
		if err := lost(st, a); err != nil {
			return nil, nil, &sse.HistoryGapError{Reason: sse.GapExpired, Err: fmt.Errorf("sseredis: topic %q: %w", topic, err)}
		}
		known = known || len(at) > 0 || after == st.LastGeneratedID || after == st.MaxDeletedEntryID
		for _, x := range rest {
			id, _ := parseID(x.ID)
			all = append(all, idEntry{id, entry(topic, x)})
		}
		heads[i] = head(st)
	}
	if !known {
		return nil, nil, &sse.HistoryGapError{Reason: sse.GapUnknown, Err: fmt.Errorf("sseredis: last event ID %q is unknown to topics %q", after, topics)}
	}
	return merged(all, len(topics) > 1), heads, nil
}

// Newest implements [sse.Broker]: stream ids order themselves. An id that
// is not one (none that the Hub hands over) counts as the oldest.
func (b *Broker) Newest(ctx context.Context, topics, ids []string) (string, error) {
	var newest streamID
	out := emptyPosition
	for _, id := range ids {
		if p, ok := parseID(id); ok && p.compare(newest) > 0 {
			newest, out = p, id
		}
	}
	return out, nil
}

// lost tells whether the stream st no longer holds some entry after a.
// Trimming leaves no trace but entries-added exceeding the length, and the
// trimmed entries all precede the first one kept; XDEL records the
// greatest id it removed.
func lost(st *redis.XInfoStream, a streamID) error {
	if md, ok := parseID(st.MaxDeletedEntryID); ok && a.compare(md) < 0 {
		return errors.New("entries after the last event ID were deleted")
	}
	if st.EntriesAdded > st.Length {
		oldest := st.LastGeneratedID // nothing left: everything up to it went
		if st.Length > 0 {
			oldest = st.FirstEntry.ID
		}
		if o, ok := parseID(oldest); ok && a.compare(o) < 0 {
			return errors.New("the last event ID is older than the history kept")
		}
	}
	return nil
}

// Close implements [sse.Broker]: it stops the reader and closes its
// Pub/Sub connection, waits until the reader has returned, and makes later
// Publish and Subscribe calls fail with [ErrClosed]. It does not close
// Client. It returns at once unless a round of reads is waiting for
// Redis, which Client's DialTimeout and ReadTimeout bound (5 s and 3 s by
// default), also when Redis has stopped answering.
func (b *Broker) Close() error {
	b.mu.Lock()
	b.closed = true
	stop, ps := b.stopReader, b.pubsub
	b.mu.Unlock()
	if stop != nil {
		stop()
		ps.Close()
	}
	b.wg.Wait()
	return nil
}

// streamID is a parsed Redis stream entry id.
type streamID struct{ ms, seq uint64 }

var maxID = streamID{^uint64(0), ^uint64(0)}

// parseID reads "<ms>-<seq>" in the canonical form Redis writes, so that
// equal ids are equal strings.
func parseID(s string) (streamID, bool) {
	ms, seq, ok := strings.Cut(s, "-")
	if !ok {
		return streamID{}, false
	}
	var id streamID
	var err error
	if id.ms, err = strconv.ParseUint(ms, 10, 64); err != nil || strconv.FormatUint(id.ms, 10) != ms {
		return streamID{}, false
	}
	if id.seq, err = strconv.ParseUint(seq, 10, 64); err != nil || strconv.FormatUint(id.seq, 10) != seq {
		return streamID{}, false
	}
	return id, true
}

func (a streamID) String() string {
	return strconv.FormatUint(a.ms, 10) + "-" + strconv.FormatUint(a.seq, 10)
}

func (a streamID) compare(b streamID) int {
	if c := cmp.Compare(a.ms, b.ms); c != 0 {
		return c
	}
	return cmp.Compare(a.seq, b.seq)
}
