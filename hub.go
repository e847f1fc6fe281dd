package sse

import (
	"cmp"
	"context"
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
	// ErrEvicted is returned by Serve when the events the subscriber had
	// still to send fell out of the Hub's history: its client could not
	// keep up, and was cut off so that it reconnects and catches up by
	// replay rather than miss events silently.
	ErrEvicted = errors.New("sse: subscriber evicted: it could not keep up")
)

var errNoTopic = errors.New("sse: no topic to serve")

// Defaults of [Hub].
const (
	// DefaultHubHistory is how many events of each topic a Hub keeps for
	// the subscribers that have not sent them yet (Hub.History).
	DefaultHubHistory = 256
	// DefaultHubHistoryBytes bounds the encoded size of those events, per
	// topic (Hub.HistoryBytes).
	DefaultHubHistoryBytes = 64 << 20
	DefaultResetType       = "reset"

	// Deprecated: DefaultQueueSize was the default of QueueSize; the
	// bound is now History, per topic, with DefaultHubHistory.
	DefaultQueueSize = 256
)

// maxBatch bounds how many events one write coalesces.
const maxBatch = 128

// Hub fans events out to subscribers of topics. Each topic's recent events
// are encoded once and kept once, in a history bounded by History events
// and HistoryBytes bytes; a subscriber is a cursor into the histories of
// its topics, and its writer sends everything from its cursor to the
// newest event in one write and one flush, at its own pace. A subscriber
// that lags is not cut off while the events it has still to send are kept;
// when they are not, it is disconnected, so that a client gets every event
// of its topics in order, or is cut off and catches up by replay when it
// reconnects; never a silent hole. A publisher never waits for a
// subscriber, unless Backpressure asks it to.
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
// On HTTP/1.1 a stream leaves net/http once its headers are out, and costs
// no goroutine while it is idle (see DisableDetach, which also says what
// http.Server.Shutdown and middlewares no longer see of it).
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
	// History is how many of each topic's events the Hub keeps for its
	// subscribers: a subscriber is evicted when an event it has not sent
	// would be dropped to stay within it. 0 means QueueSize when that is
	// set, else DefaultHubHistory.
	History int
	// HistoryBytes bounds the encoded size of the events kept per topic
	// in the same way; the newest event is kept whatever its size. 0 means
	// DefaultHubHistoryBytes.
	HistoryBytes int
	// Backpressure, when true, makes Publish wait, until its ctx ends,
	// for room in the topic's history behind the slowest subscriber of
	// this Hub instead of evicting it: for pipelines that would rather
	// slow the publisher down. A Publish whose ctx ends first publishes
	// nothing and returns ctx.Err(). Events that no Publish of this Hub
	// waited for (another node's, or one that a Broker delivers after its
	// Publish returned) may then take a history up to twice its bounds
	// before a subscriber is evicted. A frozen client is still cut off by
	// its write deadline (Upgrader.WriteTimeout), and its room is made.
	Backpressure bool
	// Deprecated: QueueSize is the History of a Hub that sets none. The
	// events a subscriber waits for are kept once per topic now, not per
	// subscriber.
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

	// DisableDetach keeps every stream on its handler's goroutine. By
	// default a stream on HTTP/1.1 leaves net/http once its headers are
	// out (http.ResponseController.Hijack): the Hub then holds its
	// connection and none of net/http's buffers, and no goroutine while it
	// is idle; a writer runs only while there is something to send, one
	// poller notices clients that leave, one timer per heartbeat interval
	// sends the heartbeats. An idle stream costs about 2 KB instead of 25.
	// Streams that cannot be hijacked (HTTP/2, a ResponseWriter wrapper
	// without Hijack or Unwrap) keep the handler's goroutine either way.
	//
	// A detached stream is no longer the http.Server's: Server.Shutdown
	// does not wait for it and Server.Close does not close it, so call
	// Hub.Shutdown (or Close) as well, for instance from
	// Server.RegisterOnShutdown. A middleware sees the handler return once
	// the headers and first bytes are out: one that counts bytes or logs a
	// response's duration sees only those. So does a handler around
	// ServeHTTP or Serve: one that needs to know when a stream ends, to
	// track who is connected for instance, sets DisableDetach. On a TCP connection the Hub sets
	// TCP_USER_TIMEOUT (Linux) to the write timeout, so that a client gone
	// without closing its connection is noticed once a heartbeat stays
	// unacknowledged that long.
	DisableDetach bool

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
	drain  chan struct{} // closed by Shutdown: writers send what is pending and leave
	done   chan struct{} // closed by Close: writers leave now
	active sync.WaitGroup

	mu     sync.Mutex // guards the fields below
	topics map[string]*hubTopic
	subs   map[*subscriber]struct{}
	live   int // subscribers caught up
	closed bool
	wheels map[time.Duration]*wheel // the detached streams' heartbeats, by interval

	seq                                       atomic.Uint64 // stamp of the newest event in a ring, written under mu
	subscribed, published, delivered, evicted atomic.Int64
	limits                                    hubLimits
}

// A subscriber's fields are guarded by Hub.mu, except evicted and det,
// next[i], guarded by feeds[i].mu, and backlog and batch, which its writer
// owns. conn is nil once the stream is detached.
type subscriber struct {
	conn    *Conn
	topics  []string
	feeds   []*hubTopic        // feeds[i] serves topics[i]
	next    []uint64           // next[i]: ring position in feeds[i] of the next event to send
	base    []position         // base[i]: topics[i]'s position before next[i] at registration
	backlog []*PreparedMessage // position, reset or replay: written before the live events
	batch   []*PreparedMessage // the writer's, kept between takes while small
	skip    map[string]string  // topic → id: live events up to it came by replay
	gone    bool               // removed from the Hub
	live    bool               // caught up: every later event reaches it; counted in Stats
	evicted atomic.Bool
	wake    chan struct{}            // one token: something came after its cursors since the writer last took
	det     atomic.Pointer[detached] // set once its stream is detached: its writer runs on demand
}

