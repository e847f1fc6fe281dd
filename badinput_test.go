package sse_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/b2ce5911/sse"
)

// repeatReader is an endless stream of one byte: a 100 MB line costs no
// memory to produce.
type repeatReader byte

func (r repeatReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(r)
	}
	return len(p), nil
}

// stubStream sends r as an event stream, until it ends or the client goes
// away.
func stubStream(r func() io.Reader) stubStep {
	return func(w http.ResponseWriter, _ *http.Request, _ <-chan struct{}) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.Copy(w, r())
	}
}

// hugeLine is an event, then a 100 MB data line, then an event that must
// never be seen.
func hugeLine() io.Reader {
	return io.MultiReader(strings.NewReader("id: 1\ndata: a\n\ndata: "),
		io.LimitReader(repeatReader('x'), 100<<20), strings.NewReader("\n\ndata: after\n\n"))
}

// stubNoContentType answers with an event stream that names no type at
// all: a nil value keeps net/http from sniffing one.
func stubNoContentType(body string) stubStep {
	return func(w http.ResponseWriter, _ *http.Request, _ <-chan struct{}) {
		w.Header()["Content-Type"] = nil
		io.WriteString(w, body)
	}
}

// TestClientBadInput feeds a Client hostile or broken answers after a
// good stream: each must end in its documented error or behaviour, and
// every event before it must have been delivered.
func TestClientBadInput(t *testing.T) {
	t.Parallel()
	const base = time.Second
	good := stubSend("id: 1\ndata: a\n\n") // the stream that works, before the bad input
	a := ev{"1", "message", "a"}
	tests := []struct {
		name    string
		steps   []stubStep // past them the server answers 204, which stops the Client
		config  func(c *sse.Client)
		want    []ev
		wantErr func(error) bool // nil: the stream must end without error (the 204)
		wantIDs []string         // Last-Event-ID of each request; "-" means none
		delays  []span
	}{
		{
			name:    "100 MB line: ErrEventTooLarge with the default limit",
			steps:   []stubStep{stubStream(hugeLine)},
			want:    []ev{a},
			wantErr: func(err error) bool { return errors.Is(err, sse.ErrEventTooLarge) },
			wantIDs: []string{"-"}, // final: reconnecting would meet the same line
		},
		{
			name:    "invalid UTF-8 passes through, in the id sent back too",
			steps:   []stubStep{good, stubSend("id: \xff\xfe\nevent: \xc3(\ndata: \x80\xbf\n\n"), stubSend("data: b\n\n")},
			want:    []ev{a, {"\xff\xfe", "\xc3(", "\x80\xbf"}, {"\xff\xfe", "message", "b"}},
			wantIDs: []string{"-", "1", "\xff\xfe", "\xff\xfe"},
			delays:  []span{exactly(base), exactly(base), exactly(base)},
		},
		{
			name:    "id with NUL is ignored",
			steps:   []stubStep{stubSend("id: 1\ndata: a\n\nid: 2\x00\ndata: b\n\nid: \x00\n\n")},
			want:    []ev{a, {"1", "message", "b"}},
			wantIDs: []string{"-", "1"},
			delays:  []span{exactly(base)},
		},
		{
			name:    "wrong Content-Type after a working stream stops",
			steps:   []stubStep{good, stubSendAs("text/plain", "data: x\n\n")},
			want:    []ev{a},
			wantErr: func(err error) bool { return errors.Is(err, sse.ErrContentType) },
			wantIDs: []string{"-", "1"},
			delays:  []span{exactly(base)},
		},
		{
			name:    "no Content-Type at all after a working stream stops",
			steps:   []stubStep{good, stubNoContentType("data: x\n\n")},
			want:    []ev{a},
			wantErr: func(err error) bool { return errors.Is(err, sse.ErrContentType) },
			wantIDs: []string{"-", "1"},
			delays:  []span{exactly(base)},
		},
		{
			name:    "302 without Location is a StatusError",
			steps:   []stubStep{good, stubRedirect(http.StatusFound, "")},
			want:    []ev{a},
			wantErr: isStatusError(http.StatusFound),
			wantIDs: []string{"-", "1"},
			delays:  []span{exactly(base)},
		},
		{
			name:    "404 is final",
			steps:   []stubStep{good, stubStatus(http.StatusNotFound)},
			want:    []ev{a},
			wantErr: isStatusError(http.StatusNotFound),
			wantIDs: []string{"-", "1"},
			delays:  []span{exactly(base)},
		},
		{
			name:    "500 is final without RetryStatus",
			steps:   []stubStep{good, stubStatus(http.StatusInternalServerError)},
			want:    []ev{a},
			wantErr: isStatusError(http.StatusInternalServerError),
			wantIDs: []string{"-", "1"},
			delays:  []span{exactly(base)},
		},
		{
			name:    "5xx retried with RetryStatus, 4xx still final",
			steps:   []stubStep{good, stubStatus(502), stubStatus(503), stubSend("data: b\n\n"), stubStatus(429)},
			config:  func(c *sse.Client) { c.RetryStatus = func(code int) bool { return code >= 500 } },
			want:    []ev{a, {"1", "message", "b"}},
			wantErr: isStatusError(429),
			wantIDs: []string{"-", "1", "1", "1", "1"},
			delays:  []span{exactly(base), jittered(base), jittered(2 * base), exactly(base)},
		},
		{
			name:    "server stops mid-event after a CR: the event and its id are dropped",
			steps:   []stubStep{stubBreak("id: 1\ndata: a\n\nid: 2\rdata: cut\r"), stubSend("data: b\n\n")},
			want:    []ev{a, {"1", "message", "b"}},
			wantIDs: []string{"-", "1", "1"},
			delays:  []span{exactly(base), exactly(base)},
		},
		{
			name: "retry: 0 reconnects at once after a working stream, never in a hot loop",
			// Streams that open and end without an event count as failures:
			// the wait doubles from 100 ms (plus jitter), then a working
			// stream brings it back to the server's 0.
			steps:   []stubStep{stubSend("retry: 0\ndata: a\n\n"), stubSend(""), stubSend(": only a comment\n"), stubSend("data: b\n\n")},
			want:    []ev{{"", "message", "a"}, {"", "message", "b"}},
			wantIDs: []string{"-", "-", "-", "-", "-"},
			delays:  []span{exactly(0), jittered(100 * time.Millisecond), jittered(200 * time.Millisecond), exactly(0)},
		},
		{
			name:    "retry: 10^12 is cut to the default 30 s cap",
			steps:   []stubStep{stubSend("retry: 1000000000000\ndata: a\n\n"), stubSend("data: b\n\n")},
			want:    []ev{{"", "message", "a"}, {"", "message", "b"}},
			wantIDs: []string{"-", "-", "-"},
			delays:  []span{exactly(30 * time.Second), exactly(30 * time.Second)},
		},
		{
			name:    "retry beyond what a Duration holds does not overflow",
			steps:   []stubStep{stubSend("retry: 99999999999999999999999999999\ndata: a\n\n")},
			want:    []ev{{"", "message", "a"}},
			wantIDs: []string{"-", "-"},
			delays:  []span{exactly(30 * time.Second)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := newStubServer(t, tt.steps...)
			var rec stubDelays
			c := &sse.Client{HTTPClient: srv.Client(), ReconnectDelay: base}
			if tt.config != nil {
				tt.config(c)
			}
			rec.install(c)
			got, err := stubCollect(context.Background(), c, srv.URL)
			if tt.wantErr == nil && err != nil || tt.wantErr != nil && (err == nil || !tt.wantErr(err)) {
				t.Errorf("error = %v", err)
			}
			if err != nil && !strings.HasPrefix(err.Error(), "sse: ") {
				t.Errorf("error %q does not say where it comes from", err)
			}
			if !equalEvents(got, tt.want) {
				t.Errorf("events = %q, want %q", got, tt.want)
			}
			checkSentIDs(t, srv.requests(), tt.wantIDs)
			delays := rec.get()
			if len(delays) != len(tt.delays) {
				t.Fatalf("waits %v, want %d of them", delays, len(tt.delays))
			}
			for i, s := range tt.delays {
				if delays[i] < s.lo || delays[i] > s.hi {
					t.Errorf("wait %d = %v, want within [%v, %v]", i, delays[i], s.lo, s.hi)
				}
			}
		})
	}
}

