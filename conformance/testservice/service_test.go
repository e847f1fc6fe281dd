package main

import (
	"bytes"
	"encoding/json"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// These tests drive the service over HTTP the way sse-contract-tests does:
// a mock stream endpoint that the test writes raw bytes to, a callback
// endpoint that collects the numbered POSTs, and the service's API in
// between. The timeouts only bound how long a failing test waits.
const patience = 30 * time.Second

// mockStream hands every connection it gets to the test.
type mockStream struct {
	*httptest.Server
	conns chan *mockConn
	quit  chan struct{}
}

type mockConn struct {
	method, body string
	header       http.Header
	send         chan string
	end          chan struct{} // closed by the test: the response ends cleanly
	gone         chan struct{} // closed when the response is over
}

func newMockStream(t *testing.T) *mockStream {
	m := &mockStream{conns: make(chan *mockConn, 16), quit: make(chan struct{})}
	m.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		c := &mockConn{
			method: r.Method, body: string(body), header: r.Header.Clone(),
			send: make(chan string), end: make(chan struct{}), gone: make(chan struct{}),
		}
		defer close(c.gone)
		w.Header().Set("Content-Type", "text/event-stream; charset=utf-8")
		w.Header().Set("Cache-Control", "no-cache, no-store, must-revalidate")
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		select {
		case m.conns <- c:
		case <-m.quit:
			return
		}
		for {
			select {
			case s := <-c.send:
				io.WriteString(w, s)
				w.(http.Flusher).Flush()
			case <-c.end:
				return
			case <-r.Context().Done():
				return
			case <-m.quit:
				return
			}
		}
	}))
	t.Cleanup(func() {
		close(m.quit)
		m.Close()
	})
	return m
}

func (m *mockStream) await(t *testing.T) *mockConn {
	t.Helper()
	select {
	case c := <-m.conns:
		return c
	case <-time.After(patience):
		t.Fatal("the client did not connect")
		return nil
	}
}

func (c *mockConn) write(t *testing.T, chunks ...string) {
	t.Helper()
	for _, s := range chunks {
		select {
		case c.send <- s:
		case <-c.gone:
			t.Fatal("the connection is gone")
		}
	}
}

// callbacks records what the service posts to callbackUrl/N.
type callbacks struct {
	*httptest.Server
	path string

	mu      sync.Mutex
	msgs    map[int]message
	errs    []string
	arrived chan struct{}
	next    int
}

func newCallbacks(t *testing.T) *callbacks {
	cb := &callbacks{path: "/endpoints/7", msgs: make(map[int]message), arrived: make(chan struct{}, 1), next: 1}
	cb.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var m message
		err := json.NewDecoder(r.Body).Decode(&m)
		n, nerr := strconv.Atoi(strings.TrimPrefix(r.URL.Path, cb.path+"/"))
		cb.mu.Lock()
		switch _, dup := cb.msgs[n]; {
		case r.Method != http.MethodPost || err != nil || nerr != nil || n < 1:
			cb.errs = append(cb.errs, r.Method+" "+r.URL.Path)
		case dup:
			cb.errs = append(cb.errs, "duplicate callback "+r.URL.Path)
		default:
			cb.msgs[n] = m
		}
		cb.mu.Unlock()
		select {
		case cb.arrived <- struct{}{}:
		default:
		}
		w.WriteHeader(http.StatusAccepted)
	}))
	t.Cleanup(func() {
		cb.Close()
		cb.mu.Lock()
		defer cb.mu.Unlock()
		for _, e := range cb.errs {
			t.Errorf("bad callback: %s", e)
		}
	})
	return cb
}

func (cb *callbacks) url() string { return cb.URL + cb.path }

// await returns the next message in callback order: a missing number stalls
// it, as it stalls the harness.
func (cb *callbacks) await(t *testing.T) message {
	t.Helper()
	deadline := time.After(patience)
	for {
		cb.mu.Lock()
		m, ok := cb.msgs[cb.next]
		if ok {
			cb.next++
		}
		cb.mu.Unlock()
		if ok {
			return m
		}
		select {
		case <-cb.arrived:
		case <-deadline:
			t.Fatalf("no callback %d", cb.next)
		}
	}
}

// awaitEvent returns the next message, which must be an event; like the
// harness's IgnoreErrorHere, skipOneError lets one error come first.
func (cb *callbacks) awaitEvent(t *testing.T, skipOneError bool) eventMessage {
	t.Helper()
	m := cb.await(t)
	if skipOneError && m.Kind == "error" {
		m = cb.await(t)
	}
	if m.Kind != "event" || m.Event == nil {
		t.Fatalf("got %+v, want an event", m)
	}
	return *m.Event
}

