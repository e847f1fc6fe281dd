package sse_test

import (
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/b2ce5911/sse"
)

// streamServer runs handle for every request on a loopback server and
// returns the server; it is closed when the test ends.
func streamServer(t *testing.T, u *sse.Upgrader, handle func(*sse.Conn, *http.Request)) *httptest.Server {
	t.Helper()
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := u.Upgrade(w, r)
		if err != nil {
			t.Errorf("Upgrade: %v", err)
			return
		}
		defer c.Close() // as every handler must: no heartbeat may write after it returns
		handle(c, r)
	}))
	t.Cleanup(ts.Close)
	return ts
}

// open connects to the stream at url and returns the response and a
// decoder over its body; both end with the test.
func open(t *testing.T, client *http.Client, url string, header http.Header) (*http.Response, *sse.Decoder) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp, sse.NewDecoder(resp.Body)
}

func next(t *testing.T, d *sse.Decoder) ev {
	t.Helper()
	e, err := d.Decode()
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	return ev{e.ID, e.Type, string(e.Bytes())}
}

func TestUpgradeHeadersBeforeFirstEvent(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	ts := streamServer(t, &sse.Upgrader{RetryTime: 1500 * time.Millisecond, RetryJitter: -1}, func(c *sse.Conn, r *http.Request) {
		<-release
		c.WriteString("first")
	})
	resp, _ := open(t, ts.Client(), ts.URL, nil) // returns once headers are in: nothing was written yet
	defer close(release)
	for k, want := range map[string]string{
		"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
		"X-Accel-Buffering": "no", "Connection": "keep-alive",
	} {
		if got := resp.Header.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	buf := make([]byte, 64)
	n, err := resp.Body.Read(buf) // the retry line is flushed with the headers
	if err != nil || string(buf[:n]) != "retry: 1500\n" {
		t.Fatalf("first bytes %q, %v", buf[:n], err)
	}
}

type point struct {
	XMLName xml.Name `xml:"point" json:"-"`
	X       int      `xml:"x,attr" json:"x"`
	Label   string   `xml:"label" json:"label"`
	Note    string   `xml:",comment" json:"-"` // written raw, line breaks and all
}

func TestConnHelpersRoundTrip(t *testing.T) {
	t.Parallel()
	p := point{X: 3, Label: "line one\nline two\r\nthree\rend", Note: "a comment\nover\nlines"}
	wantJSON, _ := json.Marshal(p)
	wantXML, _ := xml.Marshal(p)
	steps := []struct {
		name  string
		write func(*sse.Conn) error
		want  ev
	}{
		{"Write", func(c *sse.Conn) error { return c.Write([]byte("bytes")) }, ev{"", "message", "bytes"}},
		{"WriteString", func(c *sse.Conn) error { return c.WriteString("a\r\nb\rc\nd") }, ev{"", "message", "a\nb\nc\nd"}},
		{"WriteString empty", func(c *sse.Conn) error { return c.WriteString("") }, ev{"", "message", ""}},
		{"WriteEvent", func(c *sse.Conn) error { return c.WriteEvent("add", []byte("1\n2")) }, ev{"", "add", "1\n2"}},
		{"WriteEventWithID", func(c *sse.Conn) error { return c.WriteEventWithID("7", "add", []byte("x")) }, ev{"7", "add", "x"}},
		{"WriteStringEvent", func(c *sse.Conn) error { return c.WriteStringEvent("del", "") }, ev{"7", "del", ""}},
		{"WriteMessage", func(c *sse.Conn) error {
			return c.WriteMessage(sse.Message{ID: "8", Type: "t", Data: []byte("m"), Retry: time.Second, Comment: "c"})
		}, ev{"8", "t", "m"}},
		{"WriteComment then Write", func(c *sse.Conn) error {
			if err := c.WriteComment("just a comment"); err != nil {
				return err
			}
			return c.WriteString("after comment")
		}, ev{"8", "message", "after comment"}},
		{"WriteJson", func(c *sse.Conn) error { return c.WriteJson(p) }, ev{"8", "message", string(wantJSON)}},
		{"WriteJsonEvent", func(c *sse.Conn) error { return c.WriteJsonEvent("point", p) }, ev{"8", "point", string(wantJSON)}},
		{"WriteXml", func(c *sse.Conn) error { return c.WriteXml(p) }, ev{"8", "message", string(wantXML)}},
		{"WriteXmlEvent", func(c *sse.Conn) error { return c.WriteXmlEvent("point", p) }, ev{"8", "point", string(wantXML)}},
		{"WritePrepared", func(c *sse.Conn) error {
			pm, err := sse.NewPreparedMessage(sse.Message{ID: "9", Data: []byte("once")})
			if err != nil {
				return err
			}
			return c.WritePrepared(pm)
		}, ev{"9", "message", "once"}},
	}
	if !strings.Contains(string(wantXML), "\n") {
		t.Fatal("the XML case must contain a line break to test the splitter")
	}
	ts := streamServer(t, &sse.Upgrader{}, func(c *sse.Conn, r *http.Request) {
		for _, s := range steps {
			if err := s.write(c); err != nil {
				t.Errorf("%s: %v", s.name, err)
			}
		}
	})
	_, d := open(t, ts.Client(), ts.URL, nil)
	for _, s := range steps {
		if got := next(t, d); got != s.want {
			t.Errorf("%s: decoded %q, want %q", s.name, got, s.want)
		}
	}
	if r, ok := d.Retry(); !ok || r != time.Second {
		t.Errorf("retry %v %v", r, ok)
	}
}

func TestConnRejectsInvalidFieldsAndKeepsStreaming(t *testing.T) {
	t.Parallel()
	bad := []struct {
		name  string
		write func(*sse.Conn) error
	}{
		{"id with LF", func(c *sse.Conn) error { return c.WriteEventWithID("1\nevent: x", "t", nil) }},
		{"id with NUL", func(c *sse.Conn) error { return c.WriteEventWithID("1\x00", "t", nil) }},
		{"type with CR", func(c *sse.Conn) error { return c.WriteEvent("t\rdata: x", nil) }},
		{"comment with LF", func(c *sse.Conn) error { return c.WriteComment("a\n\ndata: injected") }},
		{"message comment", func(c *sse.Conn) error { return c.WriteMessage(sse.Message{Comment: "\r\n"}) }},
		{"json marshal error", func(c *sse.Conn) error { return c.WriteJson(make(chan int)) }},
		{"xml marshal error", func(c *sse.Conn) error { return c.WriteXml(make(chan int)) }},
	}
	ts := streamServer(t, &sse.Upgrader{}, func(c *sse.Conn, r *http.Request) {
		for _, b := range bad {
			err := b.write(c)
			if err == nil {
				t.Errorf("%s: no error", b.name)
			}
			if strings.Contains(b.name, "marshal") == errors.Is(err, sse.ErrInvalidField) {
				t.Errorf("%s: error %v", b.name, err)
			}
		}
		c.WriteString("still fine")
	})
	_, d := open(t, ts.Client(), ts.URL, nil)
	if got := next(t, d); got != (ev{"", "message", "still fine"}) {
		t.Fatalf("after rejected writes got %q", got)
	}
}

func TestConnConcurrentWriters(t *testing.T) {
	t.Parallel()
	const writers, each = 8, 200
	ts := streamServer(t, &sse.Upgrader{Heartbeat: time.Millisecond}, func(c *sse.Conn, r *http.Request) {
		var wg sync.WaitGroup
		for w := range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range each {
					if err := c.WriteStringEvent(fmt.Sprint("w", w), fmt.Sprintf("%d\n%d", w, i)); err != nil {
						t.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
	})
	_, d := open(t, ts.Client(), ts.URL, nil)
	seen := make(map[string]int)
	for range writers * each {
		e := next(t, d)
		var w, i int
		if _, err := fmt.Sscanf(e.data, "%d\n%d", &w, &i); err != nil || e.typ != fmt.Sprint("w", w) || i != seen[e.typ] {
			t.Fatalf("event %q out of order or torn (expected #%d of its writer)", e, seen[e.typ])
		}
		seen[e.typ]++
	}
	// Nothing follows. The end may be torn: heartbeats keep coming every
	// millisecond once the writers are done, and the handler's Close cuts
	// one in progress short, which fails net/http's end of the response
	// (the client reads io.ErrUnexpectedEOF): a limit of Close that this
	// test, about writers that interleave, does not guard.
	if e, err := d.Decode(); err != io.EOF && !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("after all events: %v %v", e, err)
	}
}

func TestConnNoticesDisconnect(t *testing.T) {
	t.Parallel()
	result := make(chan error, 1)
	connected := make(chan struct{})
	ts := streamServer(t, &sse.Upgrader{}, func(c *sse.Conn, r *http.Request) {
		close(connected)
		<-c.Done()
		if c.IsOpen() {
			t.Error("IsOpen after Done")
		}
		result <- c.WriteString("too late")
	})
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", ts.URL, nil)
	resp, err := ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	<-connected
	cancel()
	resp.Body.Close()
	if err := <-result; !errors.Is(err, sse.ErrConnectionClosed) {
		t.Fatalf("write after disconnect: %v", err)
	}
}

// frozenClient connects with a tiny receive buffer and never reads.
func frozenClient(t *testing.T, addr string) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	conn.(*net.TCPConn).SetReadBuffer(1024)
	t.Cleanup(func() { conn.Close() })
	if _, err := io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
}

// writeUntilError writes 64 KiB events until a write fails.
func writeUntilError(c *sse.Conn) error {
	chunk := strings.Repeat("x", 64<<10)
	for {
		if err := c.WriteString(chunk); err != nil {
			return err
		}
	}
}

func TestConnWriteTimeoutOnFrozenClient(t *testing.T) {
	t.Parallel()
	result := make(chan error, 1)
	ts := streamServer(t, &sse.Upgrader{WriteTimeout: 100 * time.Millisecond}, func(c *sse.Conn, r *http.Request) {
		result <- writeUntilError(c)
	})
	frozenClient(t, ts.Listener.Addr().String())
	select {
	case err := <-result:
		var ne net.Error
		if !errors.Is(err, sse.ErrConnectionClosed) || !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("write error %v, want a timeout wrapped in ErrConnectionClosed", err)
		}
	case <-time.After(30 * time.Second): // a hang, not a measurement
		t.Fatal("writer still blocked on a client that does not read")
	}
}

