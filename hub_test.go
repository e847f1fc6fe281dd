package sse_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/b2ce5911/sse"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// hubServer serves h on a loopback server that ends with the test, after
// the hub is closed.
func hubServer(t *testing.T, h *sse.Hub) *httptest.Server {
	t.Helper()
	if h.Logger == nil {
		h.Logger = quiet
	}
	ts := httptest.NewServer(h)
	t.Cleanup(ts.Close)
	t.Cleanup(func() { h.Close() })
	return ts
}

func publish(t testing.TB, h *sse.Hub, topic string, data ...string) []string {
	t.Helper()
	var ids []string
	for _, d := range data {
		id, err := h.Publish(context.Background(), topic, sse.Message{Data: []byte(d)})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	return ids
}

// subscribed opens a stream and waits until the hub counts it.
func subscribed(t *testing.T, h *sse.Hub, ts *httptest.Server, query string, header http.Header) *sse.Decoder {
	t.Helper()
	return sse.NewDecoder(subscribedBody(t, h, ts, query, header))
}

// subscribedBody is subscribed for a test that reads the stream's bytes.
func subscribedBody(t *testing.T, h *sse.Hub, ts *httptest.Server, query string, header http.Header) io.Reader {
	t.Helper()
	before := h.Stats().Subscriptions
	resp, _ := open(t, ts.Client(), ts.URL+"?"+query, header)
	waitSubscribed(t, h, before)
	return resp.Body
}

// waitSubscribed waits until h counts more subscriptions than before:
// registration happens on the server's goroutine.
func waitSubscribed(t *testing.T, h *sse.Hub, before int64) {
	t.Helper()
	waitStats(t, h, "counted the subscription", func(s sse.HubStats) bool { return s.Subscriptions != before })
}

// waitStats waits until h's counters satisfy ok, and fails the test after
// 30 s, which is a bound on a hang, not a measurement.
func waitStats(t *testing.T, h *sse.Hub, what string, ok func(sse.HubStats) bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !ok(h.Stats()); {
		if time.Now().After(deadline) {
			t.Fatalf("the Hub never %s: stats %+v", what, h.Stats())
		}
		time.Sleep(time.Millisecond)
	}
}

func TestHubTopicsIsolate(t *testing.T) {
	t.Parallel()
	h := &sse.Hub{}
	ts := hubServer(t, h)
	a := subscribed(t, h, ts, "topic=a", nil)
	b := subscribed(t, h, ts, "topic=b", nil)
	ab := subscribed(t, h, ts, "topic=a&topic=b", nil)
	publish(t, h, "a", "a1")
	publish(t, h, "b", "b1")
	publish(t, h, "c", "c1")
	publish(t, h, "a", "a2")
	for _, tt := range []struct {
		d    *sse.Decoder
		want []string
	}{{a, []string{"a1", "a2"}}, {b, []string{"b1"}}, {ab, []string{"a1", "b1", "a2"}}} {
		for _, w := range tt.want {
			if got := next(t, tt.d); got.data != w {
				t.Fatalf("got %q, want %q", got.data, w)
			}
		}
	}
	if s := h.Stats(); s.Subscribers != 3 || s.Topics != 2 || s.Published != 4 || s.Delivered != 6 {
		t.Fatalf("stats %+v", s)
	}
}

func TestHubTopicNamedTwice(t *testing.T) {
	t.Parallel()
	h := &sse.Hub{}
	ts := hubServer(t, h)
	first := publish(t, h, "a", "one", "two", "three")
	d := subscribed(t, h, ts, "topic=a&topic=a", http.Header{"Last-Event-Id": {first[0]}})
	publish(t, h, "a", "four")
	for _, want := range []string{"two", "three", "four"} {
		if got := next(t, d); got.data != want {
			t.Fatalf("got %q, want %q: once each", got.data, want)
		}
	}
}

func TestHubNeedsATopic(t *testing.T) {
	t.Parallel()
	ts := hubServer(t, &sse.Hub{})
	resp, err := ts.Client().Get(ts.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("status %d", resp.StatusCode)
	}
}

func TestHubEvictsFrozenSubscriber(t *testing.T) {
	t.Parallel()
	h := &sse.Hub{QueueSize: 64, Upgrader: sse.Upgrader{WriteTimeout: -1}}
	ts := hubServer(t, h)
	reader := subscribed(t, h, ts, "topic=t", nil)
	rawSubscribe(t, h, ts, "/?topic=t") // and never read

	payload := strings.Repeat("x", 16<<10)
	const events = 800 // 12.8 MB: far more than the frozen client's socket buffers hold
	read := make(chan int, events)
	readerDone := make(chan struct{})
	t.Cleanup(func() { // on a failure too: closing the Hub ends the reader's stream
		h.Close()
		<-readerDone
	})
	go func() {
		defer close(readerDone)
		defer close(read)
		for i := range events {
			e, err := reader.Decode()
			if err != nil {
				t.Errorf("reader: event %d: %v", i, err)
				return
			}
			if want := fmt.Sprint(i, payload); string(e.Bytes()) != want {
				t.Errorf("reader: event %d wrong", i)
				return
			}
			read <- i
		}
	}()
	// The publisher stays at most half a queue ahead of the reader, which
	// keeps up; it must never block on the frozen client.
	consumed := -1
	for i := range events {
		for consumed < i-32 {
			var ok bool
			if consumed, ok = <-read; !ok {
				t.Fatal("reader stopped")
			}
		}
		publish(t, h, "t", fmt.Sprint(i, payload))
	}
	for range read {
	}
	if s := h.Stats(); s.Evicted != 1 || s.Subscribers != 1 {
		t.Fatalf("stats %+v: want exactly the frozen client evicted", s)
	}
}

// rawSubscribe subscribes over a raw TCP connection that never reads, and
// waits until the hub counts it.
func rawSubscribe(t *testing.T, h *sse.Hub, ts *httptest.Server, path string) net.Conn {
	t.Helper()
	n := h.Stats().Subscriptions
	c, err := net.Dial("tcp", ts.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c.(*net.TCPConn).SetReadBuffer(1024)
	t.Cleanup(func() { c.Close() })
	io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: x\r\n\r\n")
	waitSubscribed(t, h, n)
	return c
}

func TestHubReplay(t *testing.T) {
	t.Parallel()
	// Each case gets a hub whose room topic saw events "0".."9" and then
	// "10" with a publisher-set id, keeping 5: "6".."10"; ids[i] is the id
	// of event i, ids[11] that of an event on another topic.
	setup := func(t *testing.T) (*sse.Hub, *httptest.Server, []string) {
		h := &sse.Hub{Broker: &sse.MemoryBroker{History: 5}}
		ts := hubServer(t, h)
		ids := publish(t, h, "room", "0", "1", "2", "3", "4", "5", "6", "7", "8", "9")
		named, err := h.Publish(context.Background(), "room", sse.Message{ID: "user-chosen", Data: []byte("10")})
		if err != nil || named != "user-chosen" {
			t.Fatalf("Publish with ID = %q, %v", named, err)
		}
		return h, ts, append(append(ids, named), publish(t, h, "other", "x")...)
	}
	epochOf := func(id string) string { e, _, _ := strings.Cut(id, "-"); return e }
	tests := []struct {
		name   string
		lastID func(ids []string) string
		query  bool // send it as the lastEventId parameter, as a browser's first connect does
		want   []string
		reset  bool
	}{
		{name: "no id: live only", lastID: func([]string) string { return "" }},
		{name: "inside the window", lastID: func(ids []string) string { return ids[7] }, want: []string{"8", "9", "10"}},
		{name: "at the oldest kept", lastID: func(ids []string) string { return ids[6] }, want: []string{"7", "8", "9", "10"}},
		{name: "just before the oldest kept", lastID: func(ids []string) string { return ids[5] }, want: []string{"6", "7", "8", "9", "10"}},
		{name: "newest: nothing to replay", lastID: func(ids []string) string { return ids[10] }},
		{name: "before a publisher-set id", lastID: func(ids []string) string { return ids[9] }, want: []string{"10"}},
		{name: "id of another topic", lastID: func(ids []string) string { return ids[11] }},
		{name: "query parameter", lastID: func(ids []string) string { return ids[8] }, query: true, want: []string{"9", "10"}},
		{name: "outside the window", lastID: func(ids []string) string { return ids[4] }, reset: true},
		{name: "other epoch", lastID: func([]string) string { return "ffffffff-3" }, reset: true},
		{name: "from the future", lastID: func(ids []string) string { return epochOf(ids[0]) + "-999" }, reset: true},
		{name: "not canonical", lastID: func(ids []string) string { return epochOf(ids[0]) + "-07" }, reset: true},
		{name: "garbage", lastID: func([]string) string { return "\xff\xfe garbage" }, reset: true},
		{name: "huge", lastID: func([]string) string { return strings.Repeat("9", 10000) }, reset: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h, ts, ids := setup(t)
			hdr, q := http.Header{}, "topic=room"
			switch last := tt.lastID(ids); {
			case tt.query:
				q += "&lastEventId=" + url.QueryEscape(last)
			case last != "":
				hdr.Set("Last-Event-ID", last)
			}
			d := subscribed(t, h, ts, q, hdr)
			live := publish(t, h, "room", "live")
			var got []string
			for {
				e := next(t, d)
				if e.typ == "reset" {
					if !tt.reset || len(got) > 0 {
						t.Fatalf("unexpected reset after %q", got)
					}
					if e.id != ids[10] {
						t.Fatalf("reset event id %q, want the newest, %q", e.id, ids[10])
					}
					got = append(got, "reset")
					continue
				}
				if e.data == "live" {
					if e.id != live[0] {
						t.Fatalf("live event id %q, want %q", e.id, live[0])
					}
					break
				}
				got = append(got, e.data)
			}
			want := tt.want
			if tt.reset {
				want = []string{"reset"}
			}
			if strings.Join(got, ",") != strings.Join(want, ",") {
				t.Fatalf("before the live event got %q, want %q", got, want)
			}
		})
	}
}

func TestHubResetCarriesResumeID(t *testing.T) {
	t.Parallel()
	h := &sse.Hub{ResetType: "resync"}
	ts := hubServer(t, h)
	ids := publish(t, h, "t", "a", "b")
	d := subscribed(t, h, ts, "topic=t", http.Header{"Last-Event-Id": {"stale"}})
	e := next(t, d)
	if e.typ != "resync" || e.id != ids[1] {
		t.Fatalf("reset event %q, want type resync and id %q", e, ids[1])
	}
	// Resuming from the reset's id replays nothing and misses nothing.
	d2 := subscribed(t, h, ts, "topic=t", http.Header{"Last-Event-Id": {e.id}})
	publish(t, h, "t", "c")
	if got := next(t, d2); got.data != "c" {
		t.Fatalf("after resuming from the reset got %q", got)
	}
}

// TestHubNoGapNoDuplicateWhileReconnecting reconnects a client again and
// again with its Last-Event-ID while a publisher never stops (and evicts it
// when it reads too slowly): every event must arrive exactly once and in
// order.
func TestHubNoGapNoDuplicateWhileReconnecting(t *testing.T) {
	t.Parallel()
	h := &sse.Hub{Broker: &sse.MemoryBroker{History: 100000}}
	ts := hubServer(t, h)
	const total = 3000
	// Every connection resumes from an id, the first from this one.
	lastID := publish(t, h, "t", "start")[0]
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range total {
			if _, err := h.Publish(context.Background(), "t", sse.Message{Data: []byte(strconv.Itoa(i))}); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	defer func() { <-done }()
	want := 0
	for conn := 0; want < total; conn++ {
		ctx, cancel := context.WithCancel(context.Background())
		req, _ := http.NewRequestWithContext(ctx, "GET", ts.URL+"?topic=t", nil)
		req.Header.Set("Last-Event-ID", lastID)
		resp, err := ts.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		d := sse.NewDecoder(resp.Body)
		for range 1 + conn%50 { // read a few, then drop the connection
			if want == total {
				break
			}
			e, err := d.Decode()
			if err == io.EOF || errors.Is(err, io.ErrUnexpectedEOF) {
				// Evicted for reading too slowly, at an event's end or in the
				// middle of a write that the eviction cut short (the Decoder
				// drops the partial event): reconnect and catch up, as
				// clients do.
				break
			}
			if err != nil {
				t.Fatalf("connection %d: %v", conn, err)
			}
			if e.Type == "reset" {
				t.Fatalf("connection %d: reset with history %d", conn, total)
			}
			if got := string(e.Bytes()); got != strconv.Itoa(want) {
				t.Fatalf("connection %d: got event %s, want %d", conn, got, want)
			}
			want++
			lastID = e.ID
		}
		cancel()
		resp.Body.Close()
	}
}

// TestHubTellsNewSubscriberItsPosition: a client that received no event
// still knows where it stands, and misses nothing across a reconnection.
func TestHubTellsNewSubscriberItsPosition(t *testing.T) {
	t.Parallel()
	for _, history := range []bool{false, true} {
		h := &sse.Hub{}
		ts := hubServer(t, h)
		if history {
			publish(t, h, "t", "before")
		}
		ctx, cancel := context.WithCancel(context.Background())
		req, _ := http.NewRequestWithContext(ctx, "GET", ts.URL+"?topic=t", nil)
		resp, err := ts.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		// Read until a block with an id has ended, then let the Decoder
		// say what a client makes of it.
		br, seen := bufio.NewReader(resp.Body), ""
		for !strings.Contains(seen, "id: ") || !strings.HasSuffix(seen, "\n\n") {
			line, err := br.ReadString('\n')
			if err != nil {
				t.Fatalf("history %v: stream %q then %v", history, seen, err)
			}
			seen += line
		}
		cancel()
		resp.Body.Close()
		d := sse.NewDecoder(strings.NewReader(seen))
		if _, err := d.Decode(); err != io.EOF {
			t.Fatalf("history %v: %q dispatched an event (%v)", history, seen, err)
		}
		pos := d.LastEventID()
		if pos == "" {
			t.Fatalf("history %v: no position told", history)
		}
		publish(t, h, "t", "while away")
		d2 := subscribed(t, h, ts, "topic=t", http.Header{"Last-Event-Id": {pos}})
		if got := next(t, d2); got.data != "while away" {
			t.Fatalf("history %v: resumed with %q", history, got)
		}
	}
}

func TestHubShutdownDrainsQueues(t *testing.T) {
	t.Parallel()
	h := &sse.Hub{QueueSize: 1000}
	ts := hubServer(t, h)
	d := subscribed(t, h, ts, "topic=t", nil)
	const n = 500
	for i := range n {
		publish(t, h, "t", strconv.Itoa(i))
	}
	shut := make(chan error, 1)
	go func() { shut <- h.Shutdown(context.Background()) }()
	for i := range n {
		if got := next(t, d); got.data != strconv.Itoa(i) {
			t.Fatalf("got %q, want %d", got.data, i)
		}
	}
	if _, err := d.Decode(); err != io.EOF {
		t.Fatalf("after the queue drained: %v, want the stream to end", err)
	}
	if err := <-shut; err != nil {
		t.Fatal(err)
	}
	if _, err := h.Publish(context.Background(), "t", sse.Message{}); !errors.Is(err, sse.ErrHubClosed) {
		t.Fatalf("Publish after Shutdown: %v", err)
	}
}

func TestHubShutdownTimesOutOnStuckClient(t *testing.T) {
	t.Parallel()
	h := &sse.Hub{Upgrader: sse.Upgrader{WriteTimeout: -1}}
	ts := hubServer(t, h)
	rawSubscribe(t, h, ts, "/?topic=t")
	payload := strings.Repeat("x", 64<<10)
	for range 200 { // 12.8 MB, far more than the socket takes (4 MiB at most): the writer blocks
		publish(t, h, "t", payload)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := h.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown = %v, want the context's error", err)
	}
	if s := h.Stats(); s.Subscribers != 0 {
		t.Fatalf("after Shutdown: %+v", s)
	}
}

// TestHubServeAfterOwnUpgrade: Serve after the handler's own checks. A
// detached stream's Serve returns nil once the Hub holds the stream; on the
// handler path it returns when the Hub closes.
func TestHubServeAfterOwnUpgrade(t *testing.T) {
	t.Parallel()
	for _, attached := range []bool{false, true} {
		t.Run(fmt.Sprint("attached=", attached), func(t *testing.T) {
			h := &sse.Hub{Logger: quiet, DisableDetach: attached}
			t.Cleanup(func() { h.Close() })
			served := make(chan error, 1)
			ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Header.Get("Authorization") != "Bearer ok" {
					http.Error(w, "who are you", http.StatusUnauthorized)
					return
				}
				c, err := sse.Upgrade(w, r)
				if err != nil {
					return
				}
				served <- h.Serve(c, "user-42")
			}))
			t.Cleanup(ts.Close)
			resp, _ := open(t, ts.Client(), ts.URL, nil)
			if resp.StatusCode != http.StatusUnauthorized {
				t.Fatalf("status %d", resp.StatusCode)
			}
			_, d := open(t, ts.Client(), ts.URL, http.Header{"Authorization": {"Bearer ok"}})
			for h.Stats().Subscribers == 0 {
				time.Sleep(time.Millisecond)
			}
			if !attached {
				if err := <-served; err != nil {
					t.Fatalf("Serve of a detached stream returned %v, want nil", err)
				}
			}
			publish(t, h, "user-42", "private")
			if got := next(t, d); got.data != "private" {
				t.Fatalf("got %q", got)
			}
			h.Close()
			if attached {
				if err := <-served; !errors.Is(err, sse.ErrHubClosed) {
					t.Fatalf("Serve returned %v, want ErrHubClosed", err)
				}
			}
			if _, err := d.Decode(); err != io.EOF {
				t.Fatalf("stream after Close: %v", err)
			}
		})
	}
}

