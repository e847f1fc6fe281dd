package sse

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Errors returned by [Hub.Serve].
var (
	// ErrHubClosed is returned by Publish and Serve once the Hub is shutting
	// down or closed.
	ErrHubClosed = errors.New("sse: hub closed")
	// ErrEvicted is returned by Serve when the subscriber's queue was full:
	// its client could not keep up, and was cut off so that it reconnects
	// and catches up by replay rather than miss events silently.
	ErrEvicted = errors.New("sse: subscriber evicted: it could not keep up")
)

var errNoTopic = errors.New("sse: no topic to serve")

// Defaults of [Hub].
const (
	DefaultQueueSize = 256
	DefaultResetType = "reset"
)

// maxBatch bounds how many queued events one write coalesces.
const maxBatch = 128

// Hub fans events out to subscribers of topics. Publishing encodes an event
// once and hands the same bytes to every subscriber of its topic; each
// subscriber has a bounded queue and a writer that sends whatever is queued
// in one write and one flush. A publisher never waits for a subscriber: a
// subscriber whose queue is full is disconnected, so that a client gets
// every event of its topics in order, or is cut off and catches up by
// replay when it reconnects; never a silent hole.
//
// Published events reach subscribers with every field of their [Message],
// Retry and Comment included, live and in replay alike.
//
// A subscriber that arrives with a Last-Event-ID (header or lastEventId
// query parameter) first receives the events it missed, then live events,
// with no gap and no duplicate between the two. When the Broker no longer
// has them all, it receives one event of type ResetType instead: the
// application should reload its state. That event carries the newest id of
// the subscriber's topics, so the client resumes from there on its next
// reconnection, and its data is a JSON object, [ResetData]:
//
//	{"reason":"expired","lastEventId":"3f2a9c1e-41","resume":"3f2a9c1e-97"}
//
// reason is a [GapReason]: "expired" (the events after lastEventId are no
// longer kept) or "unknown" (the id is not one the Broker knows: from before
// a restart, malformed, or another server's); lastEventId is the id the
// client sent, and resume the id it resumes from, which is also the event's
// id. Members may be added; those never change.
//
// A subscriber without a Last-Event-ID is first told its position: a block
// with an id and no data ("id: 3f2a9c1e-97", then a blank line), which by
// the standard sets the client's last event ID without dispatching an
// event, so that it can resume from there even before its first event.
// EventSource and this package's [Client] and [Decoder] do so. Some other
// clients, among them the Go libraries go-sse and r3labs/sse, dispatch it as
// a "message" event with empty data: such clients should ignore an event
// without data that only carries an id (or keep its id as their position),
// and an application whose clients cannot should publish no empty events
// of its own, so that an empty event is always a position.
//
// The zero value is ready to use, with a [MemoryBroker]. Set the fields
// before first use. All methods are safe for concurrent use.
type Hub struct {
	// Broker stores and carries the events; nil means a MemoryBroker of
	// the Hub's own, which Close closes. A Broker given here is the
	// caller's to close.
	Broker Broker
	// Upgrader opens the streams of ServeHTTP: heartbeats, write timeouts
	// and retry time come from it.
	Upgrader Upgrader
	// QueueSize is how many events may wait for one subscriber before it
	// is evicted; 0 means DefaultQueueSize.
	QueueSize int
	// Topics picks the topics of a request in ServeHTTP; nil means the
	// values of the "topic" query parameter. No topic answers 400.
	Topics func(r *http.Request) []string
	// ResetType is the type of the event that tells a subscriber its
	// history is gone; "" means DefaultResetType.
	ResetType string
	// Recent is how many of each topic's newest events a subscriber
	// without a Last-Event-ID receives first, before the live ones and
	// with no gap and no duplicate between the two: a page opened or
	// reloaded shows the latest history, once. 0 means none, the stream
	// starts with the current position. It needs a Broker that implements
	// [RecentBroker], as MemoryBroker does; with another there are none.
	Recent int
	// Logger receives evictions, shutdowns and refusals; nil means
	// slog.Default(). Refusals are logged once per kind a minute, with how
	// many there were.
	Logger *slog.Logger

	// The bounds of what one request can cost. Each is refused before any
	// work is done on it: ServeHTTP answers with a short plain-text reason
	// (never an error's text), Serve and Publish return a [*LimitError].

	// MaxTopics is how many topics one subscriber may ask for, a topic
	// named twice counting twice; more answers 400. 0 means
	// DefaultMaxTopics, a negative value no limit.
	MaxTopics int
	// MaxTopicLength is the longest topic name, in bytes, that may be
	// subscribed to (longer answers 400) or published on. 0 means
	// DefaultMaxTopicLength, a negative value no limit.
	MaxTopicLength int
	// MaxSubscribers is how many streams the Hub serves at once, through
	// ServeHTTP and Serve together; one more answers 503 with a
	// Retry-After header. 0 means DefaultMaxSubscribers, a negative value
	// no limit.
	MaxSubscribers int
	// MaxPerClient is how many streams of ServeHTTP one client may hold at
	// once; one more answers 429 with a Retry-After header. Zero or
	// negative means no limit, the default: behind a proxy every client
	// has the proxy's address unless ClientAddr says otherwise.
	MaxPerClient int
	// ClientAddr names the client of a request, for MaxPerClient; nil, or
	// an empty result, means the host of r.RemoteAddr. Behind a proxy it
	// should read the address the proxy sets, such as the last entry of
	// X-Forwarded-For, which a client cannot forge past a proxy that
	// appends to it.
	ClientAddr func(r *http.Request) string
	// MaxDataSize is the most bytes of data one event may carry; Publish
	// refuses a larger one whole. 0 means DefaultMaxDataSize, a negative
	// value no limit.
	MaxDataSize int

	// Authorize, when not nil, decides in ServeHTTP which topics a request
	// may have, once they are within the bounds and before anything is
	// written: it returns the topics to serve (those asked, or fewer, or
	// others) or an error. An error that is or wraps ErrUnauthorized
	// answers 401, any other error, or no topic, 403; the error goes to
	// the Logger, never to the client. Serve does not call it: a handler
	// that calls Serve has authorized the request itself. It may be
	// called by many goroutines at once.
	Authorize func(r *http.Request, topics []string) ([]string, error)

	once   sync.Once
	broker Broker
	owned  bool          // broker is the Hub's own
	drain  chan struct{} // closed by Shutdown: writers finish their queues and leave
	done   chan struct{} // closed by Close: writers leave now
	active sync.WaitGroup

	mu     sync.Mutex // guards the fields below
	topics map[string]*hubTopic
	subs   map[*subscriber]struct{}
	live   int // subscribers caught up
	closed bool

	subscribed, published, delivered, evicted atomic.Int64
	limits                                    hubLimits
}