func TestConnCloseUnblocksPendingWrite(t *testing.T) {
	t.Parallel()
	result := make(chan error, 1)
	blocked := make(chan *sse.Conn, 1)
	ts := streamServer(t, &sse.Upgrader{WriteTimeout: -1, Heartbeat: -1}, func(c *sse.Conn, r *http.Request) {
		blocked <- c
		result <- writeUntilError(c)
	})
	frozenClient(t, ts.Listener.Addr().String())
	c := <-blocked
	time.Sleep(50 * time.Millisecond) // let the writer fill the buffers and block; not a measurement
	c.Close()
	c.Close() // idempotent
	select {
	case err := <-result:
		if !errors.Is(err, sse.ErrConnectionClosed) {
			t.Fatalf("write error %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Close did not unblock the pending write")
	}
	select {
	case <-c.Done():
	default:
		t.Fatal("Done not closed after Close")
	}
}

func TestUpgradeLastEventID(t *testing.T) {
	t.Parallel()
	ids := make(chan string, 1)
	ts := streamServer(t, &sse.Upgrader{}, func(c *sse.Conn, r *http.Request) { ids <- c.LastEventID() })
	for _, tt := range []struct {
		name, query, header, want string
	}{
		{"none", "", "", ""},
		{"header", "", "41", "41"},
		{"query for a browser's first connect", "?lastEventId=e-5", "", "e-5"},
		{"header wins", "?lastEventId=q", "h", "h"},
	} {
		h := http.Header{}
		if tt.header != "" {
			h.Set("Last-Event-ID", tt.header)
		}
		resp, _ := open(t, ts.Client(), ts.URL+tt.query, h)
		if got := <-ids; got != tt.want {
			t.Errorf("%s: LastEventID() = %q, want %q", tt.name, got, tt.want)
		}
		resp.Body.Close()
	}
}

// plainWriter is a ResponseWriter that cannot flush.
type plainWriter struct{ *httptest.ResponseRecorder }

func (w plainWriter) Header() http.Header         { return w.ResponseRecorder.Header() }
func (w plainWriter) Write(b []byte) (int, error) { return w.ResponseRecorder.Write(b) }
func (w plainWriter) WriteHeader(code int)        { w.ResponseRecorder.WriteHeader(code) }

// wrapper is middleware that hides the Flusher but offers Unwrap.
type wrapper struct{ http.ResponseWriter }

func (w wrapper) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func TestUpgradeStreamingNotSupported(t *testing.T) {
	t.Parallel()
	rec := httptest.NewRecorder()
	w := struct{ http.ResponseWriter }{plainWriter{rec}}
	_, err := sse.Upgrade(w, httptest.NewRequest("GET", "/", nil))
	if !errors.Is(err, sse.ErrStreamingNotSupported) || !errors.Is(err, http.ErrNotSupported) {
		t.Fatalf("err = %v", err)
	}
	if rec.Code != http.StatusInternalServerError {
		t.Fatalf("status %d, want 500", rec.Code)
	}
}

func TestUpgradeThroughMiddlewareWithUnwrap(t *testing.T) {
	t.Parallel()
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := sse.Upgrade(wrapper{w}, r)
		if err != nil {
			t.Error(err)
			return
		}
		defer c.Close()
		c.WriteString("through middleware")
	}))
	t.Cleanup(ts.Close)
	_, d := open(t, ts.Client(), ts.URL, nil)
	if got := next(t, d); got.data != "through middleware" {
		t.Fatalf("got %q", got)
	}
}