// TestClientHugeLineBoundedMemory reads a stream with a 100 MB line and
// samples the heap while it does: the Decoder must give up at its limit
// (16 MB) without holding anything near the line. Not parallel, so that
// the heap is this test's.
func TestClientHugeLineBoundedMemory(t *testing.T) {
	var peak atomic.Uint64
	sample := func() {
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		for p := peak.Load(); m.HeapAlloc > p && !peak.CompareAndSwap(p, m.HeapAlloc); p = peak.Load() {
		}
	}
	var sent atomic.Int64
	srv := newStubServer(t, stubStream(func() io.Reader {
		return &sampledReader{r: hugeLine(), every: 1 << 20, sample: sample, n: &sent}
	}))
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	c := &sse.Client{HTTPClient: srv.Client()}
	new(stubDelays).install(c)
	got, err := stubCollect(context.Background(), c, srv.URL)
	sample()
	if !errors.Is(err, sse.ErrEventTooLarge) {
		t.Fatalf("error = %v, want ErrEventTooLarge", err)
	}
	if len(got) != 1 || got[0].data != "a" {
		t.Fatalf("events = %q, want the one before the line", got)
	}
	grew := int64(peak.Load()) - int64(before.HeapAlloc)
	t.Logf("heap peak %.1f MB above the start while reading a 100 MB line (%.1f MB sent before the client hung up)",
		float64(grew)/(1<<20), float64(sent.Load())/(1<<20))
	// SetMaxEventSize documents about three times the limit; a Decoder
	// that kept the line would need more than 100 MB.
	if limit := int64(3*sse.DefaultMaxEventSize + 16<<20); grew > limit {
		t.Errorf("heap grew by %d MB, over %d MB", grew>>20, limit>>20)
	}
}

