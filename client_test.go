package sse_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/b2ce5911/sse"
)

// checkSentIDs checks the Last-Event-ID that each request sent, "-"
// standing for a request without the header.
func checkSentIDs(t *testing.T, reqs []stubRequest, want []string) {
	t.Helper()
	var ids []string
	for _, r := range reqs {
		id := "-"
		if v, ok := r.header["Last-Event-Id"]; ok {
			id = ""
			if len(v) > 0 {
				id = v[0]
			}
		}
		ids = append(ids, id)
	}
	if !slices.Equal(ids, want) {
		t.Errorf("Last-Event-IDs = %q, want %q", ids, want)
	}
}

func TestClientReconnection(t *testing.T) {
	t.Parallel()
	const base = time.Second
	tests := []struct {
		name   string
		steps  []stubStep
		config func(c *sse.Client)
		want   []ev
		// wantErr checks the error the stream ended with; nil means none.
		wantErr func(error) bool
		// wantIDs is the Last-Event-ID of each request; "-" means no header.
		wantIDs    []string
		wantDelays []span
		wantErrors int // errors passed to OnError
	}{
		{
			name:       "EOF reconnects with the last event ID",
			steps:      []stubStep{stubSend("id: 1\ndata: a\n\n"), stubSend("data: b\n\n")},
			want:       []ev{{"1", "message", "a"}, {"1", "message", "b"}},
			wantIDs:    []string{"-", "1", "1"},
			wantDelays: []span{exactly(base), exactly(base)},
			wantErrors: 2,
		},
		{
			name:       "network error reconnects and discards the partial event",
			steps:      []stubStep{stubBreak("id: 1\ndata: a\n\nid: 2\ndata: cut"), stubSend("data: b\n\n")},
			want:       []ev{{"1", "message", "a"}, {"1", "message", "b"}},
			wantIDs:    []string{"-", "1", "1"},
			wantDelays: []span{exactly(base), exactly(base)},
			wantErrors: 2,
		},
		{
			name:       "partial event at EOF is discarded with its id",
			steps:      []stubStep{stubSend("id: 1\ndata: a\n\nid: 2\ndata: cut"), stubSend("data: b\n\n")},
			want:       []ev{{"1", "message", "a"}, {"1", "message", "b"}},
			wantIDs:    []string{"-", "1", "1"},
			wantDelays: []span{exactly(base), exactly(base)},
			wantErrors: 2,
		},
		{
			name:       "server retry wins and is kept across connections",
			steps:      []stubStep{stubSend("retry: 1234\ndata: a\n\n"), stubSend("data: b\n\n"), stubSend("data: c\n\n")},
			want:       []ev{{"", "message", "a"}, {"", "message", "b"}, {"", "message", "c"}},
			wantIDs:    []string{"-", "-", "-", "-"},
			wantDelays: []span{exactly(1234 * time.Millisecond), exactly(1234 * time.Millisecond), exactly(1234 * time.Millisecond)},
			wantErrors: 3,
		},
		{
			name:       "hostile retry is capped",
			steps:      []stubStep{stubSend("retry: 1000000000000\ndata: a\n\n")},
			config:     func(c *sse.Client) { c.MaxReconnectDelay = 7 * time.Second },
			want:       []ev{{"", "message", "a"}},
			wantIDs:    []string{"-", "-"},
			wantDelays: []span{exactly(7 * time.Second)},
			wantErrors: 1,
		},
		{
			name:       "empty id resets: no header at all",
			steps:      []stubStep{stubSend("id: 1\ndata: a\n\nid: \ndata: b\n\n"), stubSend("data: c\n\n")},
			want:       []ev{{"1", "message", "a"}, {"", "message", "b"}, {"", "message", "c"}},
			wantIDs:    []string{"-", "-", "-"},
			wantDelays: []span{exactly(base), exactly(base)},
			wantErrors: 2,
		},
		{
			name:       "id reset by a block without data",
			steps:      []stubStep{stubSend("id: 1\ndata: a\n\nid\n\n"), stubSend("data: b\n\n")},
			want:       []ev{{"1", "message", "a"}, {"", "message", "b"}},
			wantIDs:    []string{"-", "-", "-"},
			wantDelays: []span{exactly(base), exactly(base)},
			wantErrors: 2,
		},
		{
			name:       "initial LastEventID is sent and carried by events",
			steps:      []stubStep{stubSend("data: a\n\nid: 2\ndata: b\n\n")},
			config:     func(c *sse.Client) { c.LastEventID = "start" },
			want:       []ev{{"start", "message", "a"}, {"2", "message", "b"}},
			wantIDs:    []string{"start", "2"},
			wantDelays: []span{exactly(base)},
			wantErrors: 1,
		},
		{
			name:    "204 stops without error",
			steps:   nil,
			wantIDs: []string{"-"},
		},
		{
			name:    "500 stops with a StatusError",
			steps:   []stubStep{stubStatus(http.StatusInternalServerError)},
			wantErr: isStatusError(http.StatusInternalServerError),
			wantIDs: []string{"-"},
		},
		{
			name:    "wrong Content-Type stops",
			steps:   []stubStep{stubSendAs("text/html", "data: a\n\n")},
			wantErr: func(err error) bool { return errors.Is(err, sse.ErrContentType) },
			wantIDs: []string{"-"},
		},
		{
			name:    "missing Content-Type stops",
			steps:   []stubStep{stubSendAs("", "data: a\n\n")},
			wantErr: func(err error) bool { return errors.Is(err, sse.ErrContentType) },
			wantIDs: []string{"-"},
		},
		{
			name:       "Content-Type with parameters and capitals is accepted",
			steps:      []stubStep{stubSendAs("Text/Event-Stream; charset=UTF-8", "data: a\n\n")},
			want:       []ev{{"", "message", "a"}},
			wantIDs:    []string{"-", "-"},
			wantDelays: []span{exactly(base)},
			wantErrors: 1,
		},
		{
			name:  "retryable status backs off, then a working connection resets",
			steps: []stubStep{stubStatus(503), stubStatus(503), stubStatus(503), stubSend("id: 9\ndata: a\n\n"), stubStatus(503)},
			config: func(c *sse.Client) {
				c.RetryStatus = func(code int) bool { return code == 503 }
			},
			want:    []ev{{"9", "message", "a"}},
			wantIDs: []string{"-", "-", "-", "-", "9", "9"},
			// 1 s, 2 s, 4 s with jitter, then exactly 1 s, then 1 s with jitter.
			wantDelays: []span{jittered(base), jittered(2 * base), jittered(4 * base), exactly(base), jittered(base)},
			wantErrors: 5,
		},
		{
			name:  "backoff is capped",
			steps: []stubStep{stubStatus(503), stubStatus(503), stubStatus(503), stubStatus(503)},
			config: func(c *sse.Client) {
				c.RetryStatus = func(code int) bool { return code == 503 }
				c.MaxReconnectDelay = 3 * time.Second
			},
			wantIDs:    []string{"-", "-", "-", "-", "-"},
			wantDelays: []span{jittered(base), {2 * base, 3 * base}, {2 * base, 3 * base}, {2 * base, 3 * base}}, // the jitter stays below the cap
			wantErrors: 4,
		},
		{
			name:  "MaxAttempts gives up with the last error",
			steps: []stubStep{stubStatus(503), stubStatus(503), stubStatus(503), stubStatus(503)},
			config: func(c *sse.Client) {
				c.RetryStatus = func(code int) bool { return code == 503 }
				c.MaxAttempts = 3
			},
			wantErr:    isStatusError(503),
			wantIDs:    []string{"-", "-", "-"},
			wantDelays: []span{jittered(base), jittered(2 * base)},
			wantErrors: 2,
		},
		{
			name:    "event over MaxEventSize stops for good",
			steps:   []stubStep{stubSend("data: 0123456789\n\n")},
			config:  func(c *sse.Client) { c.MaxEventSize = 5 },
			wantErr: func(err error) bool { return errors.Is(err, sse.ErrEventTooLarge) },
			wantIDs: []string{"-"},
		},
		{
			name:       "redirect without Location is a StatusError",
			steps:      []stubStep{stubRedirect(http.StatusTemporaryRedirect, "")},
			wantErr:    isStatusError(http.StatusTemporaryRedirect),
			wantIDs:    []string{"-"},
			wantErrors: 0,
		},
		{
			name:       "redirect is followed and the request resent",
			steps:      []stubStep{stubRedirect(http.StatusTemporaryRedirect, "/moved"), stubSend("data: a\n\n")},
			want:       []ev{{"", "message", "a"}},
			wantIDs:    []string{"-", "-", "-"},
			wantDelays: []span{exactly(base)},
			wantErrors: 1,
		},
		{
			name:       "negative ReconnectDelay reconnects at once",
			steps:      []stubStep{stubSend("data: a\n\n")},
			config:     func(c *sse.Client) { c.ReconnectDelay = -1 },
			want:       []ev{{"", "message", "a"}},
			wantIDs:    []string{"-", "-"},
			wantDelays: []span{exactly(0)},
			wantErrors: 1,
		},
		{
			name:    "zero ReconnectDelay means 3 s",
			steps:   []stubStep{stubSend("data: a\n\n"), stubStatus(503)},
			config:  func(c *sse.Client) { c.ReconnectDelay = 0; c.RetryStatus = func(int) bool { return true } },
			want:    []ev{{"", "message", "a"}},
			wantIDs: []string{"-", "-", "-"},
			// After a failure the wait is 3 s with jitter; a 204 then stops.
			wantDelays: []span{exactly(3 * time.Second), jittered(3 * time.Second)},
			wantErrors: 2,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := newStubServer(t, tt.steps...)
			var rec stubDelays
			var errs stubErrorLog
			c := &sse.Client{HTTPClient: srv.Client(), ReconnectDelay: base, OnError: errs.add}
			if tt.config != nil {
				tt.config(c)
			}
			rec.install(c)
			got, err := stubCollect(context.Background(), c, srv.URL)
			if tt.wantErr == nil && err != nil || tt.wantErr != nil && (err == nil || !tt.wantErr(err)) {
				t.Errorf("error = %v", err)
			}
			if !equalEvents(got, tt.want) {
				t.Errorf("events = %q, want %q", got, tt.want)
			}
			reqs := srv.requests()
			checkSentIDs(t, reqs, tt.wantIDs)
			checkStubDelays(t, rec.get(), tt.wantDelays)
			if n := len(errs.get()); n != tt.wantErrors {
				t.Errorf("OnError called %d times, want %d: %v", n, tt.wantErrors, errs.get())
			}
		})
	}
}