func TestUpgradeCheckRequest(t *testing.T) {
	t.Parallel()
	u := &sse.Upgrader{CheckRequest: func(w http.ResponseWriter, r *http.Request) error {
		if r.URL.Query().Get("token") != "ok" {
			return errors.New("bad token")
		}
		w.Header().Set("X-Stream", "yes")
		return nil
	}}
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if c, err := u.Upgrade(w, r); err == nil {
			defer c.Close()
			c.WriteString("welcome")
		}
	}))
	t.Cleanup(ts.Close)
	resp, d := open(t, ts.Client(), ts.URL+"?token=ok", nil)
	if resp.Header.Get("X-Stream") != "yes" || next(t, d).data != "welcome" {
		t.Fatal("accepted request lacks the hook's header or the event")
	}
	resp, _ = open(t, ts.Client(), ts.URL+"?token=no", nil)
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), "bad token") {
		t.Fatalf("rejected request: %d %q", resp.StatusCode, body)
	}
}

// stepServer writes one event per value received on step, so a test can
// prove that each event arrives before the next is written.
func stepServer(t *testing.T) (http.Handler, chan<- string) {
	step := make(chan string)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := sse.Upgrade(w, r)
		if err != nil {
			t.Error(err)
			return
		}
		defer c.Close()
		for {
			select {
			case s := <-step:
				c.WriteString(s)
			case <-c.Done():
				return
			}
		}
	}), step
}