// sampledReader calls sample every so many bytes it passes on.
type sampledReader struct {
	r      io.Reader
	every  int64
	sample func()
	n      *atomic.Int64
}

func (s *sampledReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if total := s.n.Add(int64(n)); total/s.every != (total-int64(n))/s.every {
		s.sample()
	}
	return n, err
}

// TestUpgradeContentEncoding checks the header that keeps compression
// middlewares from buffering a stream (see the reliability module for the
// middlewares themselves).
func TestUpgradeContentEncoding(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		allow  bool
		preset string // set by a middleware before Upgrade
		want   string
	}{
		{"default: identity", false, "", "identity"},
		{"AllowCompression: none", true, "", ""},
		{"a middleware's encoding is left alone", false, "gzip", "gzip"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			w := httptest.NewRecorder()
			if tt.preset != "" {
				w.Header().Set("Content-Encoding", tt.preset)
			}
			req := httptest.NewRequest("GET", "/", nil)
			c, err := (&sse.Upgrader{AllowCompression: tt.allow, Heartbeat: -1}).Upgrade(w, req)
			if err != nil {
				t.Fatal(err)
			}
			c.Close()
			if got := w.Result().Header.Get("Content-Encoding"); got != tt.want {
				t.Errorf("Content-Encoding %q, want %q", got, tt.want)
			}
		})
	}
}

