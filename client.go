package sse

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"log/slog"
	"math/rand/v2"
	"mime"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"
)

// ErrContentType is returned (wrapped, with the type received) when a
// response has status 200 but is not a text/event-stream: the URL does not
// serve an event stream, and a client does not reconnect to it.
var ErrContentType = errors.New("sse: response is not text/event-stream")

// ErrReadTimeout is the error (wrapped) passed to [Client.OnError] when a
// connection received no bytes for [Client.ReadTimeout]: the Client drops it
// and reconnects.
var ErrReadTimeout = errors.New("sse: read timeout")

// StatusError is returned when the server answers with a status other than
// 200 OK: per the standard, a client fails the connection and does not
// reconnect ([Client.RetryStatus] can make exceptions). A 3xx that the HTTP
// client did not follow, such as a redirect without a Location, also ends
// up here.
type StatusError struct {
	StatusCode int    // e.g. 503
	Status     string // e.g. "503 Service Unavailable", as the server sent it
}

func (e *StatusError) Error() string {
	status := e.Status
	if status == "" {
		status = strconv.Itoa(e.StatusCode) + " " + http.StatusText(e.StatusCode)
	}
	return "sse: unexpected status " + status
}

const (
	defaultReconnectDelay    = 3 * time.Second // what browsers use
	defaultMaxReconnectDelay = 30 * time.Second
	// minBackoff keeps a reconnection time of 0 from turning into a hot
	// loop against a server that keeps failing.
	minBackoff = 100 * time.Millisecond
	// stableAfter is how long a connection that dispatched no event must
	// have stayed open to count as working: a stream of keep-alive comments
	// is healthy, a server that accepts and hangs up at once is not.
	stableAfter = 5 * time.Second
)

// Client reads an event stream and reconnects to it, the way a browser's
// EventSource does, until its context ends.
//
// When a stream ends or breaks (end of stream, network error, read timeout)
// the Client waits the reconnection time and connects again, sending the
// last event ID it saw as Last-Event-ID. The reconnection time is
// ReconnectDelay until the server sends a retry field; the server's value
// then wins and is kept across connections. The Client never waits less
// than the reconnection time, as the standard asks (MaxReconnectDelay caps
// it). While attempts keep failing the wait doubles up to MaxReconnectDelay,
// and a random jitter of up to half of it is added (near the cap, the wait
// is drawn from the cap's last third instead), so that clients cut off
// together do not return together; a connection that works resets it. An
// event cut off by a break is discarded, as the standard says.
//
// The Client stops without error on HTTP 204 No Content. It stops with an
// error on any other status but 200 (a [*StatusError]; RetryStatus may
// declare some statuses worth retrying), on a response that is not
// text/event-stream ([ErrContentType]) and on an event larger than
// MaxEventSize ([ErrEventTooLarge]: reconnecting would meet the same event
// again). Redirects are followed by the HTTP client.
//
// The zero value is ready to use. The fields must not be changed while a
// Notify or Events call is running; apart from that a Client may run any
// number of streams at once, each with its own last event ID and
// reconnection time. The hooks (Prepare and the On functions) run on the
// goroutine that reads the stream (the caller's, for Events), so a hook that
// blocks stalls the stream, and the hooks of a Client running several
// streams may be called concurrently.
type Client struct {
	// HTTPClient sends the requests; nil means [DefaultClient]. Its Timeout,
	// if any, cuts off every stream after that time: use ReadTimeout.
	HTTPClient *http.Client
	// Method is the request method; "" means GET.
	Method string
	// Body, when not nil, is the request body, sent again on every
	// connection and on redirects that keep the method.
	Body []byte
	// Header holds extra request headers. Accept: text/event-stream and
	// Cache-Control: no-cache are sent unless Header sets them. A
	// Last-Event-ID in Header is ignored: use LastEventID.
	Header http.Header
	// Prepare, when not nil, is called before every connection attempt with
	// the request the Client built from Method, Body and Header, and may
	// change anything in it: set a bearer token fetched afresh for each
	// attempt, sign it, change the URL or the method, or replace the body
	// (set Body, GetBody and ContentLength together, as http.NewRequest
	// does, so that a redirect can send it again). The request's context is
	// the attempt's, so a token fetch in Prepare should use it. Accept and
	// Cache-Control are added after Prepare unless it set them. Last-Event-ID
	// belongs to the Client: it is set before Prepare, which may read it (to
	// put it in the URL or the body for servers that want it there), and set
	// again after, so that Prepare can neither lose nor change it. Events
	// carry the URI given to Notify or Events whatever URL Prepare sets.
	//
	// An error from Prepare stops the Client, which returns it wrapped (it
	// is not retried, and not passed to OnError): a Prepare that can recover,
	// such as a token fetch worth trying again, retries inside itself.
	Prepare func(req *http.Request) error
	// LastEventID is sent as Last-Event-ID on the first connection, and
	// events carry it until the server sends an id. After that the Client
	// sends the ID of the latest event (and no header once the server reset
	// the ID with an empty id field).
	LastEventID string
	// ReconnectDelay is the initial reconnection time; 0 means 3 s, as in
	// browsers, and a negative value means none. A retry field from the
	// server replaces it.
	ReconnectDelay time.Duration
	// MaxReconnectDelay caps the wait between attempts, backoff and the
	// server's retry field alike, so a hostile retry of years is cut down
	// to it; 0 (or less) means 30 s.
	MaxReconnectDelay time.Duration
	// MaxAttempts is how many connection attempts in a row may fail before
	// the Client gives up and returns the last error; 0 (or less) means no
	// limit. A connection counts as working, and resets the count, once it
	// has dispatched an event or stayed open for a few seconds.
	MaxAttempts int
	// MaxEventSize limits the data of one event and the length of a line;
	// 0 (or less) means [DefaultMaxEventSize].
	MaxEventSize int
	// ReadTimeout, when positive, treats a connection that receives no
	// bytes for this long (a comment counts) as broken, and reconnects.
	// Time spent waiting for the consumer to take an event does not count.
	// 0 means no timeout.
	ReadTimeout time.Duration
	// RetryStatus reports whether a non-200 status should be retried like
	// a network error, with backoff, instead of ending the stream: for
	// example 429 and 503. nil retries none. 204 always ends the stream.
	RetryStatus func(code int) bool
	// Logger, when not nil, logs connections (Info), the errors the Client
	// recovers from (Warn) and the reason it stops.
	Logger *slog.Logger
	// OnConnect, when not nil, is called with every response that opens a
	// stream. It must not read or close the body.
	OnConnect func(resp *http.Response)
	// OnError, when not nil, is called once for every connection that
	// failed or broke and that the Client will retry, before it waits. The
	// error that stops the Client is returned instead, and the end of the
	// context is not reported. An end of stream is reported as an error
	// wrapping io.EOF.
	OnError func(err error)
	// OnComment, when not nil, is called with the text of each comment line,
	// without the colon and one leading space.
	OnComment func(text string)

	// sleep replaces the real wait between attempts in tests.
	sleep func(ctx context.Context, d time.Duration) error
}

