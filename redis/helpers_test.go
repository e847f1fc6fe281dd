package sseredis_test

import (
	"context"
	"crypto/sha1"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/b2ce5911/sse"
	sseredis "github.com/b2ce5911/sse/redis"
	"github.com/b2ce5911/sse/redis/redistest"
	"github.com/redis/go-redis/v9"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// node is one server of a deployment: a Hub with its own Broker and Redis
// client, served over HTTP on loopback.
type node struct {
	hub    *sse.Hub
	broker *sseredis.Broker
	client *redis.Client
	ts     *httptest.Server
	wrap   sse.Broker // when set, what the Hub uses in front of broker
	recent int        // the Hub's Recent
}

// newNode starts a node; configure may change its Broker, or set wrap,
// before the Hub is made.
func newNode(t testing.TB, s *redistest.Server, configure ...func(*node)) *node {
	t.Helper()
	n := &node{client: s.Client(t)}
	n.broker = &sseredis.Broker{Client: n.client, Block: 200 * time.Millisecond, Logger: quiet}
	for _, f := range configure {
		f(n)
	}
	n.hub = &sse.Hub{Broker: n.broker, Logger: quiet, Recent: n.recent}
	if n.wrap != nil {
		n.hub.Broker = n.wrap
	}
	n.ts = httptest.NewServer(n.hub)
	t.Cleanup(n.shutdown)
	return n
}

// shutdown stops the node as a server process would: Hub, Broker, Redis
// client, HTTP server. It can be called more than once.
func (n *node) shutdown() {
	n.hub.Close()
	n.broker.Close()
	n.client.Close()
	n.ts.Close()
}

func (n *node) publish(t testing.TB, topic string, data ...string) []string {
	t.Helper()
	var ids []string
	for _, d := range data {
		id, err := n.hub.Publish(context.Background(), topic, sse.Message{Data: []byte(d)})
		if err != nil {
			t.Fatalf("publish %q: %v", d, err)
		}
		ids = append(ids, id)
	}
	return ids
}

type event struct{ id, typ, data string }

// stream is a client's event stream, decoded by sse.Decoder.
type stream struct {
	events chan event
	body   io.Closer
	cancel context.CancelFunc
}

// subscribe opens a stream of n's Hub and returns once the Hub has
// registered it, so that what is published next reaches it. lastID, when
// not empty, is sent as Last-Event-ID.
func (n *node) subscribe(t testing.TB, query, lastID string) *stream {
	t.Helper()
	before := n.hub.Stats().Subscriptions
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, n.ts.URL+"?"+query, nil)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := n.ts.Client().Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		cancel()
		t.Fatalf("status %d", resp.StatusCode)
	}
	s := &stream{events: make(chan event, 1<<14), body: resp.Body, cancel: cancel}
	go func() {
		defer close(s.events)
		d := sse.NewDecoder(resp.Body)
		for {
			e, err := d.Decode()
			if err != nil {
				return
			}
			s.events <- event{e.ID, e.Type, string(e.Bytes())}
		}
	}()
	t.Cleanup(s.close)
	for deadline := time.Now().Add(30 * time.Second); n.hub.Stats().Subscriptions == before; {
		if time.Now().After(deadline) { // a hang, not a measurement
			t.Fatalf("the Hub has not registered the stream of %q after 30s", query)
		}
		time.Sleep(time.Millisecond)
	}
	return s
}

func (s *stream) close() {
	s.cancel()
	s.body.Close()
}

// next returns the stream's next event; it fails the test after 10s.
func (s *stream) next(t testing.TB) event {
	t.Helper()
	select {
	case e, ok := <-s.events:
		if !ok {
			t.Fatal("stream ended")
		}
		return e
	case <-time.After(10 * time.Second):
		t.Fatal("no event within 10s")
	}
	panic("unreachable")
}

// expect reads len(want) events and checks their data.
func (s *stream) expect(t testing.TB, want ...string) []event {
	t.Helper()
	var got []event
	for _, w := range want {
		e := s.next(t)
		if e.data != w || e.typ != "message" {
			t.Fatalf("got %+v after %v, want data %q", e, got, w)
		}
		got = append(got, e)
	}
	return got
}

// silent checks that nothing more comes within d.
func (s *stream) silent(t testing.TB, d time.Duration) {
	t.Helper()
	select {
	case e, ok := <-s.events:
		if ok {
			t.Fatalf("unexpected event %+v", e)
		}
	case <-time.After(d):
	}
}

func names(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s%d", prefix, i+1)
	}
	return out
}

// goroutines returns the stack of every goroutine but the caller's.
func goroutines() []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			return strings.Split(string(buf[:n]), "\n\n")[1:]
		}
		buf = make([]byte, 2*len(buf))
	}
}

// holdReads is a go-redis hook that holds a node's reads of its streams
// (the reader's script, or XREAD) while held, as a GC pause or a slow link
// would: what other nodes publish meanwhile waits in Redis.
type holdReads struct {
	mu   sync.Mutex
	gate chan struct{} // nil: not held
}

func (h *holdReads) hold() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.gate == nil {
		h.gate = make(chan struct{})
	}
}

func (h *holdReads) release() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.gate != nil {
		close(h.gate)
		h.gate = nil
	}
}

func (h *holdReads) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *holdReads) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if isRound(cmd) {
			h.mu.Lock()
			gate := h.gate
			h.mu.Unlock()
			if gate != nil {
				<-gate
			}
		}
		return next(ctx, cmd)
	}
}

// isRound tells whether cmd is a round of a reader: its script, or XREAD.
func isRound(cmd redis.Cmder) bool {
	args := cmd.Args()
	switch cmd.Name() {
	case "xread":
		return true
	}
	if len(args) < 2 {
		return false
	}
	switch cmd.Name() {
	case "evalsha":
		return args[1] == sseredis.ReadScript.Hash()
	case "eval":
		src, ok := args[1].(string)
		return ok && fmt.Sprintf("%x", sha1.Sum([]byte(src))) == sseredis.ReadScript.Hash()
	}
	return false
}

func (h *holdReads) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// heldNode is a node whose reads h holds; it is released before the node
// shuts down, which would otherwise wait for the held read.
func heldNode(t *testing.T, srv *redistest.Server, h *holdReads, configure ...func(*node)) *node {
	t.Helper()
	n := newNode(t, srv, append(configure, func(n *node) { n.client.AddHook(h) })...)
	t.Cleanup(h.release)
	return n
}

// consecutive reads the events of s that follow data prefix+"<from>",
// checking that each is the next one, until the stream ends or the event
// of number to arrives; it returns the last one it got.
func (s *stream) consecutive(t *testing.T, prefix string, from, to int) (last event, ended bool) {
	t.Helper()
	for i := from + 1; ; i++ {
		select {
		case e, ok := <-s.events:
			if !ok {
				return last, true
			}
			if want := fmt.Sprint(prefix, i); e.data != want || e.typ != "message" {
				t.Fatalf("got %+v after %+v, want %q: events were skipped", e, last, want)
			}
			last = e
			if i == to {
				return last, false
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no event after %+v within 10s, and the stream is still open", last)
		}
	}
}
