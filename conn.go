package sse

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// ErrConnectionClosed is returned (possibly wrapping the cause) by writes on
// a Conn that was closed, whose client went away, or whose last write failed.
var ErrConnectionClosed = errors.New("sse: connection closed")

// Conn is the server side of one event stream, made by [Upgrader.Upgrade].
//
// All methods are safe for concurrent use: a heartbeat, a publisher and a
// goroutine that calls Close may share a Conn. Writes are serialised and
// each is flushed before it returns. A write that fails closes the Conn.
// The handler that made it must Close it before returning (see the
// package's Concurrency section).
type Conn struct {
	// The ResponseWriter (w, rc, flush) is used under one rule: by a
	// holder of mu (writes, flushes and their deadlines), or of rcMu
	// (shut's past deadline, and Close's), and only while the Conn is
	// ours: no Close has returned (released) and, from a goroutine other
	// than the handler's, the request has not ended (requestEnded).
	w            http.ResponseWriter
	rc           *http.ResponseController
	flush        func() error    // found once: ResponseController.Flush looks for it on every call
	done         chan struct{}   // closed when the Conn closes
	req          context.Context // the request's: Done watches it, Broker.Replay gets its values
	writeTimeout time.Duration
	lastEventID  string
	reqDone      <-chan struct{} // the request's context
	epoch        time.Time       // the clock readings below are durations since epoch

	heartbeat *time.Timer   // runs beat; nil without heartbeats
	beatEvery time.Duration // its interval, for a Hub that detaches the stream
	chunked   bool          // net/http frames the body as chunks: a Hub may detach it

	closed   atomic.Bool
	watching atomic.Bool           // the request's end closes the Conn through context.AfterFunc
	cutShort atomic.Bool           // shut set a past write deadline
	released atomic.Bool           // a Close has returned: the ResponseWriter is no longer ours
	rcMu     sync.Mutex            // orders shut's past deadline before Close's return
	cause    atomic.Pointer[error] // why the Conn closed; net/http may cancel ctx first, without one

	mu          sync.Mutex // serialises writes and guards the fields below
	buf         []byte
	beats       bool           // heartbeats are on: writes record lastWrite
	lastWrite   time.Duration  // since epoch
	deadline    time.Duration  // since epoch: the write deadline set last; 0 before the first
	noDeadline  bool           // the ResponseWriter cannot set write deadlines
	streamTimer bool           // HTTP/2: a write deadline resets the stream when it passes, written to or not
	encoders    *encoderCaches // made by the first JSON or XML write
}

// LastEventID returns the id the client asked to resume after: the
// Last-Event-ID header, or the lastEventId query parameter when the header
// is absent. It is empty on a first connection.
func (c *Conn) LastEventID() string { return c.lastEventID }

// Done returns a channel that is closed when the client goes away, the
// request ends, a write fails, or Close is called.
func (c *Conn) Done() <-chan struct{} {
	c.watchRequest()
	return c.done
}

// watchRequest makes the request's end close the Conn, and so Done. It is
// done on demand, not in Upgrade: a callback on the request's context costs
// a few hundred bytes per connection (the parent context's map of children
// among them), and the Hub, which waits on the request's Done channel
// itself, does not need it. Without it nothing is lost: IsOpen, and so
// every write, checks the request's end.
func (c *Conn) watchRequest() {
	if !c.watching.Load() && c.watching.CompareAndSwap(false, true) {
		context.AfterFunc(c.req, c.shut)
	}
}

// callContext is a context for calls made on behalf of c, such as
// Broker.Replay: it has the request's values and ends when c closes or the
// request ends, without a context of its own per Conn.
func (c *Conn) callContext() context.Context {
	c.watchRequest()
	return connContext{c.req, c}
}

type connContext struct {
	context.Context // the request's, for its values and deadline
	c               *Conn
}

func (x connContext) Done() <-chan struct{} { return x.c.done }

func (x connContext) Err() error {
	select {
	case <-x.c.done:
		return context.Canceled
	default:
		return nil
	}
}

