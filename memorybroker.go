package sse

import (
	"cmp"
	"container/heap"
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
// as it is and belongs to its topic: topics may each count their own ids
// (a client of several topics that resumes from an id that more than one of
// them holds gets a reset, since which one it saw is unknown).
//
// Memory is bounded by History events per topic and, with HistoryAge, by
// the events of that age, whether or not a topic publishes again: a timer
// drops events as they age out, and forgets a topic left without events or
// subscribers for HistoryAge more. A client that resumes on a forgotten
// topic from an id older than the events dropped since gets a reset, even
// if its topic had nothing new: nothing tells otherwise.
//
// The zero value is ready to use; set the fields before first use. Close
// stops the timer.
type MemoryBroker struct {
	// History is how many events are kept per topic; 0 means
	// DefaultHistory.
	History int
	// HistoryAge is how long events are kept; 0 means DefaultHistoryAge
	// and a negative value keeps them for as long as History allows.
	HistoryAge time.Duration

	pub sync.Mutex // held from storing an event until every feed has it, to keep feeds in order

	mu        sync.Mutex // guards the fields below; never held while calling out
	epoch     string
	seq       uint64
	topics    map[string]*memTopic
	forgotten uint64      // newest sequence dropped from a topic no longer known: where topics made since start
	due       memDue      // topics with something to drop or to forget, soonest first
	timer     *time.Timer // fires at the first due of the time it was armed for
	timerAt   time.Time   // when timer fires; zero when it is not armed
	feeds     int
	closed    bool
}

type memTopic struct {
	name    string
	events  []memEvent        // oldest first
	named   map[string]uint64 // publisher-set ids of the events kept
	dropped uint64            // sequence of the newest event no longer kept
	lastID  string            // its id when the publisher set it, still in named
	feeds   map[int]memFeed
	idle    time.Time // since when it has had neither events nor feeds
	at      time.Time // when the timer must look at it again; zero: never
	index   int       // in MemoryBroker.due, when at is set
}

// memFeed is a feed of a topic, called until its ctx ends.
type memFeed struct {
	ctx     context.Context
	deliver func(Entry)
}

type memEvent struct {
	seq  uint64
	at   time.Time
	user bool // the id came from the publisher, and is in named
	Entry
}

// memDue is a heap of topics by their at.
type memDue []*memTopic

func (d memDue) Len() int           { return len(d) }
func (d memDue) Less(i, j int) bool { return d[i].at.Before(d[j].at) }
func (d memDue) Swap(i, j int) {
	d[i], d[j] = d[j], d[i]
	d[i].index, d[j].index = i, j
}
func (d *memDue) Push(x any) {
	t := x.(*memTopic)
	t.index = len(*d)
	*d = append(*d, t)
}
func (d *memDue) Pop() any {
	old := *d
	t := old[len(old)-1]
	old[len(old)-1] = nil
	*d = old[:len(old)-1]
	return t
}

func (b *MemoryBroker) init() {
	if b.topics == nil {
		var e [4]byte
		rand.Read(e[:])
		b.epoch = hex.EncodeToString(e[:])
		b.topics = make(map[string]*memTopic)
	}
}

func (b *MemoryBroker) topic(name string) *memTopic {
	t := b.topics[name]
	if t == nil {
		// Whatever this topic held before it was forgotten is at most
		// b.forgotten: from there on it is known again.
		t = &memTopic{name: name, dropped: b.forgotten, feeds: make(map[int]memFeed)}
		b.topics[name] = t
	}
	return t
}

func (b *MemoryBroker) age() time.Duration {
	if b.HistoryAge == 0 {
		return DefaultHistoryAge
	}
	return b.HistoryAge
}

var errBrokerClosed = errors.New("sse: broker closed")

// Publish implements [Broker]. It copies m.Data. A Message with an invalid
// field returns an error wrapping [ErrInvalidField] and stores nothing.
func (b *MemoryBroker) Publish(ctx context.Context, topic string, m Message) (string, error) {
	if err := m.validate(); err != nil {
		return "", err
	}
	m.Data = slices.Clone(m.Data)
	b.pub.Lock()
	defer b.pub.Unlock()

	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return "", errBrokerClosed
	}
	b.init()
	b.seq++
	t := b.topic(topic)
	e := memEvent{seq: b.seq, at: time.Now(), user: m.ID != "", Entry: Entry{Topic: topic, Message: m}}
	if e.user {
		if t.named == nil {
			t.named = make(map[string]uint64)
		}
		t.named[m.ID] = e.seq
	} else {
		e.ID = b.position(e.seq)
	}
	t.events = append(t.events, e)
	b.prune(t, e.at)
	b.settle(t, e.at)
	feeds := make([]memFeed, 0, len(t.feeds))
	for _, f := range t.feeds {
		feeds = append(feeds, f)
	}
	b.mu.Unlock()

	for _, f := range feeds {
		// A feed stays in t.feeds until its AfterFunc has run, a moment
		// after its ctx ended: it must not get what came after.
		if f.ctx.Err() == nil {
			f.deliver(e.Entry)
		}
	}
	return e.ID, nil
}