type hubTopic struct {
	name   string
	subs   map[*subscriber]struct{}
	cursor string        // id of the newest event the feed delivered, or where it started
	fed    bool          // the feed has delivered an event
	start  string        // where the feed started, once ready
	ready  chan struct{} // closed when Broker.Subscribe has returned
	err    error         // why the feed could not start
	stop   context.CancelFunc
}

// A subscriber's fields are guarded by Hub.mu, except evicted, the queue
// (q, guarded by qmu), and backlog and spare, which its writer owns.
type subscriber struct {
	conn    *Conn
	topics  []string
	feeds   []*hubTopic        // feeds[i] serves topics[i]
	base    []position         // base[i]: topics[i]'s position before the first event queued for it
	backlog []*PreparedMessage // position, reset or replay: written before the queue
	skip    map[string]string  // topic → id: live events up to it came by replay
	gone    bool               // removed from the Hub
	live    bool               // caught up: every later event reaches it; counted in Stats
	evicted atomic.Bool

	// The queue is a slice that grows on demand up to queueSize, not a
	// channel of queueSize slots: an idle subscriber, the usual kind, then
	// holds a few slots instead of QueueSize pointers. The writer takes the
	// whole slice at once and hands the one it wrote back as spare, so two
	// slices serve for the subscriber's life.
	qmu       sync.Mutex
	q         []*PreparedMessage
	spare     []*PreparedMessage
	queueSize int
	wake      chan struct{} // one token: something was queued since the writer last took
}

