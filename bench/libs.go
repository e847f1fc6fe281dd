package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"reflect"
	"sync"
	"sync/atomic"

	"github.com/b2ce5911/sse"
	r3 "github.com/r3labs/sse/v2"
	gosse "github.com/tmaxmax/go-sse"
	"gopkg.in/cenkalti/backoff.v1"
)

// The rows of every table.
const (
	Ours      = "ours"
	GoSSE     = "go-sse"
	R3labs    = "r3labs"
	Reference = "reference"
)

// Libs lists the rows in the order of the tables.
var Libs = []string{Ours, GoSSE, R3labs, Reference}

// errUnknown is returned for a library name not in Libs.
func errUnknown(lib string) error { return fmt.Errorf("bench: unknown library %q", lib) }

// Discard is an http.ResponseWriter and Flusher that does no I/O. It
// counts its flushes and, when Total is not nil, the events written (blank
// lines, also when a library writes the two line feeds in separate writes)
// in its own Events and in Total, which may be shared by many Discards.
type Discard struct {
	header  http.Header
	Events  atomic.Int64
	Flushes atomic.Int64
	Total   *atomic.Int64 // nil: Write counts nothing, and costs nothing
	last    byte          // last byte written; one writer at a time
}

// NewDiscard returns a Discard that counts events in total, or nothing
// when total is nil.
func NewDiscard(total *atomic.Int64) *Discard {
	return &Discard{header: http.Header{}, Total: total}
}

// Header implements http.ResponseWriter.
func (d *Discard) Header() http.Header { return d.header }

// WriteHeader implements http.ResponseWriter.
func (d *Discard) WriteHeader(int) {}

// Flush implements http.Flusher.
func (d *Discard) Flush() { d.Flushes.Add(1) }

// Write implements http.ResponseWriter.
func (d *Discard) Write(b []byte) (int, error) {
	if len(b) == 0 || d.Total == nil {
		return len(b), nil
	}
	n := int64(bytes.Count(b, []byte("\n\n")))
	if d.last == '\n' && b[0] == '\n' {
		n++
	}
	d.last = b[len(b)-1]
	if n > 0 {
		d.Events.Add(n)
		d.Total.Add(n)
	}
	return len(b), nil
}

// quiet is a logger for the libraries that log: benchmarks print no logs.
var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// Encoder writes one prepared event per Send to a ResponseWriter, each
// written and flushed, through one library's single-connection path:
//
//   - ours: sse.Upgrader.Upgrade (heartbeat off), then Conn.WriteMessage.
//   - go-sse: sse.Upgrade, then Session.Send and Session.Flush of a
//     sse.Message built once (AppendData).
//   - r3labs: it has no single-connection writer; its Server.ServeHTTP runs
//     on the ResponseWriter and Send is Server.Publish to the stream (with
//     SplitData, so that multi-line data stays valid). The event is written
//     by the handler goroutine: Wait waits until it was.
//   - reference: RefAppend into a reused buffer, Write, Flush.
type Encoder struct {
	Send  func() error
	Close func()
	w     *Discard
	base  int64 // flushes before the first Send
}

// Wait waits until the events of n Sends have been flushed: every library
// flushes each event (go-sse once more on its first).
func (e *Encoder) Wait(n int64) {
	for e.w.Flushes.Load()-e.base < n {
		yield()
	}
}

// NewEncoder prepares lib to send the event (id, typ, data) to a fresh Discard.
func NewEncoder(lib, id, typ string, data []byte) (*Encoder, error) {
	w := NewDiscard(nil)
	req := httptest.NewRequest("GET", "/?stream=b", nil)
	switch lib {
	case Ours:
		c, err := (&sse.Upgrader{Heartbeat: -1}).Upgrade(w, req)
		if err != nil {
			return nil, err
		}
		m := sse.Message{ID: id, Type: typ, Data: data}
		return &Encoder{Send: func() error { return c.WriteMessage(m) }, Close: c.Close, w: w, base: w.Flushes.Load()}, nil
	case GoSSE:
		s, err := gosse.Upgrade(w, req)
		if err != nil {
			return nil, err
		}
		m, err := goSSEMessage(id, typ, data)
		if err != nil {
			return nil, err
		}
		send := func() error {
			if err := s.Send(m); err != nil {
				return err
			}
			return s.Flush()
		}
		return &Encoder{Send: send, Close: func() {}, w: w, base: w.Flushes.Load()}, nil
	case R3labs:
		srv := r3.New()
		srv.AutoReplay, srv.SplitData = false, true
		srv.CreateStream("b")
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); srv.ServeHTTP(w, req.WithContext(ctx)) }()
		for w.Flushes.Load() == 0 {
			yield()
		}
		ev := &r3.Event{ID: []byte(id), Event: []byte(typ), Data: data}
		send := func() error { srv.Publish("b", ev); return nil }
		return &Encoder{Send: send, Close: func() { cancel(); <-done; srv.Close() }, w: w, base: w.Flushes.Load()}, nil
	case Reference:
		refHeaders(w)
		var buf []byte
		send := func() error {
			buf = RefAppend(buf[:0], id, typ, data)
			if _, err := w.Write(buf); err != nil {
				return err
			}
			w.Flush()
			return nil
		}
		return &Encoder{Send: send, Close: func() {}, w: w, base: w.Flushes.Load()}, nil
	}
	return nil, errUnknown(lib)
}

