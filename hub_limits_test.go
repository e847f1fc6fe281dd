package sse_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/b2ce5911/sse"
)

func (b *logBuffer) logger() *slog.Logger { return slog.New(slog.NewTextHandler(b, nil)) }

// refused sends a request that the hub must refuse, and returns its status,
// its body and its Retry-After header.
func refused(t *testing.T, ts *httptest.Server, method, url string, header http.Header) (int, string, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, nil)
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); strings.HasPrefix(ct, "text/event-stream") {
		t.Fatalf("%s %s: answered with a stream, status %d", method, url, resp.StatusCode)
	}
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(body)), resp.Header.Get("Retry-After")
}

// topicQuery asks for n topics named prefix0, prefix1...
func topicQuery(prefix string, n int) string {
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteByte('&')
		}
		fmt.Fprintf(&b, "topic=%s%d", prefix, i)
	}
	return b.String()
}

func TestHubRefusesTooManyTopics(t *testing.T) {
	t.Parallel()
	var log logBuffer
	h := &sse.Hub{Logger: log.logger()}
	ts := hubServer(t, h)
	for _, n := range []int{sse.DefaultMaxTopics + 1, 9000, sse.DefaultMaxTopics + 1} {
		code, body, _ := refused(t, ts, "GET", ts.URL+"?"+topicQuery("t", n), nil)
		if code != http.StatusBadRequest || body != "too many topics: at most "+strconv.Itoa(sse.DefaultMaxTopics) {
			t.Fatalf("%d topics: %d %q", n, code, body)
		}
	}
	// Duplicates count: the bound holds before any work on the names.
	if code, _, _ := refused(t, ts, "GET", ts.URL+"?"+strings.Repeat("topic=a&", sse.DefaultMaxTopics)+"topic=a", nil); code != http.StatusBadRequest {
		t.Fatalf("a topic named %d times: %d", sse.DefaultMaxTopics+1, code)
	}
	if s := h.Stats(); s.Topics != 0 || s.Refused != 4 {
		t.Fatalf("Stats() = %+v: want no topic and 4 refused", s)
	}
	if n := log.count("limit=MaxTopics"); n != 1 {
		t.Fatalf("%d log lines for 4 refusals in a row, want 1", n)
	}

	d := subscribed(t, h, ts, topicQuery("t", sse.DefaultMaxTopics), nil)
	publish(t, h, "t15", "last topic")
	if got := next(t, d); got.data != "last topic" {
		t.Fatalf("got %+v", got)
	}
	if s := h.Stats(); s.Topics != sse.DefaultMaxTopics {
		t.Fatalf("Stats() = %+v: want %d topics", s, sse.DefaultMaxTopics)
	}
}

func TestHubRefusesLongTopicName(t *testing.T) {
	t.Parallel()
	h := &sse.Hub{MaxTopicLength: 8}
	ts := hubServer(t, h)
	code, body, _ := refused(t, ts, "GET", ts.URL+"?topic=ok&topic=123456789", nil)
	if code != http.StatusBadRequest || body != "topic name too long: at most 8 bytes" {
		t.Fatalf("%d %q", code, body)
	}
	var le *sse.LimitError
	if _, err := h.Publish(context.Background(), "123456789", sse.Message{Data: []byte("x")}); !errors.As(err, &le) || le.Limit != "MaxTopicLength" || le.Max != 8 {
		t.Fatalf("Publish on a 9-byte topic: %v", err)
	}
	d := subscribed(t, h, ts, "topic=12345678", nil)
	publish(t, h, "12345678", "fits")
	if got := next(t, d); got.data != "fits" {
		t.Fatalf("got %+v", got)
	}
	if _, err := (&sse.Hub{Logger: quiet}).Publish(context.Background(), strings.Repeat("x", sse.DefaultMaxTopicLength+1), sse.Message{}); !errors.As(err, &le) {
		t.Fatalf("Publish beyond DefaultMaxTopicLength: %v", err)
	}
}

func TestHubFullAnswers503(t *testing.T) {
	t.Parallel()
	h := &sse.Hub{MaxSubscribers: 2, Upgrader: sse.Upgrader{RetryTime: 1500 * time.Millisecond, RetryJitter: -1}}
	ts := hubServer(t, h)
	subscribed(t, h, ts, "topic=a", nil)
	ctx, leave := context.WithCancel(context.Background())
	defer leave()
	req, _ := http.NewRequestWithContext(ctx, "GET", ts.URL+"?topic=b", nil)
	resp, err := ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	waitStats(t, h, "had 2 subscribers", func(s sse.HubStats) bool { return s.Subscribers == 2 })
	code, body, after := refused(t, ts, "GET", ts.URL+"?topic=c", nil)
	if code != http.StatusServiceUnavailable || body != "server full: try again later" || after != "2" {
		t.Fatalf("%d %q Retry-After %q: want 503 and 2 s, the retry time rounded up", code, body, after)
	}
	// Serve counts against the same bound.
	served := make(chan error, 1)
	own := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := sse.Upgrade(w, r)
		if err == nil {
			served <- h.Serve(c, "d")
		}
	}))
	defer own.Close()
	_, d := open(t, own.Client(), own.URL, nil)
	var le *sse.LimitError
	if err := <-served; !errors.As(err, &le) || le.Limit != "MaxSubscribers" || le.Max != 2 {
		t.Fatalf("Serve on a full hub: %v", err)
	}
	if _, err := d.Decode(); err != io.EOF {
		t.Fatalf("stream of a refused Serve: %v, want its end", err)
	}

	leave() // one leaves: there is room again
	waitStats(t, h, "saw one leave", func(s sse.HubStats) bool { return s.Subscribers == 1 })
	d = subscribed(t, h, ts, "topic=c", nil)
	publish(t, h, "c", "in")
	if got := next(t, d); got.data != "in" {
		t.Fatalf("got %+v", got)
	}
	if s := h.Stats(); s.Refused != 2 {
		t.Fatalf("Stats() = %+v, want 2 refused", s)
	}
}