func isStatusError(code int) func(error) bool {
	return func(err error) bool {
		var se *sse.StatusError
		return errors.As(err, &se) && se.StatusCode == code && strings.HasPrefix(se.Error(), "sse: ")
	}
}

// checkStubDelays checks that each wait is within its span.
func checkStubDelays(t *testing.T, got []time.Duration, want []span) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("delays = %v, want %v", got, want)
		return
	}
	for i, w := range want {
		if got[i] < w.lo || got[i] > w.hi {
			t.Errorf("delay %d = %v, want within [%v, %v]", i, got[i], w.lo, w.hi)
		}
	}
}

func TestBackoff(t *testing.T) {
	t.Parallel()
	const limit = 30 * time.Second
	tests := []struct {
		name        string
		base, limit time.Duration
		failures    int
		r           float64
		want        time.Duration
	}{
		{"after a working connection: exactly the base", 3 * time.Second, limit, 0, 0.7, 3 * time.Second},
		{"zero base after a working connection", 0, limit, 0, 0.7, 0},
		{"negative base is zero", -time.Second, limit, 0, 0.7, 0},
		{"base over the cap is capped", time.Hour, limit, 0, 0.5, limit},
		{"first failure, no jitter", time.Second, limit, 1, 0, time.Second},
		{"first failure, full jitter", time.Second, limit, 1, 0.999999, 1500*time.Millisecond - time.Microsecond/2},
		{"doubling", time.Second, limit, 3, 0, 4 * time.Second},
		{"doubling, full jitter", time.Second, limit, 3, 0.999999, 6*time.Second - 2*time.Microsecond},
		{"zero base has a floor", 0, limit, 1, 0, 100 * time.Millisecond},
		{"zero base doubles from the floor", 0, limit, 4, 0, 800 * time.Millisecond},
		{"doubled to 16 s, half the jitter", time.Second, limit, 5, 0.5, 20 * time.Second},
		{"jitter that would pass the cap is taken below it", time.Second, 20 * time.Second, 5, 0, 20*time.Second - 20*time.Second/3},
		{"cap reached: spread over its last third", time.Second, limit, 6, 0, 20 * time.Second},
		{"cap reached, full jitter", time.Second, limit, 6, 0.999999, limit - 10*time.Microsecond},
		{"near the cap the jitter never goes below the base", 25 * time.Second, limit, 1, 0, 25 * time.Second},
		{"base at the cap: exactly the cap", limit, limit, 3, 0.5, limit},
		{"many failures do not overflow", time.Second, limit, 1 << 30, 0.5, 25 * time.Second},
		{"huge cap does not overflow", time.Second, 1<<63 - 1, 200, 0, (1<<63 - 1) - (1<<63-1)/3},
		{"huge cap, full jitter does not overflow", time.Second, 1<<63 - 1, 200, 0.9999999999999999, 1<<63 - 1},
		{"cap below the floor", 0, 10 * time.Millisecond, 3, 0, 10*time.Millisecond - 10*time.Millisecond/3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := sse.Backoff(tt.base, tt.limit, tt.failures, tt.r)
			diff := got - tt.want
			if diff < -time.Microsecond || diff > time.Microsecond {
				t.Errorf("Backoff(%v, %v, %d, %v) = %v, want %v", tt.base, tt.limit, tt.failures, tt.r, got, tt.want)
			}
			// The standard's rule: never less than the reconnection time.
			if lo := min(max(tt.base, 0), tt.limit); got < lo || got > max(tt.limit, 0) {
				t.Errorf("Backoff(%v, %v, %d, %v) = %v, outside [reconnection time, cap]", tt.base, tt.limit, tt.failures, tt.r, got)
			}
		})
	}
}