// IsOpen reports whether writes can still succeed.
func (c *Conn) IsOpen() bool {
	if c.closed.Load() {
		return false
	}
	// The request's end is read here, not only through the callback that
	// closes the Conn: that one runs later, and a heartbeat must not write
	// once net/http is finishing the response.
	select {
	case <-c.reqDone:
		return false
	default:
		return true
	}
}

// Close ends the stream from any goroutine: a write in progress is
// unblocked, later writes return ErrConnectionClosed, and Done is closed.
// When Close returns, the heartbeat has stopped and no write is in
// progress (but see below), so the handler may return; once one Close has
// returned, no method of c starts using the ResponseWriter again. The handler that upgraded the
// request must call (or defer) Close before it returns: see the package's
// Concurrency section. The HTTP response ends when the handler returns.
//
// Close waits for a write in progress to end, which takes no time when its
// deadline can be cut short. When it cannot (see [Upgrader.WriteTimeout]),
// Close gives up waiting after WriteTimeout (DefaultWriteTimeout when
// WriteTimeout is negative) and returns anyway, so that it never hangs. The
// write, stuck on a client that stopped reading, is then still inside the
// ResponseWriter, until the client's TCP connection fails or
// http.Server.WriteTimeout, if set, closes it: a handler whose Conn is
// written to from other goroutines must not return before they have. The
// Hub's writer runs on the handler's own goroutine, so [Hub.Serve] is safe.
func (c *Conn) Close() {
	c.fail(ErrConnectionClosed)
	if c.heartbeat != nil {
		c.heartbeat.Stop() // a beat already running ends at the lock below
	}
	locked := c.lockWithin(closeWait(c.writeTimeout))
	if locked {
		defer c.mu.Unlock()
	}
	// A shut on another goroutine may have found a write in progress and
	// not yet set its past deadline: it must do so before Close returns,
	// after which the handler may return and the ResponseWriter be gone.
	c.rcMu.Lock()
	defer c.rcMu.Unlock()
	if c.released.Swap(true) {
		return // an earlier Close let go of the ResponseWriter, which may be gone
	}
	if locked && c.cutShort.Load() && !c.requestEnded() {
		// The past deadline would also fail net/http's end of the
		// response; give it the time any write gets.
		c.setDeadlineAside(time.Now().Add(max(c.writeTimeout, time.Second)))
	}
}

// closeWait is how long Close, and Hub.Close, wait for a write in
// progress, given the Upgrader's WriteTimeout.
func closeWait(writeTimeout time.Duration) time.Duration {
	if writeTimeout > 0 {
		return writeTimeout
	}
	return DefaultWriteTimeout
}

// lockWithin takes c.mu, waiting at most d, and reports whether it did.
// A write holds c.mu for as long as it blocks, which, without a write
// deadline, can be forever.
func (c *Conn) lockWithin(d time.Duration) bool {
	if c.mu.TryLock() {
		return true
	}
	handoff, abandoned := make(chan struct{}), make(chan struct{})
	go func() {
		c.mu.Lock()
		select {
		case handoff <- struct{}{}: // the caller holds c.mu now
		case <-abandoned:
			c.mu.Unlock()
		}
	}()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-handoff:
		return true
	case <-t.C:
		close(abandoned)
		return false
	}
}

func (c *Conn) fail(cause error) {
	c.cause.CompareAndSwap(nil, &cause)
	c.shut()
}

// shut closes the Conn without giving a cause: when the request ends, a
// write that failed just before knows better why.
func (c *Conn) shut() {
	if c.closed.Swap(true) {
		return
	}
	close(c.done)
	// A held c.mu means that a write may be in progress (every write holds
	// it): a deadline in the past makes a blocked Write return at once. A
	// write that takes c.mu after this sees closed, and does not start.
	// A flag set around each write would tell the same, at the price of two
	// atomic stores per write.
	if c.mu.TryLock() {
		c.mu.Unlock()
		return
	}
	c.rcMu.Lock()
	defer c.rcMu.Unlock()
	if c.released.Load() || c.requestEnded() {
		// Close returned meanwhile, or the handler may have: the
		// ResponseWriter is not ours. A write on a request that ended
		// fails by itself: net/http closes its connection or stream.
		return
	}
	if c.setDeadlineAside(time.Unix(1, 0)) {
		c.cutShort.Store(true)
	}
}