func goSSEMessage(id, typ string, data []byte) (*gosse.Message, error) {
	m := &gosse.Message{}
	var err error
	if id != "" {
		if m.ID, err = gosse.NewID(id); err != nil {
			return nil, err
		}
	}
	if typ != "" {
		if m.Type, err = gosse.NewType(typ); err != nil {
			return nil, err
		}
	}
	m.AppendData(string(data))
	return m, nil
}

func refHeaders(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
}

// Parse reads stream through lib's client path and returns how many events
// it dispatched and how many data bytes they carried:
//
//   - ours: sse.Decoder, the parser under Notify and Client.
//   - go-sse: sse.Read, its parser (also under its Client's Connection).
//   - r3labs: its Client.SubscribeRaw over an in-memory http.RoundTripper
//     (its parser is not exported), without reconnection.
//   - reference: RefParse, from a bytes.Reader like the others.
func Parse(lib string, stream []byte) (events, dataBytes int, err error) {
	switch lib {
	case Ours:
		d := sse.NewDecoder(bytes.NewReader(stream))
		for {
			e, err := d.Decode()
			if err == io.EOF {
				return events, dataBytes, nil
			}
			if err != nil {
				return events, dataBytes, err
			}
			events++
			dataBytes += len(e.Bytes())
		}
	case GoSSE:
		for e, err := range gosse.Read(bytes.NewReader(stream), nil) {
			if err != nil {
				return events, dataBytes, err
			}
			events++
			dataBytes += len(e.Data)
		}
		return events, dataBytes, nil
	case R3labs:
		c := r3.NewClient("http://127.0.0.1/events")
		c.Connection = &http.Client{Transport: memTransport(stream)}
		c.ReconnectStrategy = &backoff.StopBackOff{}
		err := c.SubscribeRaw(func(e *r3.Event) {
			events++
			dataBytes += len(e.Data)
		})
		return events, dataBytes, err
	case Reference:
		err := RefParse(bytes.NewReader(stream), func(_ []byte, n int) {
			events++
			dataBytes += n
		})
		return events, dataBytes, err
	}
	return 0, 0, errUnknown(lib)
}

// memTransport answers every request with the stream, from memory.
type memTransport []byte

func (t memTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	return &http.Response{
		StatusCode: http.StatusOK,
		Proto:      "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header:  http.Header{"Content-Type": {"text/event-stream"}},
		Body:    io.NopCloser(bytes.NewReader(t)),
		Request: r,
	}, nil
}

// Server is one library's broadcast path: an http.Handler that streams
// every published event to each request it serves, on its one topic.
//
//   - ours: sse.Hub (defaults: MemoryBroker, queue 256, heartbeat 15 s),
//     Hub.ServeHTTP and Hub.Publish.
//   - go-sse: sse.Server with its default provider Joe, Server.ServeHTTP
//     and Server.Publish.
//   - r3labs: sse.New() with CreateStream, AutoReplay off (it would keep
//     every event forever), Server.ServeHTTP and Server.Publish.
//   - reference: a minimal hub written here: encode once, a buffered
//     channel per subscriber, one write and flush per wake-up.
type Server interface {
	http.Handler
	// Publish broadcasts one event of type "update" with data. data must
	// not be modified afterwards.
	Publish(data []byte) error
	// Close ends every stream and frees the server.
	Close()
}

// Options change a Server from its defaults, for the load tool's modes.
// The zero value is every library's defaults.
type Options struct {
	// History, when positive, is ours' Hub.History and the reference's
	// queue per subscriber (at least its 256).
	History int
	// BrokerHistory, when positive, is how many events ours' MemoryBroker
	// keeps for replay.
	BrokerHistory int
	// Backpressure sets ours' Hub.Backpressure.
	Backpressure bool
	// HubBools sets boolean fields of ours' Hub by name (a switch that one
	// version of the Hub has and another has not); a name the Hub lacks
	// is an error.
	HubBools map[string]bool
}