// rawStream sends a request written by hand, which may hold bytes no
// http.Client would send, and returns the answer.
func rawStream(t *testing.T, addr, request string) *http.Response {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if _, err := io.WriteString(conn, request); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// TestHubHostileLastEventID subscribes with Last-Event-ID values no Hub
// issued: each gets the documented answer (a reset event carrying the
// newest id, never the hostile value, then live events), or net/http's
// own refusal before the Hub sees it; and the Hub keeps serving.
func TestHubHostileLastEventID(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		// header is sent as Last-Event-ID, query as lastEventId; raw sends
		// the header in a request written by hand.
		header, query string
		raw           bool
		// epochID builds the value from the epoch of the Hub's ids.
		epochID    func(epoch string) string
		wantStatus int // 0: the stream opens
	}{
		{name: "1 MB header", header: strings.Repeat("9", 1<<20)},
		{name: "2 MB header: net/http refuses it", header: strings.Repeat("9", 2<<20), wantStatus: http.StatusRequestHeaderFieldsTooLarge},
		{name: "512 KiB query parameter", query: strings.Repeat("a-", 256<<10)},
		{name: "binary header", header: "\x80\xff\xfe\xc0\xaf"},
		{name: "control bytes in a raw header: net/http refuses it", header: "\x01\x02\x1b[2J\x7f", raw: true, wantStatus: http.StatusBadRequest},
		{name: "NUL CR LF through the query", query: "\x00\r\nid: forged\r\n\r\ndata: injected"},
		{name: "other epoch", epochID: func(string) string { return "00000000-1" }},
		{name: "sequence beyond uint64", epochID: func(e string) string { return e + "-18446744073709551616" }},
		{name: "negative sequence", epochID: func(e string) string { return e + "--1" }},
		{name: "epoch only", epochID: func(e string) string { return e + "-" }},
		{name: "dash only", header: "-"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := &sse.Hub{}
			ts := hubServer(t, h)
			ids := publish(t, h, "t", "one", "two")
			epoch, _, _ := strings.Cut(ids[0], "-")
			header, query := tt.header, tt.query
			if tt.epochID != nil {
				header = tt.epochID(epoch)
			}
			target := "/?topic=t"
			if query != "" {
				target += "&lastEventId=" + url.QueryEscape(query)
			}
			var resp *http.Response
			before := h.Stats().Subscriptions
			if tt.raw {
				resp = rawStream(t, ts.Listener.Addr().String(), "GET "+target+" HTTP/1.1\r\nHost: x\r\nLast-Event-ID: "+header+"\r\n\r\n")
			} else {
				ctx, cancel := context.WithCancel(context.Background())
				t.Cleanup(cancel)
				req, _ := http.NewRequestWithContext(ctx, "GET", ts.URL+target, nil)
				if header != "" {
					req.Header.Set("Last-Event-ID", header)
				}
				var err error
				if resp, err = ts.Client().Do(req); err != nil {
					t.Fatal(err)
				}
			}
			defer resp.Body.Close()
			if tt.wantStatus != 0 {
				if resp.StatusCode != tt.wantStatus {
					t.Fatalf("status %d, want %d", resp.StatusCode, tt.wantStatus)
				}
				// The Hub never saw it, and still serves others.
				d := subscribed(t, h, ts, "topic=t", nil)
				publish(t, h, "t", "live")
				if got := next(t, d); got.data != "live" {
					t.Fatalf("after the refused request got %q", got)
				}
				return
			}
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d", resp.StatusCode)
			}
			for h.Stats().Subscriptions == before {
				time.Sleep(time.Millisecond) // registration happens on the server's goroutine
			}
			live := publish(t, h, "t", "live")
			d := sse.NewDecoder(resp.Body)
			if got := next(t, d); got.typ != sse.DefaultResetType || got.id != ids[1] {
				t.Fatalf("first event %q, want a reset with the newest id %q", got, ids[1])
			}
			if got := next(t, d); got != (ev{live[0], "message", "live"}) {
				t.Fatalf("after the reset got %q, want the live event", got)
			}
		})
	}
}