// Notify reads the stream at uri and sends its events on evCh until ctx ends
// or the stream stops for good, reconnecting as described on [Client]. It
// never closes evCh. Events carry uri in [Event.URI], even after a redirect.
//
// It returns [ErrNilChan] for a nil channel, context.Cause(ctx) when ctx
// ends, nil after a 204, and otherwise the error that stopped it.
func (c *Client) Notify(ctx context.Context, uri string, evCh chan<- *Event) error {
	if evCh == nil {
		return ErrNilChan
	}
	return c.run(ctx, uri, func(e *Event) bool {
		select {
		case evCh <- e:
			return true
		case <-ctx.Done():
			return false
		}
	})
}

// Events returns an iterator over the events of the stream at uri,
// reconnecting as described on [Client] until ctx ends. It yields each event
// with a nil error. When the stream stops for good it yields (nil, err) once
// and ends: err is context.Cause(ctx) when ctx ended and the error that
// stopped it otherwise; after a 204 it just ends. Errors the Client recovers
// from are not yielded: see OnError. Breaking out of the loop closes the
// connection. The iterator runs the stream on the caller's goroutine and
// starts none of its own. Events carry uri in [Event.URI], even after a
// redirect.
func (c *Client) Events(ctx context.Context, uri string) iter.Seq2[*Event, error] {
	return func(yield func(*Event, error) bool) {
		stopped := false
		err := c.run(ctx, uri, func(e *Event) bool {
			stopped = !yield(e, nil)
			return !stopped
		})
		if err != nil && !stopped {
			yield(nil, err)
		}
	}
}

// permanentError marks an error that another attempt would only repeat.
type permanentError struct{ error }

func (e permanentError) Unwrap() error { return e.error }