func TestClientRequest(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		config     func(c *sse.Client)
		wantMethod string
		wantBody   string
		wantHeader map[string]string
	}{
		{
			name:       "defaults",
			wantMethod: "GET",
			wantHeader: map[string]string{"Accept": "text/event-stream", "Cache-Control": "no-cache"},
		},
		{
			name: "POST body and headers are sent on every connection",
			config: func(c *sse.Client) {
				c.Method = "POST"
				c.Body = []byte(`{"hello": "world"}`)
				c.Header = http.Header{"Content-Type": {"application/json"}, "X-Token": {"t"}}
			},
			wantMethod: "POST",
			wantBody:   `{"hello": "world"}`,
			wantHeader: map[string]string{"Content-Type": "application/json", "X-Token": "t", "Accept": "text/event-stream"},
		},
		{
			name:       "REPORT",
			config:     func(c *sse.Client) { c.Method = "REPORT"; c.Body = []byte("q") },
			wantMethod: "REPORT",
			wantBody:   "q",
		},
		{
			name: "Header may override Accept, not Last-Event-ID",
			config: func(c *sse.Client) {
				c.Header = http.Header{"Accept": {"text/event-stream, */*"}, "Last-Event-Id": {"forged"}}
			},
			wantMethod: "GET",
			wantHeader: map[string]string{"Accept": "text/event-stream, */*", "Last-Event-Id": ""},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := newStubServer(t, stubSend("data: a\n\n"), stubBreak("data: b\n\n"))
			c := &sse.Client{HTTPClient: srv.Client()}
			if tt.config != nil {
				tt.config(c)
			}
			new(stubDelays).install(c)
			if _, err := stubCollect(context.Background(), c, srv.URL); err != nil {
				t.Fatal(err)
			}
			reqs := srv.requests()
			if len(reqs) != 3 {
				t.Fatalf("%d requests, want 3", len(reqs))
			}
			for i, r := range reqs {
				if r.method != tt.wantMethod || r.body != tt.wantBody {
					t.Errorf("request %d: %s with body %q, want %s with %q", i, r.method, r.body, tt.wantMethod, tt.wantBody)
				}
				for k, v := range tt.wantHeader {
					if got := r.header.Get(k); got != v {
						t.Errorf("request %d: %s = %q, want %q", i, k, got, v)
					}
				}
			}
		})
	}
}