// position is where a topic stood; known is false until it is set.
type position struct {
	id    string
	known bool
}

// push queues pm, or reports false when the queue is full.
func (s *subscriber) push(pm *PreparedMessage) bool {
	s.qmu.Lock()
	if len(s.q) >= s.queueSize {
		s.qmu.Unlock()
		return false
	}
	if len(s.q) == cap(s.q) {
		// Growing by 8 times (8, 64, 512 slots...) makes few steps, so that
		// a busy subscriber is soon at its largest queue and allocates no
		// more, while an idle one holds 8 slots.
		q := make([]*PreparedMessage, len(s.q), min(max(8*cap(s.q), 8), s.queueSize))
		copy(q, s.q)
		s.q = q
	}
	s.q = append(s.q, pm)
	s.qmu.Unlock()
	s.poke()
	return true
}

// poke wakes s's writer.
func (s *subscriber) poke() {
	select {
	case s.wake <- struct{}{}:
	default: // the writer has a token already, and will see what is new
	}
}

// take returns everything queued, oldest first, and empties the queue; the
// writer gives the result back with done once it is written.
func (s *subscriber) take() []*PreparedMessage {
	s.qmu.Lock()
	q := s.q
	s.q, s.spare = s.spare[:0], nil
	s.qmu.Unlock()
	return q
}

// queued reports whether the queue has messages.
func (s *subscriber) queued() bool {
	s.qmu.Lock()
	defer s.qmu.Unlock()
	return len(s.q) > 0
}

// done lets go of the messages of q, a result of take, and keeps q for the
// next take.
func (s *subscriber) done(q []*PreparedMessage) {
	clear(q)
	if cap(q) > cap(s.spare) {
		s.spare = q[:0]
	}
}

// HubStats are counters for metrics.
type HubStats struct {
	Subscribers   int   // connected now, and receiving every event of their topics
	Topics        int   // with at least one subscriber now
	Subscriptions int64 // subscribers that reached that point since the Hub started
	Published     int64 // events published through this Hub
	Delivered     int64 // events queued for a subscriber (each subscriber counts)
	Evicted       int64 // subscribers cut off for not keeping up
	Refused       int64 // streams refused by a bound or by Authorize
}

func (h *Hub) init() {
	h.once.Do(func() {
		h.broker = h.Broker
		if h.broker == nil {
			h.broker, h.owned = &MemoryBroker{}, true
		}
		h.drain = make(chan struct{})
		h.done = make(chan struct{})
		h.topics = make(map[string]*hubTopic)
		h.subs = make(map[*subscriber]struct{})
	})
}

func (h *Hub) logger() *slog.Logger {
	if h.Logger != nil {
		return h.Logger
	}
	return slog.Default()
}

// Stats returns the Hub's counters.
func (h *Hub) Stats() HubStats {
	h.init()
	h.mu.Lock()
	defer h.mu.Unlock()
	return HubStats{
		Subscribers:   h.live,
		Topics:        len(h.topics),
		Subscriptions: h.subscribed.Load(),
		Published:     h.published.Load(),
		Delivered:     h.delivered.Load(),
		Evicted:       h.evicted.Load(),
		Refused:       h.limits.refused.Load(),
	}
}

// Publish sends m to every subscriber of topic, through the Broker, and
// returns the event's id: m.ID when set, else one the Broker assigned. It
// never waits for a subscriber. An invalid field returns an error wrapping
// ErrInvalidField and publishes nothing; so does a closed Hub, with
// ErrHubClosed.
func (h *Hub) Publish(ctx context.Context, topic string, m Message) (string, error) {
	h.init()
	if err := m.validate(); err != nil {
		return "", err
	}
	if err := h.checkPublish(topic, &m); err != nil {
		return "", err
	}
	h.mu.Lock()
	closed := h.closed
	h.mu.Unlock()
	if closed {
		return "", ErrHubClosed
	}
	id, err := h.broker.Publish(ctx, topic, m)
	if err == nil {
		h.published.Add(1)
	}
	return id, err
}