// position is where a topic stood; known is false until it is set.
type position struct {
	id    string
	known bool
}

// poke wakes s's writer: it starts one for a detached stream.
func (s *subscriber) poke() {
	if d := s.det.Load(); d != nil {
		d.kick()
		return
	}
	select {
	case s.wake <- struct{}{}:
	default: // the writer has a token already, and will see what is new
	}
}

// HubStats are counters for metrics.
type HubStats struct {
	Subscribers   int   // connected now, and receiving every event of their topics
	Topics        int   // with at least one subscriber now
	Subscriptions int64 // subscribers that reached that point since the Hub started
	Published     int64 // events published through this Hub
	Delivered     int64 // events put within reach of a subscriber's cursor (each subscriber counts)
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

func (h *Hub) ringSize() int {
	return cmp.Or(max(h.History, 0), max(h.QueueSize, 0), DefaultHubHistory)
}

func (h *Hub) ringBytes() int {
	return cmp.Or(max(h.HistoryBytes, 0), DefaultHubHistoryBytes)
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
// never waits for a subscriber, unless the Hub's Backpressure is set: it
// then waits for room behind the slowest subscriber of topic, and returns
// ctx.Err(), publishing nothing, when ctx ends first. An invalid field returns an error wrapping
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
	if h.Backpressure {
		t, err := h.waitRoom(ctx, topic, len(m.Data))
		if err != nil {
			return "", err
		}
		if t != nil {
			defer t.unreserve()
		}
	}
	id, err := h.broker.Publish(ctx, topic, m)
	if err == nil {
		h.published.Add(1)
	}
	return id, err
}

func (h *Hub) evictLocked(s *subscriber) {
	s.evicted.Store(true)
	h.removeLocked(s)
	h.evicted.Add(1)
	h.logger().Warn("sse: subscriber evicted: the events it had still to send fell out of the hub's history", "topics", s.topics, "history", h.ringSize())
	if d := s.det.Load(); d != nil {
		d.cut() // its writer ends the stream
		return
	}
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
		t.mu.Lock()
		delete(t.subs, s)
		t.makeRoom() // a publisher may have waited for s
		t.mu.Unlock()
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
	c, err := h.Upgrader.Upgrade(w, r)
	if err != nil {
		h.release(client)
		return // Upgrade has answered
	}
	if detached, _ := h.serve(c, topics, client); !detached {
		h.release(client)
	}
}

// Serve subscribes c to topics and writes their events to it until the
// client goes away (it returns nil), the subscriber is evicted
// ([ErrEvicted]), the Hub closes ([ErrHubClosed]), or a write fails. It
// runs on the caller's goroutine, typically the handler that upgraded c
// after authenticating the request, and closes c before it returns.
// A stream on HTTP/1.1 is detached, as in ServeHTTP, unless DisableDetach
// is set: Serve then returns nil as soon as the subscriber has caught up,
// the Hub writes to the stream from then on, and the handler must not use
// c any more, only return. Events
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
	detached, err := h.serve(c, topics, "")
	if !detached {
		h.release("")
	}
	return err
}

// serve is Serve for ServeHTTP too, which saves a frame: the goroutine of
// an idle subscriber waits in write's select with serve beneath it, and
// net/http's frames beneath that. That stack stays at 4 KiB only while its
// deepest point, a write that goes down to the socket through net/http's
// chunked writer and its fmt.Fprintf, fits in it: past that it doubles to
// 8 KiB for the life of the connection, and an idle connection costs 4 KiB
// more. So the work is in join and write, and the path from serve down to
// Conn.sendBytes is kept to a few small frames.
//
// It reports whether the stream was detached (see hub_detach.go): it then
// returns at once, and the stream's end releases client's share of the
// bounds.
func (h *Hub) serve(c *Conn, topics []string, client string) (detached bool, err error) {
	s, err := h.join(c, topics)
	if s == nil {
		c.Close()
		return false, err
	}
	if err == nil && h.detach(s, client) {
		return true, nil
	}
	defer h.leave(s)
	if err != nil {
		return false, err
	}
	return false, h.write(s)
}

// join registers a subscriber for c and catches it up; s is nil when it
// could not register.
func (h *Hub) join(c *Conn, topics []string) (s *subscriber, err error) {
	h.init()
	topics = slices.Compact(slices.Sorted(slices.Values(topics))) // a topic named twice is still one stream of events
	if len(topics) == 0 {
		return nil, errNoTopic
	}
	s = &subscriber{conn: c, topics: topics, wake: make(chan struct{}, 1)}
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
// deliver comes within reach of its cursors, and returns the feeds it must start. It makes
// no call to the Broker: the Hub's lock is never held across one.
func (h *Hub) register(s *subscriber) ([]*hubTopic, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, ErrHubClosed
	}
	var starting []*hubTopic
	s.base = make([]position, len(s.topics))
	s.next = make([]uint64, len(s.topics))
	for i, name := range s.topics {
		t := h.topics[name]
		if t == nil {
			t = &hubTopic{name: name, subs: make(map[*subscriber]int), ready: make(chan struct{})}
			h.topics[name] = t
			starting = append(starting, t)
		}
		t.mu.Lock()
		t.subs[s] = i
		s.next[i] = t.ring.end
		t.mu.Unlock()
		s.feeds = append(s.feeds, t)
		if t.fed || isClosed(t.ready) {
			s.base[i] = position{t.cursor, true}
		} // else the feed's start, once known
	}
	h.subs[s] = struct{}{}
	h.active.Add(1)
	return starting, nil
}