func (cb *callbacks) count() int {
	cb.mu.Lock()
	defer cb.mu.Unlock()
	return len(cb.msgs)
}

type fixture struct {
	svc *service
	api *httptest.Server
}

func newFixture(t *testing.T) *fixture {
	f := &fixture{svc: newService(log.New(io.Discard, "", 0))}
	f.api = httptest.NewServer(f.svc)
	t.Cleanup(func() {
		f.api.Close()
		f.svc.Close()
	})
	return f
}

func (f *fixture) do(t *testing.T, method, url string, body any) *http.Response {
	t.Helper()
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, url, r)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := f.api.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

// create starts a client as the harness does and deletes it when the test
// ends, before the mock endpoints close.
func (f *fixture) create(t *testing.T, params map[string]any) string {
	t.Helper()
	resp := f.do(t, http.MethodPost, f.api.URL+"/", params)
	loc := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusCreated || loc == "" {
		t.Fatalf("create: %s, Location %q", resp.Status, loc)
	}
	t.Cleanup(func() { f.do(t, http.MethodDelete, f.api.URL+loc, nil) })
	return f.api.URL + loc
}

// startClient sets up what one harness test has, a mock stream, a callback
// endpoint and the service, and creates a client of the mock stream with
// params. It returns them and the client's Location.
func startClient(t *testing.T, params map[string]any) (*mockStream, *callbacks, *fixture, string) {
	stream, cb, f := newMockStream(t), newCallbacks(t), newFixture(t)
	params["streamUrl"], params["callbackUrl"] = stream.URL, cb.url()
	return stream, cb, f, f.create(t, params)
}

func TestServiceStatus(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	resp, err := f.api.Client().Get(f.api.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var info struct{ Capabilities []string }
	if err := json.NewDecoder(resp.Body).Decode(&info); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("%s, %v", resp.Status, err)
	}
	have := strings.Join(info.Capabilities, ",")
	for _, c := range []string{"comments", "bom", "headers", "last-event-id", "post", "report", "read-timeout",
		"restart", "server-directed-shutdown-request", "204", "empty-or-missing-location"} {
		if !strings.Contains(","+have+",", ","+c+",") {
			t.Errorf("capability %q missing from %s", c, have)
		}
	}
}

func TestServiceParsing(t *testing.T) {
	t.Parallel()
	const bom = "\xEF\xBB\xBF"
	comment := func(s string) message { return message{Kind: "comment", Comment: &s} }
	event := func(typ, data, id string) message {
		return message{Kind: "event", Event: &eventMessage{Type: typ, Data: data, ID: id}}
	}
	tests := []struct {
		name   string
		chunks []string
		want   []message
	}{
		{
			name:   "comments and events in order, id persists",
			chunks: []string{":Hello\n", "data: a\n\n", "id: x\nevent: greeting\ndata: b\n\n", "data: c\n\n", ":bye\n"},
			want:   []message{comment("Hello"), event("message", "a", ""), event("greeting", "b", "x"), event("message", "c", "x"), comment("bye")},
		},
		{
			name:   "BOM split byte by byte, later BOM kept",
			chunks: []string{"\xEF", "\xBB", "\xBF", ":comment\n", "data: Hello\n\n", "data: " + bom + "Second\n\n"},
			want:   []message{comment("comment"), event("message", "Hello", ""), event("message", bom+"Second", "")},
		},
		{
			name:   "CR LF split over chunks, NUL id ignored, empty id resets",
			chunks: []string{"id: 1\rdata: a\r", "\n\r", "\nid: a\x00bc\ndata: b\n\nid: \ndata: c\n\n"},
			want:   []message{event("message", "a", "1"), event("message", "b", "1"), event("message", "c", "")},
		},
		{
			name:   "100 events in one chunk",
			chunks: []string{strings.Repeat("data: x\n\n", 100)},
			want: func() []message {
				var m []message
				for range 100 {
					m = append(m, event("message", "x", ""))
				}
				return m
			}(),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			stream, cb, _, _ := startClient(t, map[string]any{"tag": tt.name})
			stream.await(t).write(t, tt.chunks...)
			for i, want := range tt.want {
				got := cb.await(t)
				wj, _ := json.Marshal(want)
				gj, _ := json.Marshal(got)
				if !bytes.Equal(wj, gj) {
					t.Errorf("callback %d = %s, want %s", i+1, gj, wj)
				}
			}
		})
	}
}