// deliver is the feed of topic t: it encodes e once and queues it for
// every subscriber.
func (h *Hub) deliver(t *hubTopic, e Entry) {
	pm, err := NewPreparedMessage(e.Message)
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.topics[t.name] != t {
		return // the topic's last subscriber left
	}
	t.cursor, t.fed = e.ID, true
	if pm != nil {
		pm.id, pm.topic = e.ID, t.name
	}
	if err != nil {
		// Not ours to lose silently: a Broker handed over an event that
		// cannot be encoded. Cut the subscribers off so they resync.
		h.logger().Error("sse: hub cannot encode an event from the broker", "topic", t.name, "id", e.ID, "err", err)
	}
	for s := range t.subs {
		if id, ok := s.skip[t.name]; ok {
			if id == e.ID {
				delete(s.skip, t.name)
			}
			continue
		}
		if err != nil {
			h.evictLocked(s)
			continue
		}
		if s.push(pm) {
			h.delivered.Add(1)
		} else {
			h.evictLocked(s)
		}
	}
}

func (h *Hub) evictLocked(s *subscriber) {
	s.evicted.Store(true)
	h.removeLocked(s)
	h.evicted.Add(1)
	h.logger().Warn("sse: subscriber evicted: queue full", "topics", s.topics, "queue", s.queueSize)
	s.conn.fail(ErrConnectionClosed) // its writer, in Serve, waits for the rest of Close
}

// removeLocked takes s out of the Hub and stops the feeds no one needs.
func (h *Hub) removeLocked(s *subscriber) {
	if s.gone {
		return
	}
	s.gone = true
	delete(h.subs, s)
	if s.live {
		h.live--
	}
	for _, t := range s.feeds {
		delete(t.subs, s)
		if len(t.subs) == 0 && h.topics[t.name] == t && t.stop != nil {
			delete(h.topics, t.name) // a feed still starting is stopped by startFeed
			t.stop()
		}
	}
}

// ServeHTTP upgrades the request and serves it the events of the topics
// that Topics picks and Authorize allows, as Serve does, once they are
// within the Hub's bounds. A request without a topic answers 400, and an
// OPTIONS request 204 without a stream, which is what a CORS preflight
// that a middleware lets through needs.
func (h *Hub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	topics, client, ok := h.admit(w, r)
	if !ok {
		return // admit has answered
	}
	defer h.release(client)
	c, err := h.Upgrader.Upgrade(w, r)
	if err != nil {
		return // Upgrade has answered
	}
	h.serve(c, topics)
}

// Serve subscribes c to topics and writes their events to it until the
// client goes away (it returns nil), the subscriber is evicted
// ([ErrEvicted]), the Hub closes ([ErrHubClosed]), or a write fails. It
// runs on the caller's goroutine, typically the handler that upgraded c
// after authenticating the request, and closes c before it returns. Events
// after c.LastEventID() are replayed first; a subscriber without one gets
// the Recent events, or is told the current position (an id without an
// event), so that it can resume from there even before its first event.
//
// Topics beyond MaxTopics or MaxTopicLength, or a Hub serving
// MaxSubscribers streams already, return a [*LimitError] at once: the
// client sees its stream end, and reconnects after its retry time. A
// handler that wants to answer such a request with an HTTP status checks
// before it upgrades.
func (h *Hub) Serve(c *Conn, topics ...string) error {
	if err := h.admitConn(topics); err != nil {
		c.Close()
		return err
	}
	defer h.release("")
	return h.serve(c, topics)
}