// prune drops what History and HistoryAge no longer allow.
func (b *MemoryBroker) prune(t *memTopic, now time.Time) {
	limit := b.History
	if limit <= 0 {
		limit = DefaultHistory
	}
	age := b.age()
	n := max(len(t.events)-limit, 0)
	for age > 0 && n < len(t.events) && !now.Before(t.events[n].at.Add(age)) {
		n++
	}
	if n == 0 {
		return
	}
	if t.lastID != "" && t.named[t.lastID] == t.dropped {
		delete(t.named, t.lastID)
	}
	for _, e := range t.events[:n] {
		if e.user && t.named[e.ID] == e.seq {
			delete(t.named, e.ID)
		}
	}
	// The newest event dropped stays known by its id: it is where the
	// topic's feeds stand until the next event, and so its head.
	last := t.events[n-1]
	t.dropped, t.lastID = last.seq, ""
	if _, taken := t.named[last.ID]; last.user && !taken {
		t.named[last.ID], t.lastID = last.seq, last.ID
	}
	if n == len(t.events) {
		t.events = nil // an idle topic keeps no array
		return
	}
	t.events = slices.Delete(t.events, 0, n) // keep the array: the ring refills it
}

// settle schedules what t needs next, after a change: its oldest event
// ages out, or, left without events and feeds, it is forgotten.
func (b *MemoryBroker) settle(t *memTopic, now time.Time) {
	age := b.age()
	var at time.Time
	switch {
	case len(t.events) > 0:
		t.idle = time.Time{}
		if age > 0 {
			at = t.events[0].at.Add(age)
		}
	case len(t.feeds) > 0:
		t.idle = time.Time{}
	case age < 0:
		b.forget(t) // nothing ages: its history, none, stays exact
		return
	default:
		if t.idle.IsZero() {
			t.idle = now
		}
		at = t.idle.Add(age)
	}
	switch {
	case at.IsZero():
		if !t.at.IsZero() {
			heap.Remove(&b.due, t.index)
		}
	case t.at.IsZero():
		t.at = at
		heap.Push(&b.due, t)
	case !at.Equal(t.at):
		t.at = at
		heap.Fix(&b.due, t.index)
	}
	t.at = at
	b.arm()
}

// forget drops t, which has neither events nor feeds.
func (b *MemoryBroker) forget(t *memTopic) {
	if !t.at.IsZero() {
		heap.Remove(&b.due, t.index)
		t.at = time.Time{}
	}
	delete(b.topics, t.name)
	b.forgotten = max(b.forgotten, t.dropped)
}

// arm makes the timer fire by the first due.
func (b *MemoryBroker) arm() {
	if len(b.due) == 0 || b.closed {
		return // a timer still armed finds nothing to do
	}
	at := b.due[0].at
	if !b.timerAt.IsZero() && !at.Before(b.timerAt) {
		return
	}
	b.timerAt = at
	if b.timer == nil {
		b.timer = time.AfterFunc(time.Until(at), b.expire)
	} else {
		b.timer.Reset(time.Until(at))
	}
}

