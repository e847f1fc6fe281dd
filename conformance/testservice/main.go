// Command testservice is the test service that LaunchDarkly's
// sse-contract-tests harness (protocol v2) drives to check sse.Client: the
// harness asks it over HTTP to open streams, and it reports every event,
// comment and error back to the harness's callback URL.
//
//	go run ./conformance/testservice -port 8000
//
// See conformance/run for a full run of the harness.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"log"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"time"

	"github.com/b2ce5911/sse"
)

func main() {
	host := flag.String("host", "", "address to listen on (empty: all interfaces)")
	port := flag.Int("port", 8000, "port to listen on")
	flag.Parse()

	logger := log.New(os.Stderr, "testservice: ", log.LstdFlags|log.Lmicroseconds)
	svc := newService(logger)
	ln, err := net.Listen("tcp", net.JoinHostPort(*host, strconv.Itoa(*port)))
	if err != nil {
		logger.Fatal(err)
	}
	srv := &http.Server{Handler: svc, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && err != http.ErrServerClosed {
			logger.Fatal(err)
		}
	}()
	logger.Printf("listening on %s", ln.Addr())

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt)
	select {
	case <-svc.Done():
		logger.Print("stopped by DELETE /")
	case s := <-sig:
		logger.Printf("stopped by %v", s)
	}
	svc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	srv.Shutdown(ctx)
}

// capabilities are the optional features of the harness that sse.Client
// supports. "204" and "server-directed-shutdown-request" name the same test
// in different versions of the harness.
var capabilities = []string{
	"comments",
	"bom",
	"headers",
	"last-event-id",
	"post",
	"report",
	"read-timeout",
	"restart",
	"server-directed-shutdown-request",
	"204",
	"empty-or-missing-location",
}

// createParams is the body of POST /. The delays are pointers because the
// harness sends null for "not set" and 0 for "reconnect at once".
type createParams struct {
	Tag            string            `json:"tag"`
	StreamURL      string            `json:"streamUrl"`
	CallbackURL    string            `json:"callbackUrl"`
	InitialDelayMS *int              `json:"initialDelayMs"`
	ReadTimeoutMS  *int              `json:"readTimeoutMs"`
	LastEventID    string            `json:"lastEventId"`
	Method         string            `json:"method"`
	Body           string            `json:"body"`
	Headers        map[string]string `json:"headers"`
}

// message is one callback to the harness.
type message struct {
	Kind    string        `json:"kind"`
	Event   *eventMessage `json:"event,omitempty"`
	Comment *string       `json:"comment,omitempty"`
	Error   string        `json:"error,omitempty"`
}

type eventMessage struct {
	Type string `json:"type"`
	Data string `json:"data"`
	ID   string `json:"id"` // the last event ID after this event
}

// service is the HTTP API of the test service. Close stops every stream.
type service struct {
	log       *log.Logger
	transport *http.Transport // shared by the streams and the callbacks
	callbacks *http.Client
	mux       *http.ServeMux
	quit      chan struct{}
	quitOnce  sync.Once

	mu      sync.Mutex
	streams map[string]*stream
	next    int
}

func newService(logger *log.Logger) *service {
	s := &service{
		log: logger,
		transport: &http.Transport{
			DialContext:         (&net.Dialer{Timeout: 10 * time.Second}).DialContext,
			MaxIdleConnsPerHost: 100,
			IdleConnTimeout:     30 * time.Second,
		},
		mux:     http.NewServeMux(),
		quit:    make(chan struct{}),
		streams: make(map[string]*stream),
	}
	s.callbacks = &http.Client{Transport: s.transport, Timeout: 10 * time.Second}
	s.mux.HandleFunc("GET /{$}", s.status)
	s.mux.HandleFunc("POST /{$}", s.create)
	s.mux.HandleFunc("DELETE /{$}", s.stop)
	s.mux.HandleFunc("POST /streams/{id}", s.command)
	s.mux.HandleFunc("DELETE /streams/{id}", s.remove)
	return s
}

func (s *service) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// Done is closed when the harness asks the service to exit.
func (s *service) Done() <-chan struct{} { return s.quit }

// Close stops every stream, waits for them, and closes idle connections.
func (s *service) Close() {
	s.mu.Lock()
	streams := s.streams
	s.streams = make(map[string]*stream)
	s.mu.Unlock()
	for _, st := range streams {
		st.close()
	}
	s.transport.CloseIdleConnections()
}

func (s *service) status(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{
		"name":         "github.com/b2ce5911/sse",
		"capabilities": capabilities,
	})
}

func (s *service) stop(w http.ResponseWriter, r *http.Request) {
	w.WriteHeader(http.StatusNoContent)
	s.quitOnce.Do(func() { close(s.quit) })
}

func (s *service) create(w http.ResponseWriter, r *http.Request) {
	var p createParams
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&p); err != nil {
		http.Error(w, "bad JSON: "+err.Error(), http.StatusBadRequest)
		return
	}
	if err := p.validate(); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	rt := &restartTransport{base: s.transport}
	c := &sse.Client{
		HTTPClient:  &http.Client{Transport: rt},
		Method:      p.Method,
		LastEventID: p.LastEventID,
		Header:      make(http.Header),
	}
	if p.Body != "" {
		c.Body = []byte(p.Body)
	}
	for k, v := range p.Headers {
		c.Header.Set(k, v)
	}
	if p.InitialDelayMS != nil {
		c.ReconnectDelay = time.Duration(*p.InitialDelayMS) * time.Millisecond
		if c.ReconnectDelay == 0 {
			c.ReconnectDelay = -1 // the harness's 0 means at once; the Client's 0 means 3 s
		}
	}
	if p.ReadTimeoutMS != nil {
		c.ReadTimeout = time.Duration(*p.ReadTimeoutMS) * time.Millisecond
	}

	ctx, cancel := context.WithCancel(context.Background())
	st := &stream{
		svc:      s,
		tag:      p.Tag,
		callback: p.CallbackURL,
		rt:       rt,
		cancel:   cancel,
		done:     make(chan struct{}),
	}
	s.mu.Lock()
	s.next++
	id := strconv.Itoa(s.next)
	s.streams[id] = st
	s.mu.Unlock()
	s.log.Printf("stream %s: %q: %s", id, p.Tag, p.StreamURL)
	go st.run(ctx, c, p.StreamURL)

	w.Header().Set("Location", "/streams/"+id)
	w.WriteHeader(http.StatusCreated)
}

