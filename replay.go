package sse

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// ErrHistoryGap is returned (wrapped) by [Broker.Replay] when the events
// after the given id cannot all be replayed: the id is older than the
// history kept, comes from another epoch (before a restart), or is unknown.
// The Hub turns it into a reset event.
var ErrHistoryGap = errors.New("sse: events after the last event ID are no longer available")

// Entry is one stored event and the topic it was published on.
type Entry struct {
	Topic string
	Message
}

// Broker stores the events of a Hub's topics and carries them to every node
// that serves those topics. [MemoryBroker] is the in-process one; others can
// put the history in Redis, NATS or a database.
//
// A Broker must be safe for concurrent use. Ids are opaque to the Hub; the
// Broker alone knows what order they stand in. The Hub never holds its own
// lock across a call to its Broker, so a slow store delays only the
// subscriber that waits on it.
//
// One Last-Event-ID stands for a client's place in all of its topics. With
// a Broker whose feeds of different topics are not delivered in one order
// (one reader per topic, as in Redis Streams), a client of several topics
// can resume after an event of one topic that a feed of another has not yet
// delivered, and miss events there: serve one topic per stream with such a
// Broker.
type Broker interface {
	// Publish stores m on topic and returns the id it is known by: m.ID
	// when set (a Broker that cannot keep ids of its own must refuse them),
	// otherwise one the Broker assigns. Every feed of the topic then
	// delivers it.
	Publish(ctx context.Context, topic string, m Message) (id string, err error)

	// Subscribe starts a live feed of topic: deliver is called with every
	// event published after the call, in publish order, one call at a time,
	// until ctx ends. It returns the position where the feed starts: the id
	// of the newest event stored, or for a topic without one an id that
	// Replay accepts as "now". Replay up to it and the feed after it
	// together hold every event once.
	Subscribe(ctx context.Context, topic string, deliver func(Entry)) (newest string, err error)

	// Replay returns the stored events of topics that came after the event
	// with id after, oldest first, and heads[i], the position of topics[i]
	// as read (the id of its newest event, or what Subscribe returns for a
	// topic without events). When some events are gone it returns an error
	// wrapping ErrHistoryGap.
	//
	// The Hub skips the live events of a topic up to its head when the
	// head differs from where the topic's feed stands: that is how a feed
	// that lags behind the store (another node published) never delivers
	// an event twice. A head must therefore be an id the feed delivers, or
	// the feed's own position.
	Replay(ctx context.Context, topics []string, after string) (entries []Entry, heads []string, err error)

	// Close releases the Broker's resources.
	Close() error
}

// Defaults of [MemoryBroker].
const (
	DefaultHistory    = 1024
	DefaultHistoryAge = 10 * time.Minute
)

// MemoryBroker keeps a bounded history of every topic in memory. It is the
// Hub's default Broker, for a single process.
//
// Ids it assigns read "<epoch>-<sequence>": the epoch is random per
// MemoryBroker, so an id from before a restart is recognised as such, and
// the sequence is shared by all topics. An id set by the publisher is kept
// as it is and found again through an index. The zero value is ready to use;
// set the fields before first use.
type MemoryBroker struct {
	// History is how many events are kept per topic; 0 means
	// DefaultHistory.
	History int
	// HistoryAge is how long events are kept; 0 means DefaultHistoryAge
	// and a negative value keeps them for as long as History allows.
	HistoryAge time.Duration

	pub sync.Mutex // held from storing an event until every feed has it, to keep feeds in order

	mu     sync.Mutex // guards the fields below; never held while calling out
	epoch  string
	seq    uint64
	topics map[string]*memTopic
	named  map[string]uint64 // publisher-set ids of stored events
	feeds  int
	closed bool
}

type memTopic struct {
	events  []memEvent // oldest first
	dropped uint64     // sequence of the newest event no longer kept
	feeds   map[int]func(Entry)
}

type memEvent struct {
	seq  uint64
	at   time.Time
	user bool // the id came from the publisher, and is in named
	Entry
}

func (b *MemoryBroker) init() {
	if b.topics == nil {
		var e [4]byte
		rand.Read(e[:])
		b.epoch = hex.EncodeToString(e[:])
		b.topics = make(map[string]*memTopic)
		b.named = make(map[string]uint64)
	}
}

func (b *MemoryBroker) topic(name string) *memTopic {
	t := b.topics[name]
	if t == nil {
		t = &memTopic{feeds: make(map[int]func(Entry))}
		b.topics[name] = t
	}
	return t
}

var errBrokerClosed = errors.New("sse: broker closed")