func TestClientRedirectKeepsBodyAndURI(t *testing.T) {
	t.Parallel()
	srv := newStubServer(t, stubRedirect(http.StatusTemporaryRedirect, "/moved"), stubSend("data: a\n\n"))
	c := &sse.Client{HTTPClient: srv.Client(), Method: "POST", Body: []byte("payload")}
	new(stubDelays).install(c)
	var uris []string
	for e, err := range c.Events(context.Background(), srv.URL+"/start") {
		if err != nil {
			t.Fatal(err)
		}
		uris = append(uris, e.URI)
	}
	reqs := srv.requests()
	if len(reqs) < 2 || reqs[1].path != "/moved" || reqs[1].method != "POST" || reqs[1].body != "payload" {
		t.Errorf("requests = %+v", reqs)
	}
	if len(uris) != 1 || uris[0] != srv.URL+"/start" {
		t.Errorf("URIs = %q, want the URI the caller gave", uris)
	}
}

// TestClientReadTimeout is TestClientSilentServerFakeTime over a real
// connection, in real time: the ReadTimeout leaves a loaded machine ample
// time to answer the reconnection, which must not time out.
func TestClientReadTimeout(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		first stubStep
		want  []ev
	}{
		{"silent stream", stubHang("data: a\n\n"), []ev{{"", "message", "a"}, {"", "message", "b"}}},
		{"no response headers", stubHangBeforeHeaders, []ev{{"", "message", "b"}}},
	}
	// The cases run at once in this test's slot of -parallel (GOMAXPROCS
	// slots): each spends its time waiting, in real time.
	var wg sync.WaitGroup
	for _, tt := range tests {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t.Run(tt.name, func(t *testing.T) {
				srv := newStubServer(t, tt.first, stubSend("data: b\n\n"))
				var errs stubErrorLog
				c := &sse.Client{HTTPClient: srv.Client(), ReadTimeout: time.Second, OnError: errs.add}
				new(stubDelays).install(c)
				got, err := stubCollect(context.Background(), c, srv.URL)
				if err != nil {
					t.Fatal(err)
				}
				if !equalEvents(got, tt.want) {
					t.Errorf("events = %q, want %q", got, tt.want)
				}
				e := errs.get()
				if len(e) != 2 || !errors.Is(e[0], sse.ErrReadTimeout) || !errors.Is(e[1], io.EOF) {
					t.Errorf("OnError got %v, want a read timeout then an end of stream", e)
				}
			})
		}()
	}
	wg.Wait()
}