// serve is Serve for ServeHTTP too, which saves a frame: the goroutine of
// an idle subscriber waits in write's select with serve beneath it, and
// net/http's frames beneath that. That stack stays at 4 KiB only while its
// deepest point, a write that goes down to the socket through net/http's
// chunked writer and its fmt.Fprintf, fits in it: past that it doubles to
// 8 KiB for the life of the connection, and an idle connection costs 4 KiB
// more. So the work is in join and write, and the path from serve down to
// Conn.sendBytes is kept to a few small frames.
func (h *Hub) serve(c *Conn, topics []string) error {
	s, err := h.join(c, topics)
	if s == nil {
		c.Close()
		return err
	}
	defer h.leave(s)
	if err != nil {
		return err
	}
	return h.write(s)
}

// join registers a subscriber for c and catches it up; s is nil when it
// could not register.
func (h *Hub) join(c *Conn, topics []string) (s *subscriber, err error) {
	h.init()
	topics = slices.Compact(slices.Sorted(slices.Values(topics))) // a topic named twice is still one stream of events
	if len(topics) == 0 {
		return nil, errNoTopic
	}
	s = &subscriber{conn: c, topics: topics, queueSize: cmp.Or(max(h.QueueSize, 0), DefaultQueueSize), wake: make(chan struct{}, 1)}
	starting, err := h.register(s)
	if err != nil {
		return nil, err
	}
	for _, t := range starting {
		h.startFeed(t)
	}
	if err := h.catchUp(s); err != nil {
		return s, err
	}
	h.mu.Lock()
	if !s.gone {
		s.live = true
		h.live++
		h.subscribed.Add(1)
	}
	h.mu.Unlock()
	return s, nil
}

// leave undoes join, once s's writer has stopped.
func (h *Hub) leave(s *subscriber) {
	h.mu.Lock()
	h.removeLocked(s)
	h.mu.Unlock()
	s.conn.Close()
	h.active.Done()
}

// register adds s to its topics, from which point every event their feeds
// deliver is queued for it, and returns the feeds it must start. It makes
// no call to the Broker: the Hub's lock is never held across one.
func (h *Hub) register(s *subscriber) ([]*hubTopic, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, ErrHubClosed
	}
	var starting []*hubTopic
	s.base = make([]position, len(s.topics))
	for i, name := range s.topics {
		t := h.topics[name]
		if t == nil {
			t = &hubTopic{name: name, subs: make(map[*subscriber]struct{}), ready: make(chan struct{})}
			h.topics[name] = t
			starting = append(starting, t)
		}
		t.subs[s] = struct{}{}
		s.feeds = append(s.feeds, t)
		if t.fed || isClosed(t.ready) {
			s.base[i] = position{t.cursor, true}
		} // else the feed's start, once known
	}
	h.subs[s] = struct{}{}
	h.active.Add(1)
	return starting, nil
}

// startFeed subscribes the Hub to t's events on the Broker.
func (h *Hub) startFeed(t *hubTopic) {
	ctx, stop := context.WithCancel(context.Background())
	start, err := h.broker.Subscribe(ctx, t.name, func(e Entry) { h.deliver(t, e) })
	h.mu.Lock()
	defer h.mu.Unlock()
	t.start, t.stop, t.err = start, stop, err
	if !t.fed {
		t.cursor = start
	}
	if err != nil || len(t.subs) == 0 {
		// A feed that failed, or that no one waits for any more, stops;
		// the next subscriber of the topic starts a new one.
		stop()
		if h.topics[t.name] == t {
			delete(h.topics, t.name)
		}
	}
	close(t.ready)
}