// TestConnInjection writes ids, types and comments holding CR, LF and NUL:
// a write that could inject a field fails with ErrInvalidField and writes
// nothing, and what the standard allows is written as it is. The stream
// must be exactly the accepted writes.
func TestConnInjection(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		write func(c *sse.Conn) error
		want  string // the bytes written; "" when the write must fail
	}{
		{"id with LF", func(c *sse.Conn) error { return c.WriteEventWithID("1\ndata: x", "", nil) }, ""},
		{"id with CR", func(c *sse.Conn) error { return c.WriteEventWithID("1\r", "", nil) }, ""},
		{"id with CRLF", func(c *sse.Conn) error { return c.WriteEventWithID("1\r\n\r\ndata: x", "", nil) }, ""},
		{"id with NUL", func(c *sse.Conn) error { return c.WriteEventWithID("\x00", "", nil) }, ""},
		{"type with LF", func(c *sse.Conn) error { return c.WriteStringEvent("a\n\ndata: x", "y") }, ""},
		{"type with CR", func(c *sse.Conn) error { return c.WriteEvent("a\r", []byte("y")) }, ""},
		{"comment with LF", func(c *sse.Conn) error { return c.WriteComment("a\nid: 666") }, ""},
		{"comment with CR", func(c *sse.Conn) error { return c.WriteComment("a\r") }, ""},
		{"message with a bad comment writes no data either", func(c *sse.Conn) error {
			return c.WriteMessage(sse.Message{Data: []byte("d"), Comment: "\n"})
		}, ""},
		{"JSON event with a bad type", func(c *sse.Conn) error { return c.WriteJsonEvent("t\n", 1) }, ""},
		{"XML event with a bad type", func(c *sse.Conn) error { return c.WriteXmlEvent("t\r", point{}) }, ""},
		{"prepared message with a bad id", func(c *sse.Conn) error {
			_, err := sse.NewPreparedMessage(sse.Message{ID: "a\nb"})
			return err
		}, ""},
		{"NUL in a type is allowed", func(c *sse.Conn) error { return c.WriteStringEvent("a\x00b", "y") }, "event: a\x00b\ndata: y\n\n"},
		{"NUL in a comment is allowed", func(c *sse.Conn) error { return c.WriteComment("a\x00b") }, ": a\x00b\n"},
		{"CR, LF and NUL in data are split and kept", func(c *sse.Conn) error { return c.WriteString("a\r\n\x00\rb\n") },
			"data: a\ndata: \x00\ndata: b\ndata: \n\n"},
	}
	ts := streamServer(t, &sse.Upgrader{Heartbeat: -1}, func(c *sse.Conn, r *http.Request) {
		for _, tt := range tests {
			err := tt.write(c)
			if tt.want == "" && !errors.Is(err, sse.ErrInvalidField) || tt.want != "" && err != nil {
				t.Errorf("%s: error %v", tt.name, err)
			}
			if err != nil && !strings.HasPrefix(err.Error(), "sse: invalid field: ") {
				t.Errorf("%s: error %q", tt.name, err)
			}
		}
	})
	resp, _ := open(t, ts.Client(), ts.URL, nil)
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	want := ":\n"
	for _, tt := range tests {
		want += tt.want
	}
	if string(body) != want {
		t.Errorf("stream\n%q\nwant\n%q", body, want)
	}
}

// TestHubPublishInjection publishes messages whose fields would inject:
// each fails with ErrInvalidField and reaches neither the Broker nor a
// subscriber, and the valid events around them all arrive.
func TestHubPublishInjection(t *testing.T) {
	t.Parallel()
	bad := []struct {
		name string
		m    sse.Message
	}{
		{"id with LF", sse.Message{ID: "x\ndata: injected", Data: []byte("bad")}},
		{"id with CR", sse.Message{ID: "x\r", Data: []byte("bad")}},
		{"id with NUL", sse.Message{ID: "x\x00", Data: []byte("bad")}},
		{"type with LF", sse.Message{Type: "t\n\ndata: injected", Data: []byte("bad")}},
		{"type with CR", sse.Message{Type: "t\r", Data: []byte("bad")}},
		{"comment with CRLF", sse.Message{Comment: "c\r\nid: 666", Data: []byte("bad")}},
	}
	broker := &sse.MemoryBroker{}
	h := &sse.Hub{Broker: broker}
	ts := hubServer(t, h)
	first := publish(t, h, "t", "first")
	d := subscribed(t, h, ts, "topic=t", http.Header{"Last-Event-Id": {first[0]}})
	var good []string
	for _, b := range bad {
		t.Run(b.name, func(t *testing.T) {
			id, err := h.Publish(context.Background(), "t", b.m)
			if !errors.Is(err, sse.ErrInvalidField) || id != "" {
				t.Errorf("Publish = %q, %v; want ErrInvalidField", id, err)
			}
		})
		good = append(good, "after "+b.name)
		publish(t, h, "t", good[len(good)-1])
	}
	for _, want := range good {
		if got := next(t, d); got.data != want || got.typ != "message" {
			t.Fatalf("subscriber got %q, want %q", got, want)
		}
	}
	if s := h.Stats(); s.Published != int64(1+len(good)) {
		t.Errorf("Published %d, want %d", s.Published, 1+len(good))
	}
	entries, _, err := broker.Replay(context.Background(), []string{"t"}, first[0])
	if err != nil || len(entries) != len(good) {
		t.Fatalf("broker holds %d events after the first (%v), want %d: only the valid ones", len(entries), err, len(good))
	}
	for i, e := range entries {
		if string(e.Data) != good[i] {
			t.Errorf("broker event %d = %q, want %q", i, e.Data, good[i])
		}
	}
}

