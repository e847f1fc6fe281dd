package sse

import (
	"cmp"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"time"
)

// ErrStreamingNotSupported is returned by Upgrade when the ResponseWriter,
// and every writer it wraps, cannot flush. It matches http.ErrNotSupported.
var ErrStreamingNotSupported = fmt.Errorf("sse: response writer cannot stream: %w", http.ErrNotSupported)

// Defaults used for the zero values of [Upgrader] fields.
const (
	DefaultHeartbeat    = 15 * time.Second
	DefaultWriteTimeout = 10 * time.Second
)

// Upgrader turns an HTTP request into an event stream. Its zero value is
// ready to use; its fields are options. An Upgrader may be used by many
// goroutines at once but must not be changed while it is in use.
type Upgrader struct {
	// RetryTime, when positive, is sent at the start of every stream as the
	// client's reconnection delay, in whole milliseconds, with RetryJitter
	// added.
	RetryTime time.Duration

	// RetryJitter spreads reconnections: each stream is sent RetryTime
	// plus a random duration of at most RetryJitter, so that the clients a
	// restart drops together do not all come back at the same moment.
	// Browsers have no backoff of their own and wait exactly the time they
	// were sent. Jitter only adds: no client waits less than RetryTime.
	// Zero means RetryTime/2; a negative value sends RetryTime as it is.
	// Without RetryTime nothing is sent, and browsers wait their own
	// default, all alike.
	RetryJitter time.Duration

	// Heartbeat is how long a stream may stay silent before a comment line
	// is sent to keep proxies and load balancers from closing it. Zero means
	// DefaultHeartbeat; a negative value turns heartbeats off. A Hub's
	// detached streams (see Hub.DisableDetach) share one timer per
	// interval, and may stay silent up to an eighth longer.
	Heartbeat time.Duration

	// WriteTimeout bounds each write and flush, so a client that stopped
	// reading cannot hold a writer. A write that times out closes the Conn.
	// Zero means DefaultWriteTimeout; a negative value means no limit.
	// The deadline is renewed only when less than WriteTimeout of it is
	// left, so a write is cut after at least WriteTimeout and at most
	// 1.5 × WriteTimeout. On HTTP/2, where a passing deadline resets the
	// stream even between writes, it is set for each write and cleared
	// after it.
	//
	// Write deadlines are set through [net/http.ResponseController], so
	// they work only when the ResponseWriter, or one it wraps (found
	// through an Unwrap method), has a SetWriteDeadline method. Behind a
	// middleware whose wrapper has neither, WriteTimeout has no effect: a
	// write to a client that stopped reading blocks until its TCP
	// connection fails or http.Server.WriteTimeout, if set, closes it, and
	// Close cannot cut it short: Close and Hub.Close stop waiting for it
	// after WriteTimeout, so that they never hang, and a handler must then
	// not return before its own goroutines' writes have (see
	// [Conn.Close]). Upgrade logs this to Logger, once per Upgrader.
	WriteTimeout time.Duration

	// CheckRequest, when not nil, runs before anything is written. It may
	// add response headers through w.Header(). When it returns an error,
	// Upgrade answers 403 Forbidden with the error's text and returns the
	// error.
	CheckRequest func(w http.ResponseWriter, r *http.Request) error

	// AllowCompression lets a compression middleware encode the stream.
	// By default the Upgrader answers with Content-Encoding: identity
	// (unless a middleware has set a Content-Encoding already), which
	// common compression middlewares take as "already encoded" and pass
	// through untouched: several of them, such as
	// github.com/NYTimes/gziphandler with its defaults, hold back the
	// headers and the first kilobyte or so of a response whatever the
	// handler flushes, so that a stream of small events stalls. Set it
	// only behind a middleware that flushes its compressor on every Flush,
	// such as github.com/klauspost/compress/gzhttp: events then arrive
	// compressed, and still one by one.
	AllowCompression bool

	// Logger receives the warning that write deadlines cannot be set (see
	// WriteTimeout); nil means slog.Default().
	Logger *slog.Logger

	// warned is set, atomically, once the warning is logged. A plain
	// integer rather than an atomic.Bool, whose no-copy marker would make
	// vet flag every copy of an Upgrader literal.
	warned uint32
}

var defaultUpgrader Upgrader

// Upgrade upgrades with the zero Upgrader: see [Upgrader.Upgrade].
func Upgrade(w http.ResponseWriter, r *http.Request) (*Conn, error) {
	return defaultUpgrader.Upgrade(w, r)
}

