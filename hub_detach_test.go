package sse_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/b2ce5911/sse"
)

// wireStream opens a stream of h with a plain TCP client, reads the response
// head and returns the connection and a reader at the body's first byte.
func wireStream(t *testing.T, h *sse.Hub, ts *httptest.Server, path string) (net.Conn, *bufio.Reader) {
	t.Helper()
	n := h.Stats().Subscriptions
	c, err := net.Dial("tcp", ts.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: x\r\n\r\n")
	waitSubscribed(t, h, n)
	c.SetReadDeadline(time.Now().Add(30 * time.Second)) // a bound on a hang
	br := bufio.NewReader(c)
	status, err := br.ReadString('\n')
	if err != nil || status != "HTTP/1.1 200 OK\r\n" {
		t.Fatalf("status line %q, %v", status, err)
	}
	chunked := false
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if line == "\r\n" {
			break
		}
		if strings.EqualFold(line, "Transfer-Encoding: chunked\r\n") {
			chunked = true
		}
	}
	if !chunked {
		t.Fatal("the response is not chunked")
	}
	return c, br
}

// readChunk reads one chunk of a chunked body strictly: its size line, its
// bytes and their CRLF. The last chunk returns io.EOF, once its final CRLF
// is read.
func readChunk(br *bufio.Reader) ([]byte, error) {
	line, err := br.ReadString('\n')
	if err != nil {
		return nil, err
	}
	size, err := strconv.ParseUint(strings.TrimSuffix(line, "\r\n"), 16, 32)
	if err != nil || !strings.HasSuffix(line, "\r\n") {
		return nil, fmt.Errorf("chunk size line %q", line)
	}
	b := make([]byte, size+2)
	if _, err := io.ReadFull(br, b); err != nil {
		return nil, err
	}
	if string(b[size:]) != "\r\n" {
		return nil, fmt.Errorf("chunk of %d bytes ends with %q", size, b[size:])
	}
	if size == 0 {
		return nil, io.EOF
	}
	return b[:size], nil
}

// TestHubDetachedWireIsChunkedHTTP reads a detached stream's bytes as they
// are on the wire: valid chunks, no byte lost or doubled at the hijack,
// heartbeats, and a clean last chunk when Shutdown ends it.
func TestHubDetachedWireIsChunkedHTTP(t *testing.T) {
	t.Parallel()
	h := &sse.Hub{Logger: quiet, Upgrader: sse.Upgrader{RetryTime: time.Second, RetryJitter: -1, Heartbeat: 20 * time.Millisecond}}
	ts := hubServer(t, h)
	c, br := wireStream(t, h, ts, "/?topic=t")
	var body strings.Builder
	read := func(until string) {
		t.Helper()
		for !strings.Contains(body.String(), until) {
			b, err := readChunk(br)
			if err != nil {
				t.Fatalf("after %q: %v", body.String(), err)
			}
			body.Write(b)
		}
	}
	read(":\n") // a heartbeat: the stream was idle
	ids := publish(t, h, "t", "one", "two")
	read("data: two\n\n")
	// Heartbeats may come between any two blocks.
	var lines []string
	for _, l := range strings.SplitAfter(body.String(), "\n") {
		if l != ":\n" {
			lines = append(lines, l)
		}
	}
	got := strings.Join(lines, "")
	if !strings.HasPrefix(got, "retry: 1000\nid: ") ||
		!strings.HasSuffix(got, "\n\nid: "+ids[0]+"\ndata: one\n\nid: "+ids[1]+"\ndata: two\n\n") {
		t.Fatalf("body %q", body.String())
	}
	shut := make(chan error, 1)
	go func() { shut <- h.Shutdown(context.Background()) }()
	for {
		_, err := readChunk(br)
		if err == io.EOF {
			break // the last chunk
		}
		if err != nil {
			t.Fatalf("before the last chunk: %v", err)
		}
	}
	if n, err := br.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Fatalf("after the last chunk: %d bytes, %v; want the connection closed", n, err)
	}
	if err := <-shut; err != nil {
		t.Fatal(err)
	}
	c.Close()
}

