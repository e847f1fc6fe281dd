package sse

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults of the bounds of [Hub]. A stream costs about 25 KB of memory on
// the handler path, net/http's share included, and about 2 KB once
// detached (see Hub.DisableDetach); each topic it asks for adds about 1.7 KB
// when the topic is new (a feed of its own) and less when it exists: at the
// defaults one stream holds at most about 55 KB whatever it asks for
// (measured by TestTopicFlood in the reliability module), and a Hub full of
// such streams about 5.5 GB. Set MaxSubscribers to what the machine holds.
const (
	DefaultMaxTopics      = 16
	DefaultMaxTopicLength = 256
	DefaultMaxSubscribers = 100_000
	DefaultMaxDataSize    = 1 << 20
)

// ErrUnauthorized is returned by a [Hub.Authorize] hook to refuse a request
// that did not say who it is: the Hub answers 401 instead of 403.
var ErrUnauthorized = errors.New("sse: unauthorized")

// LimitError is returned when a subscriber or a publish goes beyond one of
// the Hub's bounds: by [Hub.Serve], which the Hub refuses before writing
// anything, and by [Hub.Publish], which publishes nothing.
type LimitError struct {
	// Limit is the Hub field that was exceeded: "MaxTopics",
	// "MaxTopicLength", "MaxSubscribers", "MaxPerClient" or "MaxDataSize".
	Limit string
	// Max is the bound in force (the field's value or its default).
	Max int
}

func (e *LimitError) Error() string {
	return "sse: over the hub's " + e.Limit + " of " + strconv.Itoa(e.Max)
}

// Kinds of refusal, each logged on its own (see logRefusal).
const (
	refusedTopics = iota
	refusedTopicLength
	refusedSubscribers
	refusedPerClient
	refusedDataSize
	refusedAuthorize
	refusalKinds
)

var refusalLimits = [refusalKinds]string{"MaxTopics", "MaxTopicLength", "MaxSubscribers", "MaxPerClient", "MaxDataSize", "Authorize"}

// refusalLogEvery is how often each kind of refusal may be logged: the
// first one at once, then one line per interval that says how many there
// were, so that a flood of bad requests cannot flood the log.
const refusalLogEvery = time.Minute

// hubLimits is the state of the Hub's bounds; its zero value is ready.
type hubLimits struct {
	streams atomic.Int64 // admitted and not yet released, ServeHTTP and Serve alike
	refused atomic.Int64 // streams refused, for Stats

	mu      sync.Mutex     // guards clients
	clients map[string]int // streams per client, for MaxPerClient

	logs [refusalKinds]struct {
		last    atomic.Int64 // when this kind was last logged, in Unix nanoseconds
		pending atomic.Int64 // refusals since then
	}
}

// bound returns the value in force of a field whose zero means def and
// whose negative values mean no limit (0 here).
func bound(v, def int) int {
	switch {
	case v == 0:
		return def
	case v < 0:
		return 0
	}
	return v
}

// checkTopics applies MaxTopics and MaxTopicLength to the topics a
// subscriber asks for. Names count as asked, before duplicates are
// dropped, so that the bound holds before any work is done on them.
func (h *Hub) checkTopics(topics []string) *LimitError {
	if m := bound(h.MaxTopics, DefaultMaxTopics); m > 0 && len(topics) > m {
		return &LimitError{Limit: "MaxTopics", Max: m}
	}
	for _, t := range topics {
		if err := h.checkTopic(t); err != nil {
			return err
		}
	}
	return nil
}

func (h *Hub) checkTopic(topic string) *LimitError {
	if m := bound(h.MaxTopicLength, DefaultMaxTopicLength); m > 0 && len(topic) > m {
		return &LimitError{Limit: "MaxTopicLength", Max: m}
	}
	return nil
}

// checkPublish applies the bounds of a publish: a topic no one could
// subscribe to, and data beyond MaxDataSize, are refused whole.
func (h *Hub) checkPublish(topic string, m *Message) error {
	err := h.checkTopic(topic)
	if err == nil {
		if max := bound(h.MaxDataSize, DefaultMaxDataSize); max > 0 && len(m.Data) > max {
			err = &LimitError{Limit: "MaxDataSize", Max: max}
		}
	}
	if err != nil {
		h.logRefusal(kindOf(err), "", err)
		return err
	}
	return nil
}

func kindOf(err *LimitError) int {
	for k, l := range refusalLimits {
		if l == err.Limit {
			return k
		}
	}
	return refusedAuthorize
}