func TestHubPublishRejectsInvalidFields(t *testing.T) {
	t.Parallel()
	h := &sse.Hub{}
	defer h.Close()
	if _, err := h.Publish(context.Background(), "t", sse.Message{ID: "a\nb"}); !errors.Is(err, sse.ErrInvalidField) {
		t.Fatalf("err = %v", err)
	}
	if s := h.Stats(); s.Published != 0 {
		t.Fatalf("stats %+v", s)
	}
}

// laggingBroker holds its feeds' deliveries until released, as the feed
// of a node that reads the shared store later than another node wrote it;
// beforeReplay, when set, runs as a Replay starts.
type laggingBroker struct {
	*sse.MemoryBroker
	beforeReplay func()
	mu           sync.Mutex
	held         []func()
}

func (b *laggingBroker) Subscribe(ctx context.Context, topic string, deliver func(sse.Entry)) (string, error) {
	return b.MemoryBroker.Subscribe(ctx, topic, func(e sse.Entry) {
		b.mu.Lock()
		defer b.mu.Unlock()
		b.held = append(b.held, func() { deliver(e) })
	})
}

func (b *laggingBroker) Replay(ctx context.Context, topics []string, after string) ([]sse.Entry, []string, error) {
	if b.beforeReplay != nil {
		b.beforeReplay()
	}
	return b.MemoryBroker.Replay(ctx, topics, after)
}