// TestHubDetachedBehindReverseProxy: httputil.ReverseProxy forwards a
// detached stream and its clean end.
func TestHubDetachedBehindReverseProxy(t *testing.T) {
	t.Parallel()
	h := &sse.Hub{Logger: quiet}
	ts := hubServer(t, h)
	u, _ := url.Parse(ts.URL)
	proxy := httptest.NewServer(httputil.NewSingleHostReverseProxy(u))
	t.Cleanup(proxy.Close)
	before := h.Stats().Subscriptions
	_, d := open(t, proxy.Client(), proxy.URL+"?topic=t", nil)
	waitSubscribed(t, h, before)
	publish(t, h, "t", "one", "two")
	for _, want := range []string{"one", "two"} {
		if got := next(t, d); got.data != want {
			t.Fatalf("got %+v, want %s", got, want)
		}
	}
	if err := h.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if e, err := d.Decode(); err != io.EOF {
		t.Fatalf("after Shutdown: %v, %v; want io.EOF", e, err)
	}
}

// TestHubDetachedClientLeaves: the poller notices a client that closed its
// connection: the subscriber goes, its share of MaxSubscribers comes back,
// and no goroutine stays.
func TestHubDetachedClientLeaves(t *testing.T) {
	h := &sse.Hub{Logger: quiet, MaxSubscribers: 1}
	ts := hubServer(t, h)
	baseline := runtime.NumGoroutine()
	for i := range 3 { // each needs the place the one before left
		c, _ := wireStream(t, h, ts, "/?topic=t")
		if n := h.Subscribers("t"); n != 1 {
			t.Fatalf("stream %d: %d subscribers", i, n)
		}
		c.Close()
		waitStats(t, h, "saw the client leave", func(s sse.HubStats) bool { return s.Subscribers == 0 })
	}
	waitGoroutines(t, baseline)
}