func TestServiceReconnection(t *testing.T) {
	t.Parallel()
	stream, cb, _, _ := startClient(t, map[string]any{"initialDelayMs": 0, "readTimeoutMs": nil})

	c1 := stream.await(t)
	if _, ok := c1.header["Last-Event-Id"]; ok {
		t.Error("first request sent Last-Event-ID")
	}
	c1.write(t, "id: abc\ndata: Hello\n\nid: def\ndata: Goodbye")
	if e := cb.awaitEvent(t, false); e.ID != "abc" || e.Data != "Hello" {
		t.Errorf("event = %+v", e)
	}
	close(c1.end)

	c2 := stream.await(t)
	if got := c2.header.Get("Last-Event-Id"); got != "abc" {
		t.Errorf("Last-Event-ID = %q, want abc", got)
	}
	c2.write(t, "data: We meet again\n\n")
	if e := cb.awaitEvent(t, true); e.ID != "abc" || e.Data != "We meet again" {
		t.Errorf("event after the partial one = %+v", e)
	}
	c2.write(t, "id: \ndata: reset\n\n")
	if e := cb.awaitEvent(t, false); e.ID != "" {
		t.Errorf("event = %+v, want an empty ID", e)
	}
	close(c2.end)

	c3 := stream.await(t)
	if v, ok := c3.header["Last-Event-Id"]; ok {
		t.Errorf("Last-Event-ID %q sent after an empty id", v)
	}
	c3.write(t, "data: third\n\n")
	if e := cb.awaitEvent(t, true); e.Data != "third" {
		t.Errorf("event = %+v", e)
	}
}

func TestServiceRestart(t *testing.T) {
	t.Parallel()
	stream, cb, f, loc := startClient(t, map[string]any{"initialDelayMs": 0})
	c1 := stream.await(t)
	c1.write(t, "id: 1\ndata: Hello\n\n")
	cb.awaitEvent(t, false)

	if resp := f.do(t, http.MethodPost, loc, map[string]string{"command": "restart"}); resp.StatusCode >= 300 {
		t.Fatalf("restart: %s", resp.Status)
	}
	c2 := stream.await(t)
	<-c1.gone
	if got := c2.header.Get("Last-Event-Id"); got != "1" {
		t.Errorf("Last-Event-ID after restart = %q, want 1", got)
	}
	c2.write(t, "data: Thanks\n\n")
	if e := cb.awaitEvent(t, false); e.Data != "Thanks" { // no error may come first
		t.Errorf("event = %+v", e)
	}
}

func TestServiceRequest(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		params map[string]any
		method string
		body   string
		header map[string]string // "" means absent
	}{
		{
			name:   "defaults",
			params: map[string]any{},
			method: "GET",
			header: map[string]string{"Accept": "text/event-stream", "Cache-Control": "no-cache", "Last-Event-Id": ""},
		},
		{
			name: "POST with body, headers and last event ID",
			params: map[string]any{
				"method": "POST", "body": `{"hello": "world"}`, "lastEventId": "abc",
				"headers": map[string]string{"content-type": "application/json; charset=utf-8", "header-name-1": "value-1"},
			},
			method: "POST",
			body:   `{"hello": "world"}`,
			header: map[string]string{"Content-Type": "application/json; charset=utf-8", "Header-Name-1": "value-1", "Last-Event-Id": "abc"},
		},
		{
			name:   "REPORT",
			params: map[string]any{"method": "REPORT", "body": "q"},
			method: "REPORT",
			body:   "q",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.params["initialDelayMs"] = 0
			stream, _, _, _ := startClient(t, tt.params)
			c1 := stream.await(t)
			close(c1.end)
			c2 := stream.await(t) // the body is sent again
			for i, c := range []*mockConn{c1, c2} {
				if c.method != tt.method || c.body != tt.body {
					t.Errorf("request %d: %s %q, want %s %q", i+1, c.method, c.body, tt.method, tt.body)
				}
				for k, v := range tt.header {
					if got := c.header.Get(k); got != v {
						t.Errorf("request %d: %s = %q, want %q", i+1, k, got, v)
					}
				}
			}
		})
	}
}

func TestServiceReadTimeout(t *testing.T) {
	t.Parallel()
	// The timeout also runs while the test writes the first event: on a
	// loaded machine that can take a good part of a second.
	stream, cb, _, _ := startClient(t, map[string]any{"initialDelayMs": 0, "readTimeoutMs": 1500})
	stream.await(t).write(t, "data: Hello\n\n")
	if e := cb.awaitEvent(t, false); e.Data != "Hello" {
		t.Errorf("event = %+v", e)
	}
	if m := cb.await(t); m.Kind != "error" || m.Error == "" {
		t.Errorf("got %+v, want an error", m)
	}
	stream.await(t)
}