func expectOneByOne(t *testing.T, client *http.Client, url string, step chan<- string) *http.Response {
	t.Helper()
	resp, d := open(t, client, url, nil)
	for i := range 5 {
		want := fmt.Sprint("event ", i)
		step <- want // the next is written only after this one was read
		if got := next(t, d); got.data != want {
			t.Fatalf("got %q, want %q", got.data, want)
		}
	}
	return resp
}

func TestHTTP2OneByOne(t *testing.T) {
	t.Parallel()
	h, step := stepServer(t)
	ts := httptest.NewUnstartedServer(h)
	ts.EnableHTTP2 = true
	ts.StartTLS()
	t.Cleanup(ts.Close)
	resp := expectOneByOne(t, ts.Client(), ts.URL, step)
	if resp.ProtoMajor != 2 || resp.Header.Get("Connection") != "" {
		t.Fatalf("proto %s, Connection %q: want HTTP/2 without connection headers", resp.Proto, resp.Header.Get("Connection"))
	}
}

func TestReverseProxyOneByOne(t *testing.T) {
	t.Parallel()
	h, step := stepServer(t)
	backend := httptest.NewServer(h)
	t.Cleanup(backend.Close)
	target, _ := url.Parse(backend.URL)
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.Transport = backend.Client().Transport
	front := httptest.NewServer(proxy)
	t.Cleanup(front.Close)
	expectOneByOne(t, front.Client(), front.URL, step)
}