// A consumer that takes longer than the read timeout over each event must not
// make the Client drop a stream that delivers what it has.
func TestClientLargeEvents(t *testing.T) {
	t.Parallel()
	for _, size := range []int{5 << 20, 10 << 20} {
		data := strings.Repeat("x", size-1) + "y"
		srv := newStubServer(t, stubSend("data: "+data+"\n\ndata: small\n\n"))
		c := &sse.Client{HTTPClient: srv.Client()}
		new(stubDelays).install(c)
		var sizes []int
		for e, err := range c.Events(context.Background(), srv.URL) {
			if err != nil {
				t.Fatal(err)
			}
			if b := e.Bytes(); len(b) == size && string(b) != data {
				t.Errorf("%d-byte event corrupted", size)
			}
			sizes = append(sizes, len(e.Bytes()))
		}
		if len(sizes) != 2 || sizes[0] != size || sizes[1] != 5 {
			t.Errorf("event sizes = %v, want [%d 5]", sizes, size)
		}
	}
}

func TestClientContextEnds(t *testing.T) {
	t.Parallel()
	cause := errors.New("shutting down")
	tests := []struct {
		name string
		// run reads the stream until the first event arrives, calls stop,
		// and returns the error the stream ended with.
		run  func(c *sse.Client, ctx context.Context, url string, stop func()) error
		stop func(cancel context.CancelCauseFunc)
		want error
	}{
		{
			name: "Events yields the context error",
			run: func(c *sse.Client, ctx context.Context, url string, stop func()) error {
				for _, err := range c.Events(ctx, url) {
					if err != nil {
						return err
					}
					stop()
				}
				return nil
			},
			stop: func(cancel context.CancelCauseFunc) { cancel(nil) },
			want: context.Canceled,
		},
		{
			name: "Notify returns the cause",
			run: func(c *sse.Client, ctx context.Context, url string, stop func()) error {
				ch := make(chan *sse.Event) // unbuffered: Notify must not block on it after the end
				done := make(chan error, 1)
				go func() { done <- c.Notify(ctx, url, ch) }()
				<-ch
				stop()
				return <-done
			},
			stop: func(cancel context.CancelCauseFunc) { cancel(cause) },
			want: cause,
		},
		{
			name: "breaking out of the loop",
			run: func(c *sse.Client, ctx context.Context, url string, stop func()) error {
				for range c.Events(ctx, url) {
					break
				}
				return nil
			},
			stop: func(context.CancelCauseFunc) {},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			closed := make(chan struct{})
			srv := newStubServer(t, func(w http.ResponseWriter, r *http.Request, quit <-chan struct{}) {
				stubHang("data: a\n\n")(w, r, quit)
				close(closed)
			})
			ctx, cancel := context.WithCancelCause(context.Background())
			defer cancel(nil)
			c := &sse.Client{HTTPClient: srv.Client()}
			err := tt.run(c, ctx, srv.URL, func() { tt.stop(cancel) })
			if !errors.Is(err, tt.want) && err != tt.want {
				t.Errorf("error = %v, want %v", err, tt.want)
			}
			<-closed // the server saw the client go away
		})
	}
}