// endpoint serves h and counts its requests.
func endpoint(t *testing.T, h http.HandlerFunc) (*httptest.Server, *atomic.Int32) {
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		h(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv, &n
}

func TestService204Halts(t *testing.T) {
	t.Parallel()
	srv, requests := endpoint(t, func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	cb, f := newCallbacks(t), newFixture(t)
	loc := f.create(t, map[string]any{"streamUrl": srv.URL, "callbackUrl": cb.url(), "initialDelayMs": 0})

	// The client must stop on its own: its goroutine ends without a DELETE.
	f.svc.mu.Lock()
	st := f.svc.streams[loc[strings.LastIndex(loc, "/")+1:]]
	f.svc.mu.Unlock()
	select {
	case <-st.done:
	case <-time.After(patience):
		t.Fatal("the client did not stop after a 204")
	}
	if n := requests.Load(); n != 1 {
		t.Errorf("%d requests, want 1", n)
	}
	if n := cb.count(); n != 0 {
		t.Errorf("%d callbacks after a 204, want none", n)
	}
}

func TestServiceRedirects(t *testing.T) {
	t.Parallel()
	for _, status := range []int{http.StatusMovedPermanently, http.StatusTemporaryRedirect} {
		for _, location := range []string{"", "missing", "stream"} {
			t.Run(strconv.Itoa(status)+" "+location, func(t *testing.T) {
				t.Parallel()
				stream, cb, f := newMockStream(t), newCallbacks(t), newFixture(t)
				srv, requests := endpoint(t, func(w http.ResponseWriter, r *http.Request) {
					switch location {
					case "":
						w.Header()["Location"] = []string{""}
					case "stream":
						w.Header().Set("Location", stream.URL)
					}
					w.WriteHeader(status)
				})
				f.create(t, map[string]any{"streamUrl": srv.URL, "callbackUrl": cb.url()})
				if location == "stream" {
					stream.await(t).write(t, "data: hello\n\n")
					if e := cb.awaitEvent(t, false); e.Data != "hello" {
						t.Errorf("event = %+v", e)
					}
					return
				}
				if m := cb.await(t); m.Kind != "error" {
					t.Errorf("got %+v, want an error", m)
				}
				if n := requests.Load(); n != 1 {
					t.Errorf("%d requests to the redirecting endpoint, want 1", n)
				}
			})
		}
	}
}

func TestServiceDelete(t *testing.T) {
	t.Parallel()
	stream, cb, f, loc := startClient(t, map[string]any{"initialDelayMs": 0})
	c := stream.await(t)
	c.write(t, "data: a\n\n")
	cb.await(t)
	if resp := f.do(t, http.MethodDelete, loc, nil); resp.StatusCode != http.StatusNoContent {
		t.Errorf("DELETE: %s", resp.Status)
	}
	<-c.gone // the connection was closed
	if n := cb.count(); n != 1 {
		t.Errorf("%d callbacks, want 1: a deleted stream reports nothing", n)
	}
	if resp := f.do(t, http.MethodDelete, loc, nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("second DELETE: %s", resp.Status)
	}
	if resp := f.do(t, http.MethodPost, loc, map[string]string{"command": "restart"}); resp.StatusCode != http.StatusNotFound {
		t.Errorf("restart after DELETE: %s", resp.Status)
	}
}

func TestServiceBadRequests(t *testing.T) {
	t.Parallel()
	stream, cb, f := newMockStream(t), newCallbacks(t), newFixture(t)
	for _, params := range []any{
		"not an object",
		map[string]any{"callbackUrl": cb.url()},
		map[string]any{"streamUrl": "ftp://x", "callbackUrl": cb.url()},
		map[string]any{"streamUrl": stream.URL, "callbackUrl": cb.url(), "initialDelayMs": -1},
	} {
		if resp := f.do(t, http.MethodPost, f.api.URL+"/", params); resp.StatusCode != http.StatusBadRequest {
			t.Errorf("create %v: %s, want 400", params, resp.Status)
		}
	}
	loc := f.create(t, map[string]any{"streamUrl": stream.URL, "callbackUrl": cb.url()})
	if resp := f.do(t, http.MethodPost, loc, map[string]string{"command": "dance"}); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("unknown command: %s, want 400", resp.Status)
	}
	if resp := f.do(t, http.MethodPost, f.api.URL+"/streams/999", map[string]string{"command": "restart"}); resp.StatusCode != http.StatusNotFound {
		t.Errorf("unknown stream: %s, want 404", resp.Status)
	}
}

func TestServiceQuit(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	if resp := f.do(t, http.MethodDelete, f.api.URL+"/", nil); resp.StatusCode >= 300 {
		t.Errorf("DELETE /: %s", resp.Status)
	}
	select {
	case <-f.svc.Done():
	case <-time.After(patience):
		t.Error("Done not closed")
	}
}