// run is the reconnection loop of Notify and Events.
func (c *Client) run(ctx context.Context, uri string, emit func(*Event) bool) error {
	s := session{
		client:    c.HTTPClient,
		uri:       uri,
		maxSize:   c.MaxEventSize,
		timeout:   c.ReadTimeout,
		onComment: c.OnComment,
		onOpen: func(resp *http.Response) {
			c.log(ctx, slog.LevelInfo, "sse: connected", slog.String("url", uri), slog.String("status", resp.Status))
			if c.OnConnect != nil {
				c.OnConnect(resp)
			}
		},
		lastID: c.LastEventID,
	}
	if s.client == nil {
		s.client = DefaultClient
	}
	failures := 0
	for {
		start := time.Now()
		err := c.attempt(ctx, &s, emit)
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		if err == errStopped {
			return nil
		}
		var se *StatusError
		if errors.As(err, &se) && se.StatusCode == http.StatusNoContent {
			c.log(ctx, slog.LevelInfo, "sse: server asked to stop", slog.String("url", uri))
			return nil
		}
		if !c.retryable(err) {
			if pe, ok := err.(permanentError); ok {
				err = pe.error // the mark is the Client's own business
			}
			c.log(ctx, slog.LevelError, "sse: stopped", slog.String("url", uri), slog.Any("error", err))
			return err
		}
		if s.opened && (s.events > 0 || time.Since(start) >= stableAfter) {
			failures = 0
		} else {
			failures++
		}
		if err == io.EOF {
			err = fmt.Errorf("sse: stream ended: %w", err)
		}
		if c.MaxAttempts > 0 && failures >= c.MaxAttempts {
			err = fmt.Errorf("sse: giving up after %d failed attempts: %w", failures, err)
			c.log(ctx, slog.LevelError, "sse: stopped", slog.String("url", uri), slog.Any("error", err))
			return err
		}
		base := c.ReconnectDelay
		switch {
		case s.hasRetry:
			base = s.retry
		case base == 0:
			base = defaultReconnectDelay
		}
		limit := c.MaxReconnectDelay
		if limit <= 0 {
			limit = defaultMaxReconnectDelay
		}
		d := backoff(base, limit, failures, rand.Float64())
		c.log(ctx, slog.LevelWarn, "sse: reconnecting", slog.String("url", uri), slog.Any("error", err), slog.Duration("delay", d))
		if c.OnError != nil {
			c.OnError(err)
		}
		if c.wait(ctx, d) != nil {
			return context.Cause(ctx)
		}
	}
}

// attempt makes one connection with a context of its own, which the read
// timeout may cancel without ending the Client.
func (c *Client) attempt(ctx context.Context, s *session, emit func(*Event) bool) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	method := c.Method
	if method == "" {
		method = http.MethodGet
	}
	var body io.Reader
	if c.Body != nil {
		body = bytes.NewReader(c.Body) // also sets GetBody, which redirects need
	}
	req, err := http.NewRequestWithContext(ctx, method, s.uri, body)
	if err != nil {
		return permanentError{err}
	}
	if c.Header != nil {
		req.Header = c.Header.Clone()
	}
	setLastEventID(req.Header, s.lastID)
	if c.Prepare != nil {
		if err := c.Prepare(req); err != nil {
			return permanentError{fmt.Errorf("sse: Client.Prepare: %w", err)}
		}
		if req.Header == nil {
			req.Header = make(http.Header)
		}
		setLastEventID(req.Header, s.lastID)
	}
	return s.stream(req, cancel, emit)
}

// setLastEventID sends id as Last-Event-ID, and no header for an empty id.
func setLastEventID(h http.Header, id string) {
	h.Del("Last-Event-ID")
	if id != "" {
		h.Set("Last-Event-ID", id)
	}
}

func (c *Client) retryable(err error) bool {
	var se *StatusError
	var pe permanentError
	switch {
	case errors.As(err, &se):
		return c.RetryStatus != nil && c.RetryStatus(se.StatusCode)
	case errors.As(err, &pe), errors.Is(err, ErrContentType), errors.Is(err, ErrEventTooLarge):
		return false
	}
	return true
}