// release delivers up to n held events (all when n < 0), in order.
func (b *laggingBroker) release(n int) {
	b.mu.Lock()
	if n < 0 || n > len(b.held) {
		n = len(b.held)
	}
	held := b.held[:n]
	b.held = b.held[n:]
	b.mu.Unlock()
	for _, f := range held {
		f()
	}
}

func TestHubLaggingFeedNoDuplicate(t *testing.T) {
	t.Parallel()
	b := &laggingBroker{MemoryBroker: &sse.MemoryBroker{}}
	h := &sse.Hub{Broker: b}
	ts := hubServer(t, h)
	live := subscribed(t, h, ts, "topic=t", nil)
	ids := publish(t, h, "t", "e1", "e2") // stored, not yet fed
	// A client that got e1 and e2 elsewhere resumes here, ahead of the feed.
	ahead := subscribed(t, h, ts, "topic=t", http.Header{"Last-Event-Id": {ids[1]}})
	// And one that got only e1: it is replayed e2, which the feed has yet to deliver.
	between := subscribed(t, h, ts, "topic=t", http.Header{"Last-Event-Id": {ids[0]}})
	b.release(-1)
	publish(t, h, "t", "e3")
	b.release(-1)
	for _, tt := range []struct {
		name string
		d    *sse.Decoder
		want []string
	}{
		{"live", live, []string{"e1", "e2", "e3"}},
		{"ahead", ahead, []string{"e3"}},
		{"between", between, []string{"e2", "e3"}},
	} {
		for _, w := range tt.want {
			if got := next(t, tt.d); got.data != w {
				t.Fatalf("%s: got %q, want %q", tt.name, got.data, w)
			}
		}
	}
}