func TestClientContextEndsDuringWait(t *testing.T) {
	t.Parallel()
	srv := newStubServer(t, stubSend("data: a\n\n"))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := &sse.Client{HTTPClient: srv.Client(), ReconnectDelay: time.Hour}
	c.OnError = func(error) { cancel() } // the Client is about to wait an hour
	got, err := stubCollect(ctx, c, srv.URL)
	if !errors.Is(err, context.Canceled) || len(got) != 1 {
		t.Errorf("got %q, %v; want one event and context.Canceled", got, err)
	}
}

func TestClientNotify(t *testing.T) {
	t.Parallel()
	c := &sse.Client{}
	if err := c.Notify(context.Background(), "http://127.0.0.1:1", nil); err != sse.ErrNilChan {
		t.Errorf("nil channel: %v, want ErrNilChan", err)
	}

	srv := newStubServer(t, stubSend("id: 1\ndata: a\n\n"), stubSend("data: b\n\n"))
	c = &sse.Client{HTTPClient: srv.Client()}
	new(stubDelays).install(c)
	ch := make(chan *sse.Event, 10)
	if err := c.Notify(context.Background(), srv.URL, ch); err != nil {
		t.Fatalf("Notify after a 204: %v", err)
	}
	close(ch) // Notify left the channel open for its owner
	var got []ev
	for e := range ch {
		if e.URI != srv.URL {
			t.Errorf("URI = %q, want %q", e.URI, srv.URL)
		}
		got = append(got, ev{e.ID, e.Type, string(e.Bytes())})
	}
	if want := []ev{{"1", "message", "a"}, {"1", "message", "b"}}; !equalEvents(got, want) {
		t.Errorf("events = %q, want %q", got, want)
	}
}

func TestClientHooks(t *testing.T) {
	t.Parallel()
	srv := newStubServer(t, stubSend(": hello\ndata: a\n\n:bye\n"), stubStatus(500))
	var logs bytes.Buffer
	var connects atomic.Int32
	var comments []string
	c := &sse.Client{
		HTTPClient: srv.Client(),
		Logger:     slog.New(slog.NewTextHandler(&logs, nil)),
		OnConnect:  func(resp *http.Response) { connects.Add(1) },
		OnComment:  func(text string) { comments = append(comments, text) },
	}
	new(stubDelays).install(c)
	_, err := stubCollect(context.Background(), c, srv.URL)
	if !isStatusError(500)(err) {
		t.Errorf("error = %v, want status 500", err)
	}
	if connects.Load() != 1 {
		t.Errorf("OnConnect called %d times, want 1", connects.Load())
	}
	if strings.Join(comments, "|") != "hello|bye" {
		t.Errorf("comments = %q", comments)
	}
	for _, msg := range []string{"sse: connected", "sse: reconnecting", "sse: stopped", "500"} {
		if !strings.Contains(logs.String(), msg) {
			t.Errorf("log lacks %q:\n%s", msg, logs.String())
		}
	}
}

func TestClientZeroValue(t *testing.T) {
	t.Parallel()
	srv := newStubServer(t, stubStatus(http.StatusNotFound))
	var c sse.Client // DefaultClient, GET, no delays needed: the 404 is final
	_, err := stubCollect(context.Background(), &c, srv.URL)
	if !isStatusError(http.StatusNotFound)(err) {
		t.Errorf("error = %v, want status 404", err)
	}
	sse.DefaultClient.CloseIdleConnections()
}

func TestClientBadRequestIsFinal(t *testing.T) {
	t.Parallel()
	c := &sse.Client{Method: "BAD METHOD"}
	new(stubDelays).install(c)
	if _, err := stubCollect(context.Background(), c, "http://127.0.0.1:1/"); err == nil {
		t.Error("no error for an invalid method")
	}
}