// catchUp prepares what s receives before its queue: its position, a
// reset, or the events it missed. The Broker is asked without the Hub's
// lock; meanwhile live events queue up, and are then reconciled with the
// replay by id: an event is either replayed or live, never both.
func (h *Hub) catchUp(s *subscriber) error {
	for _, t := range s.feeds {
		select {
		case <-t.ready:
		case <-s.conn.done:
			return h.writeErr(s, nil) // it was closed while a feed was starting
		case <-s.conn.reqDone:
			return h.writeErr(s, nil) // it left, or was closed, while a feed was starting
		}
		if t.err != nil {
			return t.err
		}
	}
	after := s.conn.LastEventID()
	h.mu.Lock()
	for i, t := range s.feeds {
		if !s.base[i].known {
			s.base[i] = position{t.start, true}
		}
	}
	h.mu.Unlock()
	// From here on, s.base is fixed.
	ctx := s.conn.callContext()
	entries, heads, gap, err := h.history(ctx, s, after)
	if err != nil {
		return err
	}
	var reset, pos *PreparedMessage
	if gap != nil || after == "" {
		resume, err := h.newest(ctx, s, heads)
		if err != nil {
			return err
		}
		switch {
		case gap != nil:
			if reset, err = h.reset(s, after, gap, resume); err != nil {
				return err
			}
		case resume != "" && (len(entries) == 0 || entries[len(entries)-1].ID != resume):
			// The position, unless the newest event told it already.
			pos = &PreparedMessage{data: appendPosition(nil, resume)}
		}
	}

	h.mu.Lock()
	defer h.mu.Unlock()
	if s.gone {
		return h.writeErr(s, nil)
	}
	if reset != nil {
		s.backlog = append(s.backlog, reset)
	}
	for _, e := range entries {
		pm, err := NewPreparedMessage(e.Message)
		if err != nil {
			continue // it was valid when published; an odd Broker's fault, not the client's
		}
		s.backlog = append(s.backlog, pm)
	}
	if pos != nil {
		s.backlog = append(s.backlog, pos)
	}
	// Live events queued during the replay; no feed adds any while the
	// lock is held.
	s.qmu.Lock()
	defer s.qmu.Unlock()
	pending := s.q
	for i, name := range s.topics {
		if i >= len(heads) || heads[i] == s.base[i].id {
			continue // the replay ends where the live events begin
		}
		// The head came after the subscriber registered: the live events
		// of the topic up to it are in the replay, or the client had them.
		// Those queued already go; if the head is not among them, the feed
		// lags behind the store and its events up to the head are skipped.
		j := slices.IndexFunc(pending, func(pm *PreparedMessage) bool { return pm.topic == name && pm.id == heads[i] })
		k := 0
		for n, pm := range pending {
			if pm.topic != name || (j >= 0 && n > j) {
				pending[k] = pm
				k++
			}
		}
		clear(pending[k:])
		pending = pending[:k]
		if j < 0 {
			if s.skip == nil {
				s.skip = make(map[string]string)
			}
			s.skip[name] = heads[i]
		}
	}
	s.q = pending
	return nil
}

// newest is where s's live events start once its queue is reconciled
// with heads: the position a new subscriber is told, and the id a reset
// event carries. nil heads means the feeds' own positions, s.base. With
// several topics, whose order only the Broker knows, it asks the Broker.
func (h *Hub) newest(ctx context.Context, s *subscriber, heads []string) (string, error) {
	if heads == nil {
		heads = make([]string, len(s.base))
		for i, b := range s.base {
			heads[i] = b.id
		}
	}
	if len(heads) == 1 {
		return heads[0], nil
	}
	return h.broker.Newest(ctx, s.topics, heads)
}

// ResetData is the data of the reset event, JSON-encoded (see [Hub]).
type ResetData struct {
	Reason      GapReason `json:"reason"`
	LastEventID string    `json:"lastEventId"` // the client's
	Resume      string    `json:"resume"`      // the reset event's id
}

// reset makes the reset event of s for gap, the error of a Replay after
// the id after; the client resumes from resume.
func (h *Hub) reset(s *subscriber, after string, gap error, resume string) (*PreparedMessage, error) {
	d := ResetData{Reason: GapUnknown, LastEventID: after, Resume: resume}
	var g *HistoryGapError
	if errors.As(gap, &g) && g.Reason != "" {
		d.Reason = g.Reason
	}
	data, err := json.Marshal(d)
	if err != nil {
		return nil, err
	}
	return NewPreparedMessage(Message{ID: resume, Type: cmp.Or(h.ResetType, DefaultResetType), Data: data})
}