// requestEnded reports whether net/http has ended the request, which it
// does when the client goes away and when the handler returns, before it
// finishes the response.
func (c *Conn) requestEnded() bool {
	select {
	case <-c.reqDone:
		return true
	default:
		return false
	}
}

// setDeadlineAside sets the write deadline from a goroutine that may not
// be the handler's, and reports whether it was set. The caller holds rcMu
// and has checked that the request has not ended; the handler may still
// return meanwhile, without Close, and net/http then panics on its
// ResponseWriter (on HTTP/2, a nil dereference): recovered here, so that
// a Close on another goroutine cannot bring the server down.
func (c *Conn) setDeadlineAside(t time.Time) (ok bool) {
	defer func() {
		if p := recover(); p != nil {
			if !c.requestEnded() {
				panic(p) // not net/http's "after the handler finished"
			}
			ok = false
		}
	}()
	err := c.rc.SetWriteDeadline(t)
	c.syncWithRequestEnd()
	return err == nil
}

// syncWithRequestEnd orders the ResponseWriter calls made so far on this
// goroutine before net/http's end of the request, unless the request has
// ended meanwhile, which it reports. net/http cancels the request's
// context before it finishes the response, and cancelling takes the
// context's lock; so does adding a child, here. Without it, a goroutine
// other than the handler's, such as the heartbeat's, would have nothing to
// order its last write before the handler's return, when the handler
// returns without Close (the race detector would tell).
func (c *Conn) syncWithRequestEnd() (ended bool) {
	ctx, cancel := context.WithCancel(c.req)
	ended = ctx.Err() != nil
	cancel()
	return ended
}

// Write sends data as an event of type "message".
func (c *Conn) Write(data []byte) error {
	return c.WriteMessage(Message{Data: data})
}

// WriteString sends data as an event of type "message".
func (c *Conn) WriteString(data string) error {
	return c.WriteMessage(Message{Data: bytesOf(data)})
}

// WriteEvent sends data as an event of type typ.
func (c *Conn) WriteEvent(typ string, data []byte) error {
	return c.WriteMessage(Message{Type: typ, Data: data})
}

// WriteEventWithID sends data as an event of type typ with the given id.
func (c *Conn) WriteEventWithID(id, typ string, data []byte) error {
	return c.WriteMessage(Message{ID: id, Type: typ, Data: data})
}

// WriteStringEvent sends data as an event of type typ.
func (c *Conn) WriteStringEvent(typ, data string) error {
	return c.WriteMessage(Message{Type: typ, Data: bytesOf(data)})
}

// WriteMessage sends one event with all of its fields. An invalid field
// returns an error wrapping ErrInvalidField and writes nothing.
func (c *Conn) WriteMessage(m Message) error {
	return c.write(func(dst []byte) ([]byte, error) { return m.AppendTo(dst) })
}

// WriteComment sends a comment line, which clients ignore. A text with CR
// or LF returns an error wrapping ErrInvalidField and writes nothing.
func (c *Conn) WriteComment(text string) error {
	return c.write(func(dst []byte) ([]byte, error) { return AppendComment(dst, text) })
}

// WriteRetry tells the client to wait d before reconnecting, in whole
// milliseconds rounded up. A d of zero or less writes nothing.
func (c *Conn) WriteRetry(d time.Duration) error {
	if d <= 0 {
		return nil
	}
	return c.write(func(dst []byte) ([]byte, error) { return AppendRetry(dst, d), nil })
}

// WritePrepared sends messages encoded once by [NewPreparedMessage], with
// one flush for all of them.
func (c *Conn) WritePrepared(pms ...*PreparedMessage) error {
	return c.writePrepared(pms)
}