func TestHubMaxPerClient(t *testing.T) {
	t.Parallel()
	h := &sse.Hub{MaxPerClient: 1, ClientAddr: func(r *http.Request) string { return r.Header.Get("X-Client") }}
	ts := hubServer(t, h)
	ann := http.Header{"X-Client": {"ann"}}
	subscribed(t, h, ts, "topic=a", ann)
	code, body, after := refused(t, ts, "GET", ts.URL+"?topic=b", ann)
	if code != http.StatusTooManyRequests || body != "too many streams from this client" || after == "" {
		t.Fatalf("%d %q Retry-After %q", code, body, after)
	}
	d := subscribed(t, h, ts, "topic=b", http.Header{"X-Client": {"bob"}})
	publish(t, h, "b", "bob's")
	if got := next(t, d); got.data != "bob's" {
		t.Fatalf("got %+v", got)
	}
	// Without a name from ClientAddr, the address counts: both test
	// clients share 127.0.0.1.
	subscribed(t, h, ts, "topic=c", nil)
	if code, _, _ := refused(t, ts, "GET", ts.URL+"?topic=d", nil); code != http.StatusTooManyRequests {
		t.Fatalf("a second stream from 127.0.0.1: %d", code)
	}
}

func TestHubPublishMaxDataSize(t *testing.T) {
	t.Parallel()
	h := &sse.Hub{MaxDataSize: 10}
	ts := hubServer(t, h)
	d := subscribed(t, h, ts, "topic=t", nil)
	var le *sse.LimitError
	if _, err := h.Publish(context.Background(), "t", sse.Message{Data: []byte("01234567890")}); !errors.As(err, &le) || le.Limit != "MaxDataSize" || le.Max != 10 {
		t.Fatalf("Publish of 11 bytes: %v", err)
	}
	publish(t, h, "t", "0123456789")
	if got := next(t, d); got.data != "0123456789" {
		t.Fatalf("got %+v: want the event that fits, and nothing of the one refused", got)
	}
	if s := h.Stats(); s.Published != 1 {
		t.Fatalf("Stats() = %+v, want 1 published", s)
	}
	big := &sse.Hub{Logger: quiet}
	defer big.Close()
	if _, err := big.Publish(context.Background(), "t", sse.Message{Data: make([]byte, sse.DefaultMaxDataSize+1)}); !errors.As(err, &le) {
		t.Fatalf("Publish beyond DefaultMaxDataSize: %v", err)
	}
	if _, err := big.Publish(context.Background(), "t", sse.Message{Data: make([]byte, sse.DefaultMaxDataSize)}); err != nil {
		t.Fatalf("Publish of DefaultMaxDataSize: %v", err)
	}
}

func TestHubServeEnforcesTopicBounds(t *testing.T) {
	t.Parallel()
	h := &sse.Hub{Logger: quiet, MaxTopics: 2}
	defer h.Close()
	served := make(chan error, 1)
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := sse.Upgrade(w, r)
		if err == nil {
			served <- h.Serve(c, r.URL.Query()["topic"]...)
		}
	}))
	defer ts.Close()
	_, d := open(t, ts.Client(), ts.URL+"?topic=a&topic=b&topic=c", nil)
	var le *sse.LimitError
	if err := <-served; !errors.As(err, &le) || le.Limit != "MaxTopics" || le.Max != 2 {
		t.Fatalf("Serve of 3 topics: %v", err)
	}
	if _, err := d.Decode(); err != io.EOF {
		t.Fatalf("stream: %v, want its end", err)
	}
	if s := h.Stats(); s.Topics != 0 || s.Refused != 1 {
		t.Fatalf("Stats() = %+v", s)
	}
}

// userTopics is an Authorize hook for per-user topics: a request may read
// the topic of the user it authenticates as, and public topics.
func userTopics(r *http.Request, topics []string) ([]string, error) {
	user := r.Header.Get("X-User") // a real server checks a session
	if user == "" {
		return nil, fmt.Errorf("no session cookie: %w", sse.ErrUnauthorized)
	}
	var allowed []string
	for _, t := range topics {
		if t == "user:"+user || !strings.HasPrefix(t, "user:") {
			allowed = append(allowed, t)
		}
	}
	if len(allowed) == 0 {
		return nil, errors.New("db: secret internal detail")
	}
	return allowed, nil
}