// write is the subscriber's writer: the backlog, then whatever is queued,
// coalesced into one write per wake-up (of at most maxBatch events each).
func (h *Hub) write(s *subscriber) error {
	if err := h.writeAll(s, s.backlog, false); err != nil {
		return err
	}
	s.backlog = nil
	// Each channel an idle writer waits on holds a runtime record (a
	// sudog, about 100 bytes) for as long as it waits, so it waits on
	// three: the Hub's drain comes through s.wake (Shutdown sends to it),
	// and Close closes every Conn.
	for {
		select {
		case <-s.wake:
			if isClosed(h.drain) { // Shutdown: write what is queued, then leave
				for s.queued() {
					if err := h.writeAll(s, s.take(), true); err != nil {
						return err
					}
				}
				return ErrHubClosed
			}
			if err := h.writeAll(s, s.take(), true); err != nil {
				return err
			}
		case <-s.conn.done:
			return h.writeErr(s, nil)
		case <-s.conn.reqDone: // the client left; the Conn is closed on return
			return h.writeErr(s, nil)
		}
	}
}

// writeAll writes pms, maxBatch events per write; queued tells that pms
// came from s.take, to be given back.
func (h *Hub) writeAll(s *subscriber, pms []*PreparedMessage, queued bool) error {
	var err error
	for i := 0; i < len(pms) && err == nil; i += maxBatch {
		err = s.conn.writePrepared(pms[i:min(i+maxBatch, len(pms))])
	}
	if queued {
		s.done(pms)
	}
	if err != nil {
		return h.writeErr(s, err)
	}
	return nil
}

// writeErr tells why a writer stopped; err is nil when the client left.
func (h *Hub) writeErr(s *subscriber, err error) error {
	switch {
	case s.evicted.Load():
		return ErrEvicted
	case isClosed(h.done):
		return ErrHubClosed
	}
	return err
}

func isClosed(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// Shutdown stops new subscribers and publishes, lets every subscriber's
// queue drain until ctx ends, then closes every stream. It returns
// ctx.Err() when the queues did not drain in time.
func (h *Hub) Shutdown(ctx context.Context) error {
	h.init()
	if !h.stop(h.drain) {
		return nil
	}
	h.mu.Lock()
	for s := range h.subs {
		s.poke() // its writer sees drain closed
	}
	h.mu.Unlock()
	h.logger().Info("sse: hub shutting down", "subscribers", h.Stats().Subscribers)
	drained := make(chan struct{})
	go func() {
		h.active.Wait()
		close(drained)
	}()
	var err error
	select {
	case <-drained:
	case <-ctx.Done():
		err = ctx.Err()
	}
	h.Close() // which waits for the writers as long as it may
	return err
}

// Close closes every stream at once and stops the Hub; it closes the
// Broker when the Hub made it. It waits for the subscribers' writers to
// leave, which they do at once unless a write is stuck where its deadline
// cannot be cut short (see [Upgrader.WriteTimeout]): it then returns
// after the Upgrader's WriteTimeout (DefaultWriteTimeout when it is
// negative), and logs how many were left.
func (h *Hub) Close() error {
	h.init()
	h.stop(h.drain)
	if isClosed(h.done) {
		return nil
	}
	h.mu.Lock()
	select {
	case <-h.done:
	default:
		close(h.done)
	}
	subs := make([]*subscriber, 0, len(h.subs))
	for s := range h.subs {
		subs = append(subs, s)
	}
	h.mu.Unlock()
	for _, s := range subs {
		s.conn.fail(ErrConnectionClosed) // unblocks a writer stuck on a slow client
	}
	left := make(chan struct{})
	go func() {
		h.active.Wait()
		close(left)
	}()
	t := time.NewTimer(closeWait(h.Upgrader.WriteTimeout))
	defer t.Stop()
	select {
	case <-left:
	case <-t.C:
		h.logger().Warn("sse: hub closed with writers still blocked in a write that no deadline can cut short", "subscribers", h.Stats().Subscribers)
	}
	if h.owned {
		return h.broker.Close()
	}
	return nil
}

// stop marks the Hub closed and closes ch once; it reports whether this
// call did.
func (h *Hub) stop(ch chan struct{}) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	if isClosed(ch) {
		return false
	}
	close(ch)
	return true
}