// Publish implements [Broker]. It copies m.Data.
func (b *MemoryBroker) Publish(ctx context.Context, topic string, m Message) (string, error) {
	m.Data = slices.Clone(m.Data)
	m.Retry, m.Comment = 0, "" // per-connection matters, not part of history
	b.pub.Lock()
	defer b.pub.Unlock()

	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return "", errBrokerClosed
	}
	b.init()
	b.seq++
	e := memEvent{seq: b.seq, at: time.Now(), user: m.ID != "", Entry: Entry{Topic: topic, Message: m}}
	if e.user {
		b.named[m.ID] = e.seq
	} else {
		e.ID = b.epoch + "-" + strconv.FormatUint(e.seq, 10)
	}
	t := b.topic(topic)
	t.events = append(t.events, e)
	b.prune(t, e.at)
	feeds := make([]func(Entry), 0, len(t.feeds))
	for _, f := range t.feeds {
		feeds = append(feeds, f)
	}
	b.mu.Unlock()

	for _, f := range feeds {
		f(e.Entry)
	}
	return e.ID, nil
}

// prune drops what History and HistoryAge no longer allow.
func (b *MemoryBroker) prune(t *memTopic, now time.Time) {
	limit := b.History
	if limit <= 0 {
		limit = DefaultHistory
	}
	age := b.HistoryAge
	if age == 0 {
		age = DefaultHistoryAge
	}
	n := max(len(t.events)-limit, 0)
	for age > 0 && n < len(t.events) && now.Sub(t.events[n].at) > age {
		n++
	}
	if n == 0 {
		return
	}
	for _, e := range t.events[:n] {
		if e.user && b.named[e.ID] == e.seq {
			delete(b.named, e.ID)
		}
	}
	t.dropped = t.events[n-1].seq
	t.events = slices.Delete(t.events, 0, n) // keep the array: the ring refills it
}

// Subscribe implements [Broker].
func (b *MemoryBroker) Subscribe(ctx context.Context, topic string, deliver func(Entry)) (string, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return "", errBrokerClosed
	}
	b.init()
	t := b.topic(topic)
	b.feeds++
	id := b.feeds
	t.feeds[id] = deliver
	context.AfterFunc(ctx, func() {
		b.mu.Lock()
		delete(t.feeds, id)
		if len(t.feeds) == 0 && len(t.events) == 0 && b.topics[topic] == t {
			delete(b.topics, topic)
		}
		b.mu.Unlock()
	})
	return b.head(t), nil
}

// head is the position of t: its newest event, or for a topic without
// events an id that stays the same until the next one, which Replay takes
// as "before everything to come".
func (b *MemoryBroker) head(t *memTopic) string {
	if n := len(t.events); n > 0 {
		return t.events[n-1].ID
	}
	return b.epoch + "-" + strconv.FormatUint(t.dropped, 10)
}

// Replay implements [Broker].
func (b *MemoryBroker) Replay(ctx context.Context, topics []string, after string) ([]Entry, []string, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.init()
	seq, ok := b.named[after]
	if !ok {
		seq, ok = b.parse(after)
	}
	if !ok {
		return nil, nil, errors.Join(ErrHistoryGap, errors.New("sse: unknown last event ID"))
	}
	var events []memEvent
	heads := make([]string, len(topics))
	now := time.Now()
	for i, name := range topics {
		t := b.topics[name]
		if t == nil {
			heads[i] = b.head(&memTopic{})
			continue
		}
		b.prune(t, now)
		if seq < t.dropped {
			return nil, nil, errors.Join(ErrHistoryGap, errors.New("sse: last event ID is older than the history kept"))
		}
		j, _ := slices.BinarySearchFunc(t.events, seq+1, func(e memEvent, s uint64) int { return cmp.Compare(e.seq, s) })
		events = append(events, t.events[j:]...)
		heads[i] = b.head(t)
	}
	return inOrder(events), heads, nil
}

// parse reads an id this broker assigned; ids of another epoch, or from
// the future, are not its own.
func (b *MemoryBroker) parse(id string) (uint64, bool) {
	epoch, num, ok := strings.Cut(id, "-")
	if !ok || epoch != b.epoch {
		return 0, false
	}
	seq, err := strconv.ParseUint(num, 10, 64)
	if err != nil || seq > b.seq || strconv.FormatUint(seq, 10) != num {
		return 0, false
	}
	return seq, true
}

// Close implements [Broker]: later publishes and subscriptions fail.
func (b *MemoryBroker) Close() error {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	return nil
}