// admit decides whether r may have a stream, and of which topics. When it
// may, admit returns the topics and the client whose stream it counts,
// which the caller gives back to release once the stream has ended. When
// not, admit has answered and returns ok false.
func (h *Hub) admit(w http.ResponseWriter, r *http.Request) (topics []string, client string, ok bool) {
	h.init()
	if r.Method == http.MethodOptions {
		// A preflight that a CORS middleware let through: it must not get
		// a stream, and a 2xx lets the browser go on.
		w.Header().Set("Allow", "OPTIONS, GET, POST")
		w.WriteHeader(http.StatusNoContent)
		return nil, "", false
	}
	topics = r.URL.Query()["topic"]
	if h.Topics != nil {
		topics = h.Topics(r)
	}
	if len(topics) == 0 {
		http.Error(w, "no topic", http.StatusBadRequest)
		return nil, "", false
	}
	if err := h.checkTopics(topics); err != nil {
		h.refuse(w, r, err, "")
		return nil, "", false
	}
	if h.Authorize != nil {
		asked := topics
		var err error
		topics, err = h.Authorize(r, asked)
		if err != nil || len(topics) == 0 {
			if err == nil {
				err = errors.New("no topic authorized")
			}
			h.refuse(w, r, fmt.Errorf("%w (topics %q)", err, asked), "")
			return nil, "", false
		}
	}
	if bound(h.MaxPerClient, 0) > 0 {
		client = h.clientOf(r)
	}
	if err := h.reserve(client); err != nil {
		h.refuse(w, r, err, client)
		return nil, "", false
	}
	return topics, client, true
}

// admitConn is admit for Serve, which has no request to answer: the topic
// bounds and MaxSubscribers apply, MaxPerClient and Authorize do not.
func (h *Hub) admitConn(topics []string) error {
	h.init()
	err := h.checkTopics(topics)
	if err == nil {
		err = h.reserve("")
	}
	if err != nil {
		h.limits.refused.Add(1)
		h.logRefusal(kindOf(err), "", err)
		return err
	}
	return nil
}

// reserve counts one more stream, for client when it is not "", or
// returns the bound that leaves no room for it.
func (h *Hub) reserve(client string) *LimitError {
	l := &h.limits
	if max := bound(h.MaxSubscribers, DefaultMaxSubscribers); l.streams.Add(1) > int64(max) && max > 0 {
		l.streams.Add(-1)
		return &LimitError{Limit: "MaxSubscribers", Max: max}
	}
	if client == "" {
		return nil
	}
	max := bound(h.MaxPerClient, 0)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.clients[client] >= max {
		l.streams.Add(-1)
		return &LimitError{Limit: "MaxPerClient", Max: max}
	}
	if l.clients == nil {
		l.clients = make(map[string]int)
	}
	l.clients[client]++
	return nil
}

// release gives back what reserve counted.
func (h *Hub) release(client string) {
	l := &h.limits
	l.streams.Add(-1)
	if client == "" {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.clients[client]--; l.clients[client] <= 0 {
		delete(l.clients, client)
	}
}

// clientOf names r's client for MaxPerClient.
func (h *Hub) clientOf(r *http.Request) string {
	if h.ClientAddr != nil {
		if a := h.ClientAddr(r); a != "" {
			return a
		}
	}
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		return host
	}
	return r.RemoteAddr
}

// refuse answers a request that may not have a stream, with a short reason
// and never with the text of an error of the application's: that goes to
// the log.
func (h *Hub) refuse(w http.ResponseWriter, r *http.Request, err error, client string) {
	h.limits.refused.Add(1)
	code, reason, kind := http.StatusForbidden, "forbidden", refusedAuthorize
	var le *LimitError
	switch {
	case errors.As(err, &le):
		kind = kindOf(le)
		switch kind {
		case refusedTopics:
			code, reason = http.StatusBadRequest, "too many topics: at most "+strconv.Itoa(le.Max)
		case refusedTopicLength:
			code, reason = http.StatusBadRequest, "topic name too long: at most "+strconv.Itoa(le.Max)+" bytes"
		case refusedSubscribers, refusedPerClient:
			code, reason = http.StatusServiceUnavailable, "server full: try again later"
			if kind == refusedPerClient {
				code, reason = http.StatusTooManyRequests, "too many streams from this client"
			}
			// Clients that read it come back at different times, as
			// browsers do after a retry field (see Upgrader.RetryJitter).
			d := h.Upgrader.retry()
			secs := d / time.Second
			if d%time.Second != 0 || secs == 0 {
				secs++
			}
			w.Header().Set("Retry-After", strconv.FormatInt(int64(secs), 10))
		}
	case errors.Is(err, ErrUnauthorized):
		code, reason = http.StatusUnauthorized, "unauthorized"
	}
	h.logRefusal(kind, client, err, "remote", r.RemoteAddr)
	http.Error(w, reason, code)
}

// logRefusal logs a refusal of kind, unless one of the same kind was
// logged less than refusalLogEvery ago: then it is counted, and the next
// line says how many there were.
func (h *Hub) logRefusal(kind int, client string, err error, attrs ...any) {
	l := &h.limits.logs[kind]
	n := l.pending.Add(1)
	now := time.Now().UnixNano()
	last := l.last.Load()
	if last != 0 && now-last < int64(refusalLogEvery) || !l.last.CompareAndSwap(last, now) {
		return
	}
	l.pending.Add(-n)
	attrs = append(attrs, "limit", refusalLimits[kind], "refused", n, "err", err)
	if client != "" {
		attrs = append(attrs, "client", client)
	}
	h.logger().Warn("sse: hub refused", attrs...)
}