func (p *createParams) validate() error {
	for _, u := range []struct{ name, value string }{{"streamUrl", p.StreamURL}, {"callbackUrl", p.CallbackURL}} {
		parsed, err := url.Parse(u.value)
		if err != nil || (parsed.Scheme != "http" && parsed.Scheme != "https") || parsed.Host == "" {
			return errors.New(u.name + " must be an absolute http(s) URL")
		}
	}
	if p.InitialDelayMS != nil && *p.InitialDelayMS < 0 || p.ReadTimeoutMS != nil && *p.ReadTimeoutMS < 0 {
		return errors.New("initialDelayMs and readTimeoutMs must not be negative")
	}
	return nil
}

func (s *service) lookup(w http.ResponseWriter, r *http.Request, remove bool) *stream {
	id := r.PathValue("id")
	s.mu.Lock()
	st := s.streams[id]
	if remove {
		delete(s.streams, id)
	}
	s.mu.Unlock()
	if st == nil {
		http.Error(w, "no stream "+id, http.StatusNotFound)
	}
	return st
}

func (s *service) command(w http.ResponseWriter, r *http.Request) {
	st := s.lookup(w, r, false)
	if st == nil {
		return
	}
	var cmd struct {
		Command string `json:"command"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&cmd); err != nil {
		http.Error(w, "bad JSON: "+err.Error(), http.StatusBadRequest)
		return
	}
	switch cmd.Command {
	case "restart":
		st.rt.restart()
		w.WriteHeader(http.StatusAccepted)
	default:
		http.Error(w, "unknown command "+strconv.Quote(cmd.Command), http.StatusBadRequest)
	}
}

func (s *service) remove(w http.ResponseWriter, r *http.Request) {
	if st := s.lookup(w, r, true); st != nil {
		st.close()
		w.WriteHeader(http.StatusNoContent)
	}
}

// stream is one client the harness created. Its counter is touched only by
// the goroutine in run, which also runs every hook of the Client: callbacks
// go out one at a time, in the order things happened, numbered without gaps.
type stream struct {
	svc      *service
	tag      string
	callback string
	rt       *restartTransport
	cancel   context.CancelFunc
	done     chan struct{}
	counter  int
}

func (st *stream) run(ctx context.Context, c *sse.Client, uri string) {
	defer close(st.done)
	c.OnComment = func(text string) {
		st.post(ctx, message{Kind: "comment", Comment: &text})
	}
	c.OnError = func(err error) {
		if !errors.Is(err, errRestart) { // a restart is not a failure
			st.post(ctx, message{Kind: "error", Error: err.Error()})
		}
	}
	for e, err := range c.Events(ctx, uri) {
		if err != nil {
			if ctx.Err() == nil {
				st.post(ctx, message{Kind: "error", Error: err.Error()})
			}
			return
		}
		st.post(ctx, message{Kind: "event", Event: &eventMessage{Type: e.Type, Data: string(e.Bytes()), ID: e.ID}})
	}
}

// post sends one callback and waits for the harness to take it; nothing is
// sent once the stream is deleted.
func (st *stream) post(ctx context.Context, m message) {
	if ctx.Err() != nil {
		return
	}
	st.counter++
	body, err := json.Marshal(m)
	if err != nil {
		st.svc.log.Printf("%q: %v", st.tag, err)
		return
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, st.callback+"/"+strconv.Itoa(st.counter), bytes.NewReader(body))
	if err != nil {
		st.svc.log.Printf("%q: %v", st.tag, err)
		return
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := st.svc.callbacks.Do(req)
	if err != nil {
		if ctx.Err() == nil {
			st.svc.log.Printf("%q: callback %d: %v", st.tag, st.counter, err)
		}
		return
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	resp.Body.Close()
	if resp.StatusCode >= 300 {
		st.svc.log.Printf("%q: callback %d: %s", st.tag, st.counter, resp.Status)
	}
}

// close stops the client and waits until it can send nothing more.
func (st *stream) close() {
	st.cancel()
	<-st.done
}

// errRestart is the cause given to a connection that the harness restarts.
var errRestart = errors.New("restart requested")

// restartTransport lets the service drop the current connection of a
// Client from outside, exactly as if the server had dropped it: the Client
// then reconnects on its own, with its last event ID and delays intact.
type restartTransport struct {
	base http.RoundTripper

	mu     sync.Mutex
	cancel context.CancelCauseFunc // of the latest request
}

func (t *restartTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	// The Client cancels its request's context when the connection ends,
	// which releases this child context too.
	ctx, cancel := context.WithCancelCause(req.Context())
	t.mu.Lock()
	t.cancel = cancel
	t.mu.Unlock()
	return t.base.RoundTrip(req.WithContext(ctx))
}

func (t *restartTransport) restart() {
	t.mu.Lock()
	cancel := t.cancel
	t.mu.Unlock()
	if cancel != nil {
		cancel(errRestart)
	}
}