// writePrepared is WritePrepared without the variadic call, for the Hub's
// writer: each frame on its path deepens the stack that an idle subscriber
// keeps (see Hub.Serve).
func (c *Conn) writePrepared(pms []*PreparedMessage) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.IsOpen() {
		return c.closedErr()
	}
	if len(pms) == 1 {
		return c.sendBytes(pms[0].data) // the common case needs no copy
	}
	// A batch is joined in a pooled buffer, and written in parts when it
	// would outgrow it: joining it whole would allocate a buffer for every
	// large batch, and a buffer of the Conn's own would stay with an idle
	// Hub stream (16 KiB of each idle HTTP/2 stream, measured).
	now, err := c.arm()
	if err != nil {
		return err
	}
	bp := batchPool.Get().(*[]byte)
	b := (*bp)[:0]
	for _, pm := range pms {
		if c.released.Load() { // see flushAfter
			err = ErrConnectionClosed
			break
		}
		if len(b) > 0 && len(b)+len(pm.data) > maxKeptBuffer {
			if _, err = c.w.Write(b); err != nil {
				break
			}
			b = b[:0]
		}
		if len(pm.data) > maxKeptBuffer {
			if _, err = c.w.Write(pm.data); err != nil {
				break
			}
			continue
		}
		b = append(b, pm.data...)
	}
	if err == nil && len(b) > 0 {
		_, err = c.w.Write(b)
	}
	*bp = b[:0]
	batchPool.Put(bp)
	return c.flushAfter(now, err)
}

// batchPool holds the buffers that writePrepared joins batches in, each
// of maxKeptBuffer bytes: a batch fills one, and is written, before it
// would pass it.
var batchPool = sync.Pool{New: func() any {
	b := make([]byte, 0, maxKeptBuffer)
	return &b
}}

// PreparedMessage is a Message encoded once, to be sent to many Conns with
// [Conn.WritePrepared] without encoding it again. It is immutable and safe
// for concurrent use.
type PreparedMessage struct {
	data      []byte
	id, topic string // where a Hub got it from, to tell replayed from live
	seq       uint64 // the Hub's stamp, to merge topics in publish order
}

// NewPreparedMessage encodes m. An invalid field returns an error wrapping
// ErrInvalidField.
func NewPreparedMessage(m Message) (*PreparedMessage, error) {
	data, err := m.AppendTo(nil)
	if err != nil {
		return nil, err
	}
	return &PreparedMessage{data: data}, nil
}

func (c *Conn) closedErr() error {
	if p := c.cause.Load(); p != nil && *p != ErrConnectionClosed {
		return fmt.Errorf("%w: %w", ErrConnectionClosed, *p)
	}
	return ErrConnectionClosed
}

// write encodes into the Conn's buffer and sends it: the path of every
// write method, so that all of them check, encode and flush alike.
func (c *Conn) write(encode func(dst []byte) ([]byte, error)) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.IsOpen() {
		return c.closedErr()
	}
	buf, err := encode(c.buf[:0])
	if err != nil {
		return err
	}
	c.buf = buf
	err = c.sendBytes(buf)
	c.dropLargeBuffer()
	return err
}

// dropLargeBuffer lets go of a write buffer over maxKeptBuffer. A large
// event is rare: a Conn that kept its buffer would hold its largest write
// for as long as it lives, and a server of ten thousand streams that many
// times over.
func (c *Conn) dropLargeBuffer() {
	if cap(c.buf) > maxKeptBuffer {
		c.buf = nil
	}
}

// maxKeptBuffer is the largest write buffer a Conn keeps for its next
// write: events up to it are encoded without allocating.
const maxKeptBuffer = 16 << 10

// writeEncoded sends v, encoded in format f by the Conn's cached encoder,
// as an event; an encoding error returns before anything is written.
func (c *Conn) writeEncoded(f *format, id, typ string, v any) error {
	return c.write(func(dst []byte) ([]byte, error) {
		if c.encoders == nil {
			c.encoders = new(encoderCaches)
		}
		data, err := c.encoders.of(f).encode(f, v)
		if err != nil {
			return dst, err
		}
		return appendEvent(dst, id, typ, data, 0, "")
	})
}

