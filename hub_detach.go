package sse

import (
	"crypto/tls"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// A detached stream is a Hub subscriber on HTTP/1.1 that has left net/http
// once its response headers were out: the Hub holds its connection, and
// nothing else of the request, so that an idle stream costs its
// subscriber and this struct, and no goroutine. A writer goroutine runs
// only while there is something to send (see kick); the poller notices the
// client leaving (poller_linux.go, poller_other.go), the Hub's heartbeat
// wheel when the stream has been silent (hub_heartbeat.go).
//
// net/http framed the body as chunked before it let go of the connection,
// so every write here is one chunk, and a clean end is the last chunk.
type detached struct {
	h            *Hub
	s            *subscriber
	nc           net.Conn
	raw          net.Conn      // nc, or the connection under TLS: closed without a close_notify that could block
	client       string        // whose stream it counts, for Hub.release
	writeTimeout time.Duration // negative: none
	beats        *wheel        // nil without heartbeats
	slot         int           // in beats, guarded by its mu
	pollID       uint64        // registration in the poller, guarded by its mu; 0 when none
	deadline     int64         // the write deadline set last, as now reads it; the writer's

	lastWrite atomic.Int64 // monotonic nanoseconds (see now) of the last write
	running   atomic.Bool  // a writer goroutine runs
	kicked    atomic.Bool  // something for the writer came since it last looked
	beat      atomic.Bool  // the wheel asks for a heartbeat
	ending    atomic.Bool  // Close or an eviction ends it: only its last chunk is written
	stopped   atomic.Bool  // its client left, or a write failed: nothing more is written
}

// clock is the origin of detached streams' clock readings.
var clock = time.Now()

func now() int64 { return int64(time.Since(clock)) }

// Chunked framing, from net/http's own: the heartbeat is the Conn's
// heartbeatLine in a chunk.
var (
	crlf           = []byte("\r\n")
	lastChunk      = []byte("0\r\n\r\n")
	heartbeatChunk = []byte("2\r\n:\n\r\n")
)

// hijack takes c's connection from net/http, once its headers and first
// bytes are flushed, and lets go of everything else of the request: c is
// closed from then on, and its ResponseWriter no longer used. It fails,
// with c unchanged, on a response that is not chunked (HTTP/2, HTTP/1.0,
// HEAD) and when the ResponseWriter, or those it wraps, cannot hijack
// (http.ErrNotSupported).
func (c *Conn) hijack() (net.Conn, error) {
	if !c.chunked {
		return nil, http.ErrNotSupported
	}
	c.mu.Lock() // no heartbeat writes meanwhile
	defer c.mu.Unlock()
	if !c.IsOpen() {
		return nil, c.closedErr()
	}
	// net/http's Hijack flushes what its chunk writer holds, and the Conn
	// flushed its own buffer after its last write: nothing is lost or
	// written twice. The bufio.ReadWriter it returns is dropped: its
	// reader may hold bytes the client sent after its request, which an
	// event stream does not read.
	nc, _, err := c.rc.Hijack()
	if err != nil {
		return nil, err
	}
	// released first, so that the fail below (and any on another
	// goroutine) leaves the connection's deadlines alone.
	c.rcMu.Lock()
	c.released.Store(true)
	c.w, c.rc, c.flush, c.buf, c.encoders = nil, nil, nil, nil, nil
	c.rcMu.Unlock()
	c.fail(ErrConnectionClosed)
	if c.heartbeat != nil {
		c.heartbeat.Stop() // the Hub's wheel beats for it now
	}
	return nc, nil
}

// detach moves s's stream out of net/http when it can, and reports
// whether it did: from then on the stream is the Hub's, until it ends.
func (h *Hub) detach(s *subscriber, client string) bool {
	if h.DisableDetach {
		return false
	}
	c := s.conn
	nc, err := c.hijack()
	if err != nil {
		return false
	}
	d := &detached{h: h, s: s, nc: nc, raw: nc, client: client, writeTimeout: c.writeTimeout}
	if t, ok := nc.(*tls.Conn); ok {
		d.raw = t.NetConn()
	}
	d.lastWrite.Store(now())
	d.running.Store(true) // the first run is started below, once d is complete
	watch(d)
	h.mu.Lock()
	if c.beatEvery > 0 {
		d.beats = h.wheel(c.beatEvery)
		d.beats.add(d)
	}
	s.det.Store(d) // from here on, poke kicks d
	// The Conn, closed, holds what a detached stream need not: the
	// request's context, the Conn's timer and buffers. Nor does it need
	// the attached writer's wake-up, or, caught up, its base.
	s.conn, s.wake, s.base = nil, nil, nil
	h.mu.Unlock()
	go d.run()
	return true
}

// kick makes sure a writer will look at d: it starts one unless one runs,
// which then looks again before it leaves.
func (d *detached) kick() {
	d.kicked.Store(true)
	if d.running.CompareAndSwap(false, true) {
		go d.run()
	}
}

// stop ends d at once, for a client that left: nothing more is written,
// and the writer ends the stream.
func (d *detached) stop() {
	d.stopped.Store(true)
	d.raw.Close()
	d.kick()
}

// cut ends d soon, for Close and an eviction: a write in progress is cut
// short, and the writer then ends the stream with its last chunk when the
// client takes it at once.
func (d *detached) cut() {
	d.ending.Store(true)
	d.nc.SetWriteDeadline(time.Unix(1, 0))
	d.kick()
}

// run is d's writer. It leaves when nothing is left to send, unless a kick
// came meanwhile: the kick saw it running and started no other.
func (d *detached) run() {
	for {
		d.kicked.Store(false)
		if d.send() {
			d.end()
			return // running stays set: no writer starts again
		}
		d.running.Store(false)
		if !d.kicked.Load() || !d.running.CompareAndSwap(false, true) {
			return
		}
	}
}

// send writes what s has to send, and reports whether the stream has
// ended: stopped, closed, evicted, failed, or drained by Shutdown.
func (d *detached) send() (ended bool) {
	h, s := d.h, d.s
	if d.stopped.Load() {
		return true
	}
	if d.ending.Load() || isClosed(h.done) || s.evicted.Load() {
		d.writeLast(endWait)
		return true
	}
	wrote := false
	if s.backlog != nil {
		if d.writeEvents(s.backlog) != nil {
			return true
		}
		s.backlog, wrote = nil, true
	}
	for {
		pms := h.take(s, s.batch)
		if len(pms) == 0 {
			break
		}
		err := d.writeEvents(pms)
		clear(pms)
		s.batch = nil
		if cap(pms) <= maxKeptBatch {
			s.batch = pms[:0]
		}
		if err != nil {
			return true
		}
		wrote = true
	}
	if isClosed(h.drain) {
		d.writeLast(d.writeTimeout) // Shutdown: all is sent
		return true
	}
	if d.beat.Swap(false) && !wrote {
		ch := chunkPool.Get().(*chunks)
		ch.parts[0] = heartbeatChunk
		err := d.write(ch, ch.parts[:1])
		ch.parts[0] = nil
		chunkPool.Put(ch)
		if err != nil {
			return true
		}
	}
	return false
}

// endWait bounds the last chunk's write when Close or an eviction ends a
// stream: it goes out at once unless the client stopped reading, which
// must not hold Close.
const endWait = 100 * time.Millisecond

// writeLast ends the response with its last chunk, within wait (and the
// write timeout), so that the client sees a clean end and reconnects; it
// reports whether it did.
func (d *detached) writeLast(wait time.Duration) bool {
	if d.writeTimeout > 0 {
		wait = min(wait, d.writeTimeout)
	}
	if wait <= 0 {
		wait = endWait
	}
	if d.stopped.Load() {
		return false
	}
	d.nc.SetWriteDeadline(time.Now().Add(wait))
	if _, err := d.nc.Write(lastChunk); err != nil {
		d.stopped.Store(true)
		return false
	}
	return true
}

// chunks is a writer's scratch for one chunk's parts, pooled: a stream
// keeps none while it is idle.
type chunks struct {
	parts [maxBatch + 2][]byte
	bufs  net.Buffers
	head  [18]byte
	join  []byte // for connections without writev
}

var chunkPool = sync.Pool{New: func() any { return new(chunks) }}

// writeEvents writes pms, one chunk of at most maxBatch events per write.
func (d *detached) writeEvents(pms []*PreparedMessage) error {
	ch := chunkPool.Get().(*chunks)
	defer chunkPool.Put(ch)
	for len(pms) > 0 {
		n := min(len(pms), maxBatch)
		bufs := append(ch.parts[:0], nil)
		size := 0
		for _, pm := range pms[:n] {
			bufs = append(bufs, pm.data)
			size += len(pm.data)
		}
		bufs[0] = append(strconv.AppendUint(ch.head[:0], uint64(size), 16), crlf...)
		bufs = append(bufs, crlf)
		err := d.write(ch, bufs)
		clear(bufs) // the pool must not hold events
		if err != nil {
			return err
		}
		pms = pms[n:]
	}
	return nil
}

// renewDeadline sets the write deadline to 1.5 × the write timeout from
// now when less than the write timeout of it is left, so that it is set
// once per half timeout of writing rather than for every write (as Conn
// does, see sendBytes). A deadline that cut set in the past stays.
func (d *detached) renewDeadline() {
	if d.writeTimeout <= 0 {
		return
	}
	t := now()
	if t+int64(d.writeTimeout) > d.deadline {
		d.deadline = t + int64(d.writeTimeout+d.writeTimeout/2)
		d.nc.SetWriteDeadline(clock.Add(time.Duration(d.deadline)))
	}
}

// write writes one chunk's parts within the write timeout: with one
// writev on TCP and Unix sockets, joined into one write under TLS (a TLS
// record per part would cost more than the copy). A stream that is
// ending (see cut) is not written to: its last chunk is, by writeLast.
func (d *detached) write(ch *chunks, parts [][]byte) error {
	d.renewDeadline()
	if d.ending.Load() || d.stopped.Load() {
		// After the deadline above: a cut that came before it is seen here,
		// one after it has cut the deadline short.
		return ErrConnectionClosed
	}
	var err error
	switch d.nc.(type) {
	default:
		ch.bufs = parts
		_, err = ch.bufs.WriteTo(d.nc)
		ch.bufs = nil
	case *tls.Conn:
		b := ch.join[:0]
		for _, p := range parts {
			b = append(b, p...)
		}
		_, err = d.nc.Write(b)
		if ch.join = b[:0]; cap(b) > maxKeptBuffer {
			ch.join = nil
		}
	}
	if err != nil {
		d.stopped.Store(true)
		d.raw.Close() // a chunk may be cut in the middle: no clean end
		return err
	}
	d.lastWrite.Store(now())
	return nil
}

// end releases what the stream held, on its writer, once: its place in
// the poller and the wheel, its connection, its subscriber and its share
// of the Hub's bounds.
func (d *detached) end() {
	h := d.h
	unwatch(d)
	if d.beats != nil {
		d.beats.remove(d)
	}
	if d.stopped.Swap(true) {
		d.raw.Close()
	} else {
		d.nc.Close() // after the last chunk: TLS may say close_notify
	}
	h.mu.Lock()
	h.removeLocked(d.s)
	h.mu.Unlock()
	h.release(d.client)
	h.active.Done()
}

// stopper returns what ends s's stream now, a write in progress included:
// for Close, which calls it with h.mu held, and the result without.
func (s *subscriber) stopper() func() {
	if d := s.det.Load(); d != nil {
		return d.cut
	}
	c := s.conn
	return func() { c.fail(ErrConnectionClosed) }
}

// watchByRead watches d's connection with a goroutine of its own, blocked
// in a read until the connection fails or closes: where the poller cannot.
// Bytes the client sends are read and dropped.
func watchByRead(d *detached) {
	go func() {
		var b [1]byte
		for {
			if _, err := d.nc.Read(b[:]); err != nil {
				d.stop()
				return
			}
		}
	}()
}