// TestClientPrepare checks the per-attempt request hook: a token fetched
// afresh for every attempt, a body rebuilt for every attempt (and re-sent
// on a redirect), Last-Event-ID visible to the hook and kept by the Client
// whatever the hook does to it, the attempt's own context, and an error
// from the hook that stops the Client, wrapped.
func TestClientPrepare(t *testing.T) {
	t.Parallel()
	t.Run("token and body per attempt", func(t *testing.T) {
		t.Parallel()
		srv := newStubServer(t,
			stubSend("id: 1\ndata: a\n\n"),
			stubRedirect(http.StatusTemporaryRedirect, "/moved"), stubBreak("id: 2\ndata: b\n\n"),
			stubSend("data: c\n\n"))
		var n int
		var seenIDs []string
		var ctxs []context.Context
		c := &sse.Client{
			HTTPClient: srv.Client(),
			Header:     http.Header{"X-Static": {"kept"}},
			Prepare: func(req *http.Request) error {
				n++
				seenIDs = append(seenIDs, req.Header.Get("Last-Event-ID"))
				ctxs = append(ctxs, req.Context())
				req.Header.Set("Authorization", fmt.Sprintf("Bearer token-%d", n))
				req.Header.Set("Last-Event-ID", "forged") // the Client's: set again after the hook
				body := fmt.Sprintf(`{"attempt": %d, "resume": %q}`, n, seenIDs[n-1])
				req.Method = http.MethodPost
				req.ContentLength = int64(len(body))
				req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(body)), nil }
				req.Body, _ = req.GetBody()
				return nil
			},
		}
		new(stubDelays).install(c)
		got, err := stubCollect(context.Background(), c, srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		if want := []ev{{"1", "message", "a"}, {"2", "message", "b"}, {"2", "message", "c"}}; !equalEvents(got, want) {
			t.Errorf("events = %q, want %q", got, want)
		}
		if want := []string{"", "1", "2", "2"}; !slices.Equal(seenIDs, want) {
			t.Errorf("Prepare saw Last-Event-IDs %q, want %q", seenIDs, want)
		}
		reqs := srv.requests()
		checkSentIDs(t, reqs, []string{"-", "1", "1", "2", "2"})
		// The redirect's second request is the same attempt: same token, same body.
		attempt := []int{1, 2, 2, 3, 4}
		resume := []string{"", "1", "1", "2", "2"}
		for i, r := range reqs {
			k := attempt[i]
			if got, want := r.header.Get("Authorization"), fmt.Sprintf("Bearer token-%d", k); got != want {
				t.Errorf("request %d: Authorization %q, want %q", i, got, want)
			}
			if want := fmt.Sprintf(`{"attempt": %d, "resume": %q}`, k, resume[i]); r.method != "POST" || r.body != want {
				t.Errorf("request %d: %s %q, want POST %q", i, r.method, r.body, want)
			}
			if r.header.Get("X-Static") != "kept" || r.header.Get("Accept") != "text/event-stream" {
				t.Errorf("request %d: headers %v lack Header's or the Client's", i, r.header)
			}
		}
		for i, ctx := range ctxs {
			if ctx.Err() == nil {
				t.Errorf("attempt %d: the request's context outlived its attempt", i+1)
			}
		}
	})
	t.Run("error stops the Client", func(t *testing.T) {
		t.Parallel()
		errExpired := errors.New("refresh token expired")
		srv := newStubServer(t, stubSend("id: 1\ndata: a\n\n"), stubSend("data: never\n\n"))
		var errs stubErrorLog
		attempts := 0
		c := &sse.Client{
			HTTPClient: srv.Client(),
			OnError:    errs.add,
			Prepare: func(req *http.Request) error {
				if attempts++; attempts > 1 {
					return fmt.Errorf("fetching a token: %w", errExpired)
				}
				return nil
			},
		}
		new(stubDelays).install(c)
		got, err := stubCollect(context.Background(), c, srv.URL)
		if !errors.Is(err, errExpired) || !strings.HasPrefix(err.Error(), "sse: ") {
			t.Errorf("error = %v, want one wrapping the hook's", err)
		}
		if want := []ev{{"1", "message", "a"}}; !equalEvents(got, want) {
			t.Errorf("events = %q, want %q", got, want)
		}
		if n := len(srv.requests()); n != 1 || attempts != 2 {
			t.Errorf("%d requests and %d calls of Prepare, want 1 and 2", n, attempts)
		}
		if e := errs.get(); len(e) != 1 || !errors.Is(e[0], io.EOF) {
			t.Errorf("OnError got %v, want the first stream's end only", e)
		}
	})
}