// sendBytes writes b and flushes; the caller holds c.mu. An empty b only
// flushes, which sends the response headers.
//
// The clock is read only when a heartbeat or a write deadline needs it, and
// the write deadline is moved only when less than writeTimeout of it is
// left: it is then set to 1.5 × writeTimeout from now. So every write still
// gets at least writeTimeout, and at most half as long again, while setting
// a deadline, which costs more than the write itself on a ResponseWriter
// that buffers (net/http reads the clock again and resets a runtime timer;
// HTTP/2 goes through its connection's goroutine), happens at most once per
// writeTimeout/2 of writing instead of on every write. HTTP/2 is the
// exception (see streamTimer): there the deadline lasts one write.
func (c *Conn) sendBytes(b []byte) error {
	now, err := c.arm()
	if err != nil {
		return err
	}
	if len(b) > 0 {
		_, err = c.w.Write(b)
	}
	return c.flushAfter(now, err)
}

// arm renews the write deadline when it is near, before a write, and
// returns the clock reading for flushAfter.
func (c *Conn) arm() (now time.Duration, err error) {
	deadlines := c.writeTimeout > 0 && !c.noDeadline
	if c.beats || deadlines {
		now = time.Since(c.epoch) // one monotonic clock read
	}
	if deadlines && addSat(now, c.writeTimeout) > c.deadline {
		d := addSat(now, addSat(c.writeTimeout, c.writeTimeout/2))
		if c.streamTimer {
			d = addSat(now, c.writeTimeout) // cleared again by flushAfter
		}
		if err := c.rc.SetWriteDeadline(c.epoch.Add(d)); errors.Is(err, http.ErrNotSupported) {
			c.noDeadline = true // asking again costs an allocation per write
		} else if err != nil {
			c.fail(err)
			return 0, c.closedErr()
		} else {
			c.deadline = d
		}
	}
	if c.closed.Load() { // Close may have run before our deadline replaced its own
		return 0, c.closedErr()
	}
	return now, nil
}

// flushAfter flushes what was written since arm, unless writing it failed
// with err, and fails the Conn on an error.
func (c *Conn) flushAfter(now time.Duration, err error) error {
	if err == nil && c.released.Load() {
		// A Close stopped waiting for this write (see lockWithin) and
		// returned: the handler, and its ResponseWriter, may be gone.
		err = ErrConnectionClosed
	}
	if err == nil {
		err = c.flush()
	}
	if err != nil {
		c.fail(err)
		return c.closedErr()
	}
	if c.streamTimer && c.deadline != 0 {
		// On HTTP/2 the deadline is a timer that resets the stream when it
		// fires, even while nothing is being written: left in place, it
		// would end a stream that is idle for longer than writeTimeout.
		if err := c.rc.SetWriteDeadline(time.Time{}); err != nil {
			c.fail(err)
			return c.closedErr()
		}
		c.deadline = 0
	}
	c.lastWrite = now
	return nil
}

// addSat adds two non-negative durations, saturating instead of
// overflowing, so that a huge WriteTimeout is a far deadline and not one in
// the past.
func addSat(a, b time.Duration) time.Duration {
	if a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}

var heartbeatLine = []byte(":\n")

// beat sends a comment when the stream has been silent for d, and sets
// the timer for the next check; it stops once the Conn is closed.
func (c *Conn) beat(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.IsOpen() {
		return
	}
	next := d - (time.Since(c.epoch) - c.lastWrite)
	if next <= 0 {
		if !c.sendHeartbeat() {
			return
		}
		next = d
	}
	c.heartbeat.Reset(next)
}

// sendHeartbeat writes a heartbeat on the timer's goroutine, which, unlike
// the handler's, may still run when a handler that did not call Close
// returns. IsOpen, checked under c.mu just before, tells that the request
// had not ended; syncWithRequestEnd orders the writes before the request's
// end. What is left is a handler returning during the write: net/http may
// then panic on its ResponseWriter, which is recovered here so that the
// process does not die on a goroutine of ours.
func (c *Conn) sendHeartbeat() (ok bool) {
	defer func() {
		if p := recover(); p != nil {
			if !c.requestEnded() {
				panic(p) // not net/http's "after the handler finished"
			}
			c.fail(ErrConnectionClosed)
			ok = false
		}
	}()
	err := c.sendBytes(heartbeatLine)
	if c.syncWithRequestEnd() {
		c.shut()
		return false
	}
	return err == nil
}