func TestHubAuthorize(t *testing.T) {
	t.Parallel()
	var log logBuffer
	h := &sse.Hub{Logger: log.logger(), Authorize: userTopics}
	ts := hubServer(t, h)

	code, body, _ := refused(t, ts, "GET", ts.URL+"?topic=user:42", http.Header{"X-User": {"7"}})
	if code != http.StatusForbidden || body != "forbidden" {
		t.Fatalf("another user's topic: %d %q", code, body)
	}
	if log.count("secret internal detail") != 1 {
		t.Fatal("the hook's error is not in the log")
	}
	code, body, _ = refused(t, ts, "GET", ts.URL+"?topic=user:42", nil)
	if code != http.StatusUnauthorized || body != "unauthorized" {
		t.Fatalf("no user: %d %q", code, body)
	}

	// Narrowed: user 7 asks for its own topic, user 42's and a public one.
	d := subscribed(t, h, ts, "topic=user:7&topic=user:42&topic=news", http.Header{"X-User": {"7"}})
	publish(t, h, "user:42", "not for 7")
	publish(t, h, "user:7", "for 7")
	publish(t, h, "news", "for all")
	for _, want := range []string{"for 7", "for all"} {
		if got := next(t, d); got.data != want {
			t.Fatalf("got %+v, want %q", got, want)
		}
	}
	if s := h.Stats(); s.Refused != 2 || s.Topics != 2 {
		t.Fatalf("Stats() = %+v: want 2 refused and 2 topics", s)
	}
}

// cors is a minimal CORS middleware for credentialed requests from one
// origin, as an application would put in front of a Hub.
func cors(origin string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Add("Vary", "Origin")
		if r.Header.Get("Origin") == origin {
			w.Header().Set("Access-Control-Allow-Origin", origin)
			w.Header().Set("Access-Control-Allow-Credentials", "true")
			if r.Method == http.MethodOptions {
				w.Header().Set("Access-Control-Allow-Headers", "Authorization, Last-Event-ID")
			}
		}
		next.ServeHTTP(w, r) // preflights too: the Hub must not stream them
	})
}

func TestHubBehindCORSMiddleware(t *testing.T) {
	t.Parallel()
	h := &sse.Hub{Logger: quiet}
	ts := httptest.NewServer(cors("https://app.example", h))
	defer ts.Close()
	defer h.Close() // first: it ends the stream that ts.Close waits for
	const origin = "https://app.example"

	req, _ := http.NewRequest(http.MethodOptions, ts.URL+"?topic=t", nil)
	req.Header.Set("Origin", origin)
	req.Header.Set("Access-Control-Request-Method", "GET")
	req.Header.Set("Access-Control-Request-Headers", "authorization")
	resp, err := ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent || resp.Header.Get("Access-Control-Allow-Origin") != origin ||
		resp.Header.Get("Content-Type") != "" || h.Stats().Subscriptions != 0 {
		t.Fatalf("preflight: %d %v, %+v", resp.StatusCode, resp.Header, h.Stats())
	}

	resp, d := open(t, ts.Client(), ts.URL+"?topic=t", http.Header{"Origin": {origin}})
	if resp.Header.Get("Access-Control-Allow-Origin") != origin || resp.Header.Get("Access-Control-Allow-Credentials") != "true" ||
		resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("stream: %d %v", resp.StatusCode, resp.Header)
	}
	waitStats(t, h, "had a subscriber", func(s sse.HubStats) bool { return s.Subscribers != 0 })
	publish(t, h, "t", "cross-origin")
	if e, err := d.Decode(); err != nil || string(e.Bytes()) != "cross-origin" {
		t.Fatalf("event: %v %v", e, err)
	}
}

// TestHubPanicGivesReservationBack: a panic in the application's code on
// ServeHTTP's path (here CheckRequest) is recovered by net/http; the
// stream's MaxPerClient reservation must still be given back, or the
// client is locked out for good.
func TestHubPanicGivesReservationBack(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	h := &sse.Hub{MaxPerClient: 1, Logger: quiet}
	h.Upgrader.CheckRequest = func(w http.ResponseWriter, r *http.Request) error {
		if calls.Add(1) == 1 {
			panic("application bug")
		}
		return nil
	}
	t.Cleanup(func() { h.Close() })
	ts := httptest.NewUnstartedServer(h)
	ts.Config.ErrorLog = log.New(io.Discard, "", 0)
	ts.Start()
	t.Cleanup(ts.Close)
	if resp, err := ts.Client().Get(ts.URL + "?topic=t"); err == nil {
		resp.Body.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, ts.URL+"?topic=t", nil)
	resp, err := ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("the client's next stream: %s; the one that panicked still counts", resp.Status)
	}
}