// waitGoroutines waits, 30 s at most, until no more goroutines run than
// n and a few of net/http's that may be ending.
func waitGoroutines(t *testing.T, n int) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); runtime.NumGoroutine() > n+2; {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines, %d before", runtime.NumGoroutine(), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestHubDetachedIdleHoldsNoGoroutine: 200 idle detached streams hold no
// goroutine each; on the handler path each would hold two.
func TestHubDetachedIdleHoldsNoGoroutine(t *testing.T) {
	const n = 200
	h := &sse.Hub{Logger: quiet}
	ts := hubServer(t, h)
	publish(t, h, "t", "warm")
	baseline := runtime.NumGoroutine()
	for range n {
		c, err := net.Dial("tcp", ts.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		io.WriteString(c, "GET /?topic=t HTTP/1.1\r\nHost: x\r\n\r\n")
	}
	waitStats(t, h, "counted the streams", func(s sse.HubStats) bool { return s.Subscribers == n })
	// The poller's goroutine, and a few of net/http's that are ending or
	// of writers that are sending the streams' first bytes.
	for deadline := time.Now().Add(30 * time.Second); runtime.NumGoroutine()-baseline > 20; {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines for %d idle streams, %d before", runtime.NumGoroutine(), n, baseline)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if s := h.Stats(); s.Subscribers != n {
		t.Fatalf("stats %+v: want %d subscribers", s, n)
	}
}

// fill publishes large events on t until cond holds, or fails after 30 s.
func fill(t *testing.T, h *sse.Hub, what string, cond func() bool) {
	t.Helper()
	payload := strings.Repeat("x", 64<<10)
	for i, deadline := 0, time.Now().Add(30*time.Second); !cond(); i++ {
		if time.Now().After(deadline) {
			t.Fatalf("%s never happened: %d events published, stats %+v", what, i, h.Stats())
		}
		if _, err := h.Publish(context.Background(), "t", sse.Message{Data: []byte(payload)}); err != nil {
			t.Fatal(err)
		}
		if i > 256 { // past what socket buffers hold: wait for the writer
			time.Sleep(5 * time.Millisecond)
		}
	}
}

// TestHubDetachedFrozenClientCut: a detached client that stops reading is
// cut by its write deadline, not held, and not evicted.
func TestHubDetachedFrozenClientCut(t *testing.T) {
	t.Parallel()
	h := &sse.Hub{History: 1 << 14, HistoryBytes: 1 << 30, Logger: quiet, Upgrader: sse.Upgrader{WriteTimeout: 100 * time.Millisecond}}
	ts := hubServer(t, h)
	rawSubscribe(t, h, ts, "/?topic=t")
	fill(t, h, "the write deadline cut", func() bool { return h.Subscribers("t") == 0 })
	if s := h.Stats(); s.Evicted != 0 {
		t.Fatalf("stats %+v: the deadline should have cut it, not an eviction", s)
	}
}

// TestHubDetachedEvicted: a detached client that lags beyond the history
// is evicted, its stuck write cut short (its write timeout is an hour).
func TestHubDetachedEvicted(t *testing.T) {
	t.Parallel()
	h := &sse.Hub{History: 8, Logger: quiet, Upgrader: sse.Upgrader{WriteTimeout: time.Hour}}
	ts := hubServer(t, h)
	rawSubscribe(t, h, ts, "/?topic=t")
	fill(t, h, "the eviction", func() bool { return h.Stats().Evicted == 1 })
	waitStats(t, h, "let the evicted stream go", func(s sse.HubStats) bool { return s.Subscribers == 0 })
	if n := h.Subscribers("t"); n != 0 {
		t.Fatalf("%d subscribers after the eviction", n)
	}
}

// TestHubCloseFrozenDetached: Close does not wait for a detached writer
// stuck on a client that stopped reading (its write timeout is an hour).
func TestHubCloseFrozenDetached(t *testing.T) {
	t.Parallel()
	h := &sse.Hub{History: 1 << 14, HistoryBytes: 1 << 30, Logger: quiet, Upgrader: sse.Upgrader{WriteTimeout: time.Hour}}
	ts := hubServer(t, h)
	c := rawSubscribe(t, h, ts, "/?topic=t")
	// 16 MB, more than loopback buffers hold: the writer is stuck.
	for range 256 {
		publish(t, h, "t", strings.Repeat("x", 64<<10))
	}
	closed := make(chan error, 1)
	go func() { closed <- h.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Close waited for a frozen client")
	}
	if s := h.Stats(); s.Subscribers != 0 {
		t.Fatalf("stats %+v after Close", s)
	}
	c.Close()
}

// TestHubShutdownDrainsDetached: events pending for a detached stream whose
// client reads slowly all arrive before Shutdown ends it, cleanly.
func TestHubShutdownDrainsDetached(t *testing.T) {
	t.Parallel()
	const total = 200
	h := &sse.Hub{History: 2 * total, HistoryBytes: 1 << 30, Logger: quiet}
	ts := hubServer(t, h)
	before := h.Stats().Subscriptions
	resp, d := open(t, ts.Client(), ts.URL+"?topic=t", nil)
	waitSubscribed(t, h, before)
	payload := strings.Repeat("x", 32<<10) // 6.4 MB in all: more than the sockets hold
	for i := range total {
		publish(t, h, "t", fmt.Sprint(i, payload))
	}
	shut := make(chan error, 1)
	go func() { shut <- h.Shutdown(context.Background()) }()
	for i := range total {
		e, err := d.Decode()
		if err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
		if string(e.Bytes()) != fmt.Sprint(i, payload) {
			t.Fatalf("event %d: wrong data", i)
		}
	}
	if _, err := d.Decode(); err != io.EOF {
		t.Fatalf("after the last event: %v, want io.EOF (a clean end)", err)
	}
	if err := <-shut; err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
}

// TestHubHammerDetachedAndAttached: subscribers of one to three topics,
// half of them on HTTP/1.1 over TLS (detached) and half on HTTP/2 (on the
// handler path), reconnecting with Last-Event-ID while several publishers
// publish: each gets every event of its topics once, in order.
func TestHubHammerDetachedAndAttached(t *testing.T) {
	t.Parallel()
	const perTopic = 30
	topics := []string{"a", "b", "c"}
	h := &sse.Hub{History: 4 * perTopic, Logger: quiet}
	ts := httptest.NewUnstartedServer(h)
	ts.EnableHTTP2 = true
	ts.StartTLS()
	t.Cleanup(ts.Close)
	t.Cleanup(func() { h.Close() })
	h2 := ts.Client()
	h1tr := h2.Transport.(*http.Transport).Clone()
	h1tr.ForceAttemptHTTP2 = false
	h1tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	h1tr.TLSClientConfig.NextProtos = []string{"http/1.1"}
	t.Cleanup(h1tr.CloseIdleConnections)
	h1 := &http.Client{Transport: h1tr}

	sets := [][]string{{"a"}, {"a", "b"}, {"b", "c"}, {"a", "b", "c"}, {"c"}, {"c", "a"}}
	type client struct {
		set   []string
		http  *http.Client
		proto int
	}
	var clients []client
	for _, set := range sets {
		clients = append(clients, client{set, h1, 1}, client{set, h2, 2})
	}
	connect := func(c client, lastID string) (*http.Response, error) {
		q := url.Values{"topic": c.set}
		req, _ := http.NewRequest("GET", ts.URL+"?"+q.Encode(), nil)
		if lastID != "" {
			req.Header.Set("Last-Event-ID", lastID)
		}
		resp, err := c.http.Do(req)
		if err == nil && resp.ProtoMajor != c.proto {
			resp.Body.Close()
			err = fmt.Errorf("served over %s, want HTTP/%d", resp.Proto, c.proto)
		}
		return resp, err
	}
	// The first connections are in before anything is published.
	first := make([]*http.Response, len(clients))
	for i, c := range clients {
		before := h.Stats().Subscriptions
		resp, err := connect(c, "")
		if err != nil {
			t.Fatal(err)
		}
		first[i] = resp
		waitSubscribed(t, h, before)
	}
	var wg sync.WaitGroup
	for i, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			name := fmt.Sprint(c.set, " HTTP/", c.proto)
			resp, lastID := first[i], ""
			next := map[string]int{}
			var last uint64
			for conn, got := 0, 0; got < len(c.set)*perTopic; conn++ {
				if conn > 0 {
					var err error
					if resp, err = connect(c, lastID); err != nil {
						t.Errorf("%s: %v", name, err)
						return
					}
				}
				d := sse.NewDecoder(resp.Body)
				for range 1 + (conn*7+i)%31 {
					if got == len(c.set)*perTopic {
						break
					}
					e, err := d.Decode()
					if err != nil {
						t.Errorf("%s, connection %d: %v", name, conn, err)
						resp.Body.Close()
						return
					}
					seq := memSeq(t, e.ID)
					topic, n, _ := strings.Cut(string(e.Bytes()), ":")
					if e.Type == "reset" || seq <= last || n != strconv.Itoa(next[topic]) {
						t.Errorf("%s: got %s %q (%s) after seq %d, want %s:%d next", name, e.Type, e.Bytes(), e.ID, last, topic, next[topic])
						resp.Body.Close()
						return
					}
					last, lastID = seq, e.ID
					next[topic]++
					got++
				}
				resp.Body.Close()
			}
		}()
	}
	publishPerTopic(t, h, topics, perTopic)
	wg.Wait()
	waitStats(t, h, "saw every client leave", func(s sse.HubStats) bool { return s.Subscribers == 0 })
	if s := h.Stats(); s.Evicted != 0 {
		t.Fatalf("stats %+v: no one should be evicted", s)
	}
}