// TestHubConnectDisconnectCycles opens and drops hundreds of streams
// (20,000 with SSE_LONG=1), some cut off before they read anything, some
// resuming from an id, some from garbage, while a publisher runs:
// afterwards the Hub counts no one,
// the goroutines are back to where they were, the heap did not keep
// anything per cycle, and a subscriber that stayed got every event in
// order. Not parallel, so that goroutines and heap are this test's.
func TestHubConnectDisconnectCycles(t *testing.T) {
	cycles := 600
	if os.Getenv("SSE_LONG") == "1" {
		cycles = 20000
	}
	const workers = 8
	h := &sse.Hub{QueueSize: 1 << 16} // the staying subscriber must not be evicted for being slow under -race
	ts := hubServer(t, h)
	first := publish(t, h, "t", "first")
	stay := subscribed(t, h, ts, "topic=t", http.Header{"Last-Event-Id": {first[0]}})
	tr := &http.Transport{}
	client := &http.Client{Transport: tr}

	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	baseline := runtime.NumGoroutine()

	// The publisher runs while the cycles do, and stops after them.
	stopPub := make(chan struct{})
	published := make(chan []string, 1)
	go func() {
		var data []string
		for i := 0; ; i++ {
			select {
			case <-stopPub:
				published <- data
				return
			default:
			}
			d := fmt.Sprint("e", i)
			if _, err := h.Publish(context.Background(), "t", sse.Message{Data: []byte(d)}); err != nil {
				t.Error(err)
			}
			data = append(data, d)
			if i%4 == 3 {
				time.Sleep(time.Millisecond) // let the subscribers breathe; not a measurement
			}
		}
	}()
	var wg sync.WaitGroup
	var failed atomic.Int64
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < cycles; i += workers {
				ctx, cancel := context.WithCancel(context.Background())
				req, _ := http.NewRequestWithContext(ctx, "GET", ts.URL+"/?topic=t", nil)
				switch i % 4 {
				case 1:
					req.Header.Set("Last-Event-ID", first[0])
				case 2:
					req.Header.Set("Last-Event-ID", "garbage")
				}
				resp, err := client.Do(req)
				if err != nil {
					failed.Add(1)
					cancel()
					continue
				}
				if i%4 != 3 { // the last kind leaves without reading a byte
					if _, err := resp.Body.Read(make([]byte, 1)); err != nil {
						failed.Add(1)
					}
				}
				cancel()
				resp.Body.Close()
			}
		}()
	}
	wg.Wait()
	close(stopPub)
	data := <-published
	if n := failed.Load(); n > 0 {
		t.Errorf("%d of %d cycles failed to connect or read", n, cycles)
	}
	for _, want := range data {
		if got := next(t, stay); got.data != want {
			t.Fatalf("staying subscriber got %q, want %q", got.data, want)
		}
	}
	tr.CloseIdleConnections()

	// The Hub and the server notice the last disconnects on their own
	// goroutines: wait for them, bounded.
	deadline := time.Now().Add(10 * time.Second)
	for {
		s := h.Stats()
		n := runtime.NumGoroutine()
		if s.Subscribers == 1 && s.Topics == 1 && n <= baseline {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %d cycles: %d goroutines (%d before), stats %+v", cycles, n, baseline, s)
		}
		time.Sleep(10 * time.Millisecond)
	}
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	grew := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("%d cycles, %d events published meanwhile: live heap %+.2f MB", cycles, len(data), float64(grew)/(1<<20))
	// What the run may keep is the Broker's history (DefaultHistory small
	// events); a leak of what a cycle costs (a Conn, a subscriber, their
	// buffers: several KiB) would show: the bound is 2 KiB a cycle.
	if grew > int64(cycles)<<11 {
		t.Errorf("live heap grew by %d KiB over %d cycles", grew>>10, cycles)
	}
	if s := h.Stats(); s.Evicted != 0 {
		t.Errorf("stats %+v: no one should have been evicted", s)
	}
}