// TestConnDoneOnRequestEnd pins that Done closes when the request ends,
// whether Done was first asked for before or after: the Conn watches the
// request only once Done is asked for.
func TestConnDoneOnRequestEnd(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name        string
		askedBefore bool
	}{{"Done asked before the end", true}, {"Done asked after the end", false}} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			req := httptest.NewRequest("GET", "/", nil).WithContext(ctx)
			c, err := (&sse.Upgrader{Heartbeat: -1}).Upgrade(httptest.NewRecorder(), req)
			if err != nil {
				t.Fatal(err)
			}
			if tt.askedBefore {
				select {
				case <-c.Done():
					t.Fatal("Done closed before the request ended")
				default:
				}
			}
			cancel()
			select {
			case <-c.Done():
			case <-time.After(10 * time.Second): // a hang, not a measurement
				t.Fatal("Done not closed after the request ended")
			}
			if c.IsOpen() {
				t.Fatal("IsOpen after the request ended")
			}
			if err := c.WriteString("x"); !errors.Is(err, sse.ErrConnectionClosed) {
				t.Fatalf("write after the request ended: %v", err)
			}
		})
	}
}

// TestHTTP2IdleStreamOutlivesWriteTimeout checks that a write deadline does
// not outlive its write on HTTP/2, where it is a timer that resets the
// stream when it fires, written to or not: a stream silent for longer than
// WriteTimeout, with heartbeats at the defaults' ratio or none, still sends
// its next event. The handler's idleness is a sleep, which a slow machine
// only lengthens.
func TestHTTP2IdleStreamOutlivesWriteTimeout(t *testing.T) {
	t.Parallel()
	// The cases run at once in this test's slot of -parallel (GOMAXPROCS
	// slots): each spends its time waiting, in real time.
	var wg sync.WaitGroup
	for _, tt := range []struct {
		name string
		u    sse.Upgrader
	}{
		// WriteTimeout leaves a loaded machine ample time for each write,
		// which must not time out either.
		{"heartbeat at 1.5 × WriteTimeout", sse.Upgrader{WriteTimeout: 300 * time.Millisecond, Heartbeat: 450 * time.Millisecond}},
		{"no heartbeat", sse.Upgrader{WriteTimeout: 300 * time.Millisecond, Heartbeat: -1}},
	} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t.Run(tt.name, func(t *testing.T) {
				writeErr := make(chan error, 1)
				ts := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					c, err := tt.u.Upgrade(w, r)
					if err != nil {
						writeErr <- err
						return
					}
					defer c.Close()
					time.Sleep(time.Second) // silent for over 3 × WriteTimeout: twice as long as a deadline reaches
					writeErr <- c.WriteString("after idle")
				}))
				ts.EnableHTTP2 = true
				ts.StartTLS()
				defer ts.Close()
				resp, d := open(t, ts.Client(), ts.URL, nil)
				if resp.ProtoMajor != 2 {
					t.Fatalf("served over %s, want HTTP/2", resp.Proto)
				}
				e, err := d.Decode()
				if err != nil {
					t.Fatalf("client: %v (server's write: %v)", err, <-writeErr)
				}
				if string(e.Bytes()) != "after idle" {
					t.Fatalf("event %q, want %q", e.Bytes(), "after idle")
				}
				if err := <-writeErr; err != nil {
					t.Fatal(err)
				}
			})
		}()
	}
	wg.Wait()
}