// Evicter is a Server that counts the subscribers it cut off (ours).
type Evicter interface {
	Evicted() int64
}

// NewServer returns lib's broadcast path, with its defaults.
func NewServer(lib string) (Server, error) { return NewServerWith(lib, Options{}) }

// NewServerWith returns lib's broadcast path, changed by o where lib has
// the setting.
func NewServerWith(lib string, o Options) (Server, error) {
	switch lib {
	case Ours:
		h := &sse.Hub{Logger: quiet, Topics: func(*http.Request) []string { return []string{"t"} }}
		h.History, h.Backpressure = o.History, o.Backpressure
		if o.BrokerHistory > 0 {
			h.Broker = &sse.MemoryBroker{History: o.BrokerHistory}
		}
		v := reflect.ValueOf(h).Elem()
		for name, on := range o.HubBools {
			f := v.FieldByName(name)
			if !f.IsValid() || f.Kind() != reflect.Bool {
				return nil, fmt.Errorf("bench: sse.Hub has no boolean field %s", name)
			}
			f.SetBool(on)
		}
		return oursServer{h}, nil
	case GoSSE:
		typ, err := gosse.NewType("update")
		if err != nil {
			return nil, err
		}
		return &goSSEServer{s: &gosse.Server{}, typ: typ}, nil
	case R3labs:
		s := r3.New()
		s.AutoReplay, s.SplitData = false, true
		s.CreateStream("t")
		return r3Server{s}, nil
	case Reference:
		return &refServer{subs: make(map[chan []byte]struct{}), done: make(chan struct{}), queue: max(256, o.History)}, nil
	}
	return nil, errUnknown(lib)
}

// StreamPath is the request path every Server answers (r3labs needs the
// stream in the query).
const StreamPath = "/events?stream=t&topic=t"

type oursServer struct{ *sse.Hub }

func (s oursServer) Publish(data []byte) error {
	_, err := s.Hub.Publish(context.Background(), "t", sse.Message{Type: "update", Data: data})
	return err
}

func (s oursServer) Close() {
	_ = s.Hub.Close()
	if b, ok := s.Hub.Broker.(*sse.MemoryBroker); ok {
		_ = b.Close()
	}
}

func (s oursServer) Evicted() int64 { return s.Hub.Stats().Evicted }

type goSSEServer struct {
	s   *gosse.Server
	typ gosse.EventType
}

func (s *goSSEServer) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.s.ServeHTTP(w, r) }

func (s *goSSEServer) Publish(data []byte) error {
	m := &gosse.Message{Type: s.typ}
	m.AppendData(string(data))
	return s.s.Publish(m)
}

func (s *goSSEServer) Close() {
	if err := s.s.Shutdown(context.Background()); err != nil && !errors.Is(err, gosse.ErrProviderClosed) {
		slog.Default().Debug("go-sse shutdown", "err", err)
	}
}

type r3Server struct{ s *r3.Server }

func (s r3Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.s.ServeHTTP(w, r) }

func (s r3Server) Publish(data []byte) error {
	s.s.Publish("t", &r3.Event{Event: []byte("update"), Data: data})
	return nil
}

func (s r3Server) Close() { s.s.Close() }

// refServer is the reference hub.
type refServer struct {
	mu     sync.Mutex
	subs   map[chan []byte]struct{}
	done   chan struct{}
	closed bool
	queue  int // slots per subscriber
}

func (s *refServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	refHeaders(w)
	f, _ := w.(http.Flusher)
	ch := make(chan []byte, s.queue)
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.subs[ch] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.subs, ch)
		s.mu.Unlock()
	}()
	for {
		select {
		case b := <-ch:
			for more := true; more; {
				if _, err := w.Write(b); err != nil {
					return
				}
				select {
				case b = <-ch:
				default:
					more = false
				}
			}
			if f != nil {
				f.Flush()
			}
		case <-r.Context().Done():
			return
		case <-s.done:
			return
		}
	}
}

// Publish queues the event for every subscriber, waiting for room: the
// benchmarks' flow control keeps the queues from filling.
func (s *refServer) Publish(data []byte) error {
	b := RefAppend(nil, "", "update", data)
	s.mu.Lock()
	defer s.mu.Unlock()
	for ch := range s.subs {
		select {
		case ch <- b:
		case <-s.done:
			return errors.New("reference: closed")
		}
	}
	return nil
}

func (s *refServer) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		s.closed = true
		close(s.done)
	}
}