// TestHubFrozenClientWriteTimeout subscribes a client that never reads to
// a Hub whose history is too large to fill first: the write deadline must cut
// it off, Serve must say so, and the Hub must forget it, while a client that
// reads gets every event.
func TestHubFrozenClientWriteTimeout(t *testing.T) {
	t.Parallel()
	h := &sse.Hub{History: 1 << 14, HistoryBytes: 1 << 30, Upgrader: sse.Upgrader{WriteTimeout: 100 * time.Millisecond}, Logger: quiet, DisableDetach: true} // Serve returns the error: the handler path (TestHubDetachedFrozenClientCut is the other)
	t.Cleanup(func() { h.Close() })
	served := make(chan error, 4)
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := h.Upgrader.Upgrade(w, r)
		if err != nil {
			return
		}
		served <- h.Serve(c, "t")
	}))
	t.Cleanup(ts.Close)
	reader := subscribed(t, h, ts, "topic=t", nil)
	rawSubscribe(t, h, ts, "/?topic=t") // and never read

	payload := strings.Repeat("x", 64<<10)
	read := make(chan int, 64)
	stopRead := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(read)
		for i := 0; ; i++ {
			e, err := reader.Decode()
			if err != nil {
				select {
				case <-stopRead:
				default:
					t.Errorf("reader: event %d: %v", i, err)
				}
				return
			}
			if string(e.Bytes()) != fmt.Sprint(i, payload) {
				t.Errorf("reader: event %d wrong", i)
				return
			}
			select {
			case read <- i:
			case <-stopRead:
				return
			}
		}
	}()
	// Closing the Hub ends the reader's stream; the reader must be done
	// before the test is, since it may report.
	t.Cleanup(func() {
		close(stopRead)
		h.Close()
		wg.Wait()
	})
	// Publish, at most 32 events ahead of the reader, until the frozen
	// client's Serve returns. How many events that takes depends on the
	// socket buffers and on how fast the reader keeps up, so only time
	// bounds it: past 16 MB, more than loopback buffers hold, the frozen
	// client's write is stuck and only its deadline can end it, so publish
	// slowly from then on to keep its queue small while waiting.
	deadline := time.Now().Add(30 * time.Second)
	var frozenErr error
	consumed := -1
	for i := 0; frozenErr == nil; i++ {
		if time.Now().After(deadline) {
			t.Fatalf("the frozen client was never cut off: %d events published", i)
		}
		for consumed < i-32 && frozenErr == nil {
			select {
			case n, ok := <-read:
				if !ok {
					t.Fatal("reader stopped")
				}
				consumed = n
			case frozenErr = <-served:
			}
		}
		if frozenErr != nil {
			break
		}
		publish(t, h, "t", fmt.Sprint(i, payload))
		if i < 256 {
			select {
			case frozenErr = <-served:
			default:
			}
			continue
		}
		select {
		case frozenErr = <-served:
		case <-time.After(10 * time.Millisecond):
		}
	}
	var ne net.Error
	if !errors.Is(frozenErr, sse.ErrConnectionClosed) || !errors.As(frozenErr, &ne) || !ne.Timeout() {
		t.Fatalf("Serve of the frozen client: %v, want a write timeout wrapped in ErrConnectionClosed", frozenErr)
	}
	if s := h.Stats(); s.Subscribers != 1 || s.Evicted != 0 {
		t.Fatalf("stats %+v: want only the reader left, no eviction (the deadline cut the frozen client)", s)
	}
}