// TestHubHTTP10StreamStaysAttached: a HTTP/1.0 response has no chunks, so
// its stream is not detached (which would write chunks into it).
func TestHubHTTP10StreamStaysAttached(t *testing.T) {
	t.Parallel()
	h := &sse.Hub{Logger: quiet}
	ts := hubServer(t, h)
	before := h.Stats().Subscriptions
	resp := rawStream(t, ts.Listener.Addr().String(), "GET /?topic=t HTTP/1.0\r\nHost: x\r\n\r\n")
	waitSubscribed(t, h, before)
	if resp.StatusCode != http.StatusOK || len(resp.TransferEncoding) != 0 {
		t.Fatalf("status %d, transfer encoding %q", resp.StatusCode, resp.TransferEncoding)
	}
	ids := publish(t, h, "t", "one")
	var body []byte
	for !strings.Contains(string(body), "data: one\n\n") {
		b := make([]byte, 512)
		n, err := resp.Body.Read(b)
		if err != nil {
			t.Fatalf("after %q: %v", body, err)
		}
		body = append(body, b[:n]...)
	}
	// A heartbeat line, the position, the event, and nothing else (such
	// as chunk sizes and CRLFs).
	if got := strings.SplitN(string(body), "\n", 3); len(got) != 3 || got[0] != ":" ||
		!strings.HasPrefix(got[1], "id: ") || !strings.HasSuffix(got[2], "\nid: "+ids[0]+"\ndata: one\n\n") || strings.Contains(string(body), "\r") {
		t.Fatalf("body %q", body)
	}
}