func (c *Client) wait(ctx context.Context, d time.Duration) error {
	if c.sleep != nil {
		return c.sleep(ctx, d)
	}
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (c *Client) log(ctx context.Context, level slog.Level, msg string, attrs ...slog.Attr) {
	if c.Logger != nil {
		c.Logger.LogAttrs(ctx, level, msg, attrs...)
	}
}

// backoff returns the wait before the next attempt. failures counts the
// attempts that failed in a row, 0 when the connection that just ended
// worked: then the wait is exactly the reconnection time base. Each failure
// doubles it, from at least minBackoff, up to limit, and the jitter (r in
// [0, 1)) adds up to half of it, so that clients cut off together do not
// come back together. The standard lets a client wait longer than the
// reconnection time, never shorter, so the jitter only adds; once the sum
// reaches limit it is taken from the last third below limit instead, which
// still spreads the clients and never goes below base.
func backoff(base, limit time.Duration, failures int, r float64) time.Duration {
	limit = max(limit, 0)
	base = max(min(base, limit), 0)
	if failures <= 0 {
		return base
	}
	d := min(max(base, minBackoff), limit)
	for i := 1; i < failures && d < limit; i++ {
		if d > limit/2 {
			d = limit
		} else {
			d *= 2
		}
	}
	hi := limit
	if d < limit-d/2 {
		hi = d + d/2
	}
	lo := max(base, hi-hi/3)
	// min guards against float rounding up past hi, which could overflow.
	return lo + min(time.Duration(r*float64(hi-lo)), hi-lo)
}

// errStopped is how a session learns that its consumer wants no more events.
var errStopped = errors.New("sse: stopped by the consumer")

// session is the one connection routine of [Notify] and [Client]: it sends a
// request, checks the answer and decodes the stream. Its last event ID and
// retry delay outlive a connection, so that a Client can carry them to the
// next one.
type session struct {
	client    *http.Client
	uri       string
	maxSize   int
	timeout   time.Duration // read timeout; 0 means none
	onComment func(string)
	onOpen    func(*http.Response)

	lastID   string
	retry    time.Duration
	hasRetry bool

	// What became of the latest connection.
	opened bool // the server answered with an event stream
	events int  // events it dispatched
}

// stream runs one connection and passes its events to emit until emit
// returns false (errStopped), the stream ends (io.EOF) or something fails.
// cancel, when not nil, cancels req's context: the read timeout uses it.
func (s *session) stream(req *http.Request, cancel context.CancelCauseFunc, emit func(*Event) bool) error {
	s.opened, s.events = false, 0
	if req.Header == nil {
		req.Header = make(http.Header)
	}
	setDefault(req.Header, "Accept", "text/event-stream")
	setDefault(req.Header, "Cache-Control", "no-cache")

	w := startWatchdog(s.timeout, cancel)
	defer w.pause()
	resp, err := s.client.Do(req)
	w.pause()
	if err != nil {
		return w.explain(err)
	}
	defer resp.Body.Close()
	if err := checkResponse(resp); err != nil {
		return err
	}
	s.opened = true
	if s.onOpen != nil {
		s.onOpen(resp)
	}

	d := NewDecoder(w.reader(resp.Body))
	d.SetMaxEventSize(s.maxSize)
	d.SetLastEventID(s.lastID)
	if s.onComment != nil {
		d.OnComment(s.onComment)
	}
	defer func() {
		s.lastID = d.LastEventID()
		if r, ok := d.Retry(); ok {
			s.retry, s.hasRetry = r, true
		}
	}()
	for {
		e, err := d.Decode()
		if err != nil {
			return w.explain(err)
		}
		e.URI = s.uri
		s.events++
		if !emit(e) {
			return errStopped
		}
	}
}

func setDefault(h http.Header, key, value string) {
	if _, ok := h[key]; !ok {
		h.Set(key, value)
	}
}

// checkResponse accepts a 200 with media type text/event-stream, whatever
// its parameters and case.
func checkResponse(resp *http.Response) error {
	if resp.StatusCode != http.StatusOK {
		return &StatusError{StatusCode: resp.StatusCode, Status: resp.Status}
	}
	ct := resp.Header.Get("Content-Type")
	mt, _, err := mime.ParseMediaType(ct)
	if mt != "text/event-stream" || (err != nil && err != mime.ErrInvalidMediaParameter) {
		return fmt.Errorf("%w: got %q", ErrContentType, ct)
	}
	return nil
}

// watchdog implements the read timeout. It runs only while the connection
// waits for the network, so a consumer that is slow to take events does not
// count as a silent server. A nil watchdog does nothing.
type watchdog struct {
	d     time.Duration
	t     *time.Timer
	fired atomic.Bool
}

func startWatchdog(d time.Duration, cancel context.CancelCauseFunc) *watchdog {
	if d <= 0 || cancel == nil {
		return nil
	}
	w := &watchdog{d: d}
	w.t = time.AfterFunc(d, func() {
		w.fired.Store(true)
		cancel(ErrReadTimeout)
	})
	return w
}

func (w *watchdog) pause() {
	if w != nil {
		w.t.Stop()
	}
}

// explain replaces the error of a request that the watchdog cancelled,
// whatever form the transport gave it, by one that says why.
func (w *watchdog) explain(err error) error {
	if w != nil && w.fired.Load() {
		return fmt.Errorf("%w: no bytes for %v", ErrReadTimeout, w.d)
	}
	return err
}

func (w *watchdog) reader(r io.Reader) io.Reader {
	if w == nil {
		return r
	}
	return &watchedReader{r, w}
}

type watchedReader struct {
	r io.Reader
	w *watchdog
}

func (r *watchedReader) Read(p []byte) (int, error) {
	r.w.t.Reset(r.w.d)
	n, err := r.r.Read(p)
	r.w.t.Stop()
	return n, err
}