// TestHubReplayMeetsLiveEvents: events the feed delivers while a replay is
// being read are queued live and also in the replay; each must reach the
// client once, whether the feed is past the replay's end, or short of it.
func TestHubReplayMeetsLiveEvents(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name     string
		released int // held deliveries let through while the replay is read: of e2, e3
	}{{"feed past the replay", 2}, {"feed half way", 1}, {"feed behind", 0}} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := &laggingBroker{MemoryBroker: &sse.MemoryBroker{}}
			h := &sse.Hub{Broker: b}
			ts := hubServer(t, h)
			live := subscribed(t, h, ts, "topic=t", nil)
			e1 := publish(t, h, "t", "e1")
			b.release(-1)
			replayed := make(chan struct{})
			b.beforeReplay = func() {
				defer close(replayed)
				publish(t, h, "t", "e2", "e3") // stored before the replay reads
				b.release(tt.released)         // and some delivered live meanwhile
			}
			resumed := subscribed(t, h, ts, "topic=t", http.Header{"Last-Event-Id": e1})
			<-replayed
			b.release(-1)
			publish(t, h, "t", "e4")
			b.release(-1)
			for _, w := range []string{"e1", "e2", "e3", "e4"} {
				if got := next(t, live); got.data != w {
					t.Fatalf("live: got %q, want %q", got.data, w)
				}
			}
			for _, w := range []string{"e2", "e3", "e4"} {
				if got := next(t, resumed); got.data != w {
					t.Fatalf("resumed: got %q, want %q", got.data, w)
				}
			}
		})
	}
}