// Upgrade answers the request with an event stream and returns the Conn to
// write events to. The response headers (200, Content-Type
// text/event-stream, Cache-Control no-cache, X-Accel-Buffering no,
// Content-Encoding identity unless AllowCompression is set, and Connection
// keep-alive on HTTP/1.x) are flushed at once with the retry time,
// or an empty comment when there is none, so that clients and proxies see
// the stream open before the first event.
//
// The Conn must not be used after the handler that called Upgrade returns;
// call [Conn.Close] before returning, so that a heartbeat cannot be writing
// when net/http finishes the response.
// When w cannot stream, Upgrade answers 500 and returns
// [ErrStreamingNotSupported].
func (u *Upgrader) Upgrade(w http.ResponseWriter, r *http.Request) (*Conn, error) {
	flush := flusher(w)
	if flush == nil {
		http.Error(w, "streaming is not supported", http.StatusInternalServerError)
		return nil, ErrStreamingNotSupported
	}
	if u.CheckRequest != nil {
		if err := u.CheckRequest(w, r); err != nil {
			http.Error(w, err.Error(), http.StatusForbidden)
			return nil, err
		}
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	h.Del("Content-Length")
	if _, set := h["Content-Encoding"]; !set && !u.AllowCompression {
		// Compression middlewares skip a response that names its encoding;
		// some would otherwise buffer the stream (see AllowCompression).
		// One that encodes every response, and said so already, is left
		// alone: overriding its header would mislabel its output.
		h.Set("Content-Encoding", "identity")
	}
	if r.ProtoMajor == 1 {
		h.Set("Connection", "keep-alive")
	}
	w.WriteHeader(http.StatusOK)

	// Done is closed when the Conn closes, which the request ending does
	// (see watchRequest): after the closed flag is set, so that Done and
	// IsOpen never disagree.
	c := &Conn{
		w:            w,
		rc:           http.NewResponseController(w),
		flush:        flush,
		done:         make(chan struct{}),
		req:          r.Context(),
		writeTimeout: cmp.Or(u.WriteTimeout, DefaultWriteTimeout),
		lastEventID:  lastEventID(r),
		reqDone:      r.Context().Done(),
		streamTimer:  r.ProtoMajor >= 2,
		chunked:      chunked(r, h),
		epoch:        time.Now(),
	}
	hb := cmp.Or(u.Heartbeat, DefaultHeartbeat)
	c.beats = hb > 0
	if c.beats {
		c.beatEvery = hb
	}
	// Some body bytes go with the headers: proxies such as
	// httputil.ReverseProxy forward the headers only with the first bytes.
	c.mu.Lock()
	c.buf = AppendRetry(c.buf[:0], u.retry())
	if len(c.buf) == 0 {
		c.buf = append(c.buf, heartbeatLine...)
	}
	// net/http writes the response header at this first flush, in a
	// function whose frame alone is about 3 KiB: on the handler's
	// goroutine that would double its stack to 8 KiB for the whole life of
	// the stream, which mostly waits; on a goroutine of its own the deep
	// stack is gone once the header is out.
	// A panic there goes back to the handler's goroutine, where net/http
	// recovers it (http.ErrAbortHandler included).
	type flushed struct {
		err      error
		panicked bool
		p        any
	}
	done := make(chan flushed, 1)
	go func() {
		defer func() {
			if p := recover(); p != nil {
				done <- flushed{panicked: true, p: p}
			}
		}()
		done <- flushed{err: c.sendBytes(c.buf)} // under c.mu, held here
	}()
	f := <-done
	noDeadline := c.noDeadline
	c.mu.Unlock()
	if f.panicked {
		panic(f.p)
	}
	if f.err != nil {
		return nil, f.err
	}
	if noDeadline && atomic.CompareAndSwapUint32(&u.warned, 0, 1) {
		cmp.Or(u.Logger, slog.Default()).Warn("sse: the ResponseWriter cannot set write deadlines, so WriteTimeout has no effect: "+
			"a client that stops reading blocks writes, and Close cannot cut them short; "+
			"give the wrapping ResponseWriter an Unwrap method",
			"writer", fmt.Sprintf("%T", w))
	}
	if c.beats {
		c.mu.Lock() // beat must not run before c.heartbeat is set
		c.heartbeat = time.AfterFunc(hb, func() { c.beat(hb) })
		c.mu.Unlock()
	}
	return c, nil
}

// chunked reports whether net/http frames the response to r, with header
// h, as chunks (see net/http's chunkWriter.writeHeader): a HTTP/1.1
// request other than HEAD whose response sets no identity transfer coding
// (Upgrade removes any length). HTTP/1.0 bodies are unframed, HTTP/2 ones
// in frames of its own.
func chunked(r *http.Request, h http.Header) bool {
	return r.ProtoMajor == 1 && r.ProtoMinor >= 1 && r.Method != http.MethodHead &&
		!strings.EqualFold(h.Get("Transfer-Encoding"), "identity")
}

// flusher finds, as http.ResponseController would, how w or a writer it
// wraps flushes; nil when none can. It is asked before any header is
// written, so that a failure can still be a 500, and its answer is kept
// for every write.
func flusher(w http.ResponseWriter) func() error {
	for {
		switch t := w.(type) {
		case interface{ FlushError() error }:
			return t.FlushError
		case http.Flusher:
			return func() error { t.Flush(); return nil }
		case interface{ Unwrap() http.ResponseWriter }:
			w = t.Unwrap()
		default:
			return nil
		}
	}
}

// lastEventID reads the header, or the query parameter that browsers must
// use on a first connection since EventSource cannot set headers.
func lastEventID(r *http.Request) string {
	if id := r.Header.Get("Last-Event-ID"); id != "" {
		return id
	}
	return r.URL.Query().Get("lastEventId")
}