// expire is the timer: it drops the events that aged out and forgets the
// topics idle for HistoryAge.
func (b *MemoryBroker) expire() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.timerAt = time.Time{}
	if b.closed {
		return
	}
	now := time.Now()
	for len(b.due) > 0 && !now.Before(b.due[0].at) {
		t := b.due[0]
		if len(t.events) == 0 && len(t.feeds) == 0 {
			b.forget(t)
			continue
		}
		b.prune(t, now)
		b.settle(t, now) // later than now: prune kept only what is younger
	}
	b.arm()
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
	t.feeds[id] = memFeed{ctx, deliver}
	b.settle(t, time.Now())
	context.AfterFunc(ctx, func() {
		b.mu.Lock()
		delete(t.feeds, id)
		if b.topics[topic] == t {
			b.settle(t, time.Now())
		}
		b.mu.Unlock()
	})
	return b.head(t), nil
}

// head is the position of t: the id of its newest event, kept or not (the
// id a feed last delivered), or an id that stays the same until the next
// event, which Replay takes as "before everything to come".
func (b *MemoryBroker) head(t *memTopic) string {
	if n := len(t.events); n > 0 {
		return t.events[n-1].ID
	}
	if t.lastID != "" {
		return t.lastID
	}
	return b.position(t.dropped)
}

// position is the id of sequence seq.
func (b *MemoryBroker) position(seq uint64) string {
	return b.epoch + "-" + strconv.FormatUint(seq, 10)
}

var (
	errUnknownID   = errors.New("sse: unknown last event ID")
	errAmbiguousID = errors.New("sse: the last event ID was set by the publisher on several of the topics")
	errExpired     = errors.New("sse: the last event ID is older than the history kept")
)

// Replay implements [Broker]. Its errors are [*HistoryGapError]s.
func (b *MemoryBroker) Replay(ctx context.Context, topics []string, after string) ([]Entry, []string, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.init()
	seq, err := b.find(topics, after)
	if err != nil {
		return nil, nil, err
	}
	var events []memEvent
	heads := make([]string, len(topics))
	now := time.Now()
	for i, name := range topics {
		t := b.topics[name]
		if t == nil {
			t = &memTopic{dropped: b.forgotten} // as it would be made
		} else {
			b.prune(t, now)
			b.settle(t, now)
		}
		if seq < t.dropped {
			return nil, nil, &HistoryGapError{Reason: GapExpired, Err: errExpired}
		}
		j, _ := slices.BinarySearchFunc(t.events, seq+1, func(e memEvent, s uint64) int { return cmp.Compare(e.seq, s) })
		events = append(events, t.events[j:]...)
		heads[i] = b.head(t)
	}
	return inOrder(events), heads, nil
}

// find returns the sequence of id in topics: a publisher-set id of one of
// them, or one this broker assigned.
func (b *MemoryBroker) find(topics []string, id string) (uint64, error) {
	var in *memTopic
	var seq uint64
	for _, name := range topics {
		t := b.topics[name]
		if s, ok := t.lookup(id); ok && t != in {
			if in != nil {
				return 0, &HistoryGapError{Reason: GapUnknown, Err: errAmbiguousID}
			}
			in, seq = t, s
		}
	}
	if in != nil {
		return seq, nil
	}
	if s, ok := b.parse(id); ok {
		return s, nil
	}
	return 0, &HistoryGapError{Reason: GapUnknown, Err: errUnknownID}
}

// lookup finds a publisher-set id of t, which may be nil.
func (t *memTopic) lookup(id string) (uint64, bool) {
	if t == nil {
		return 0, false
	}
	seq, ok := t.named[id]
	return seq, ok
}

// Newest implements [Broker]. It returns an id of its own ("<epoch>-<n>"),
// which no publisher-set id can make ambiguous.
func (b *MemoryBroker) Newest(ctx context.Context, topics, ids []string) (string, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.init()
	var newest uint64
	for i, id := range ids {
		var t *memTopic
		if i < len(topics) {
			t = b.topics[topics[i]]
		}
		seq, ok := t.lookup(id)
		if !ok {
			seq, ok = b.parse(id)
		}
		if !ok && t != nil {
			// A publisher-set id no longer kept: its event was dropped,
			// and so came no later than the newest dropped.
			seq = t.dropped
		}
		newest = max(newest, seq)
	}
	return b.position(newest), nil
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

// Close implements [Broker]: later publishes and subscriptions fail, and
// the timer stops.
func (b *MemoryBroker) Close() error {
	b.mu.Lock()
	b.closed = true
	if b.timer != nil {
		b.timer.Stop()
		b.timerAt = time.Time{}
	}
	b.mu.Unlock()
	return nil
}
