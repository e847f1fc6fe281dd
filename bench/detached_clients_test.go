package bench_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	r3 "github.com/r3labs/sse/v2"
	gosse "github.com/tmaxmax/go-sse"
	"gopkg.in/cenkalti/backoff.v1"

	"github.com/b2ce5911/sse"
)

// detachedWait bounds each wait of these tests: ample on a loaded machine.
const detachedWait = 20 * time.Second

// detachedServer is a Hub that detaches its streams, on a plain HTTP/1.1
// httptest server, behind a handler that restart can point at a new Hub on
// the same Broker: the old Hub's streams end with the last chunk, and
// their clients come back to the new one.
type detachedServer struct {
	t        *testing.T
	url      string
	broker   *sse.MemoryBroker
	hub      atomic.Pointer[sse.Hub]
	hijacked atomic.Int64 // connections net/http reported as StateHijacked

	mu          sync.Mutex
	lastEventID []string // the Last-Event-ID of each request, in order
}

func newDetachedServer(t *testing.T) *detachedServer {
	t.Helper()
	s := &detachedServer{t: t, broker: &sse.MemoryBroker{}}
	s.hub.Store(s.newHub())
	ts := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.lastEventID = append(s.lastEventID, r.Header.Get("Last-Event-ID"))
		s.mu.Unlock()
		s.hub.Load().ServeHTTP(w, r)
	}))
	ts.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateHijacked {
			s.hijacked.Add(1)
		}
	}
	ts.Start()
	s.url = ts.URL + "/events?topic=t"
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), detachedWait)
		defer cancel()
		s.hub.Load().Shutdown(ctx)
		ts.Close()
		s.broker.Close()
	})
	return s
}

func (s *detachedServer) newHub() *sse.Hub {
	return &sse.Hub{Broker: s.broker, Logger: slog.New(slog.DiscardHandler), Upgrader: sse.Upgrader{RetryTime: 20 * time.Millisecond, RetryJitter: -1}}
}

// waitStream waits until the current Hub serves one stream, and n
// connections in all were hijacked: the stream is detached.
func (s *detachedServer) waitStream(n int64) {
	s.t.Helper()
	deadline := time.Now().Add(detachedWait)
	for s.hub.Load().Stats().Subscribers != 1 || s.hijacked.Load() != n {
		if time.Now().After(deadline) {
			s.t.Fatalf("waited %v for a detached stream: %+v, %d hijacked, want %d", detachedWait, s.hub.Load().Stats(), s.hijacked.Load(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// publish publishes events from..to-1 and returns what a client should
// see of each: "id data". Their data vary in size and lines, so that the
// chunks do too: one spans several lines, one is larger than a read.
func (s *detachedServer) publish(from, to int) []string {
	s.t.Helper()
	var want []string
	for i := from; i < to; i++ {
		data := fmt.Sprintf("event %d", i)
		switch i % 3 {
		case 1:
			data += "\nsecond line\nthird line"
		case 2:
			data += " " + strings.Repeat("x", 9000)
		}
		id, err := s.hub.Load().Publish(context.Background(), "t", sse.Message{Data: []byte(data)})
		if err != nil {
			s.t.Fatal(err)
		}
		want = append(want, id+" "+data)
	}
	return want
}

// restart points the handler at a new Hub on the same Broker, then shuts
// the old one down, which ends its streams.
func (s *detachedServer) restart() {
	s.t.Helper()
	old := s.hub.Swap(s.newHub())
	ctx, cancel := context.WithTimeout(context.Background(), detachedWait)
	defer cancel()
	if err := old.Shutdown(ctx); err != nil {
		s.t.Fatalf("shutdown: %v", err)
	}
}

func (s *detachedServer) requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.lastEventID)
}

// received gathers what a client dispatched, "id data", without the Hub's
// position blocks (an id without data), which these clients dispatch.
type received struct {
	mu  sync.Mutex
	got []string
}

func (r *received) add(id, data string) {
	if data == "" {
		return
	}
	r.mu.Lock()
	r.got = append(r.got, id+" "+data)
	r.mu.Unlock()
}

// wait waits until n events came, and checks they are want.
func (r *received) wait(t *testing.T, client string, want []string) {
	t.Helper()
	deadline := time.Now().Add(detachedWait)
	for {
		r.mu.Lock()
		got := slices.Clone(r.got)
		r.mu.Unlock()
		if len(got) >= len(want) {
			if !slices.Equal(got, want) {
				t.Fatalf("%s got %d events:\n%s\nwant %d:\n%s", client, len(got), short(got), len(want), short(want))
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: waited %v for %d events, got %d:\n%s", client, detachedWait, len(want), len(got), short(got))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func short(events []string) string {
	var b strings.Builder
	for _, e := range events {
		if len(e) > 60 {
			e = e[:60] + "…"
		}
		fmt.Fprintf(&b, "\t%q\n", e)
	}
	return b.String()
}

// TestDetachedGoSSE reads a detached stream with go-sse's Client: it gets
// every event, in order, with its id; at the Hub's Shutdown it sees the
// stream end cleanly (its "connection lost" wraps io.EOF itself, where a
// truncated or malformed chunked body gives io.ErrUnexpectedEOF or a
// chunked-encoding error, and a cut final line the parser's own
// ErrUnexpectedEOF), reconnects with the last id as
// Last-Event-ID, and gets the events published meanwhile, none twice.
func TestDetachedGoSSE(t *testing.T) {
	s := newDetachedServer(t)
	ctx, cancel := context.WithCancel(context.Background())
	var r received
	retries := make(chan error, 10)
	client := &gosse.Client{
		HTTPClient: &http.Client{},
		OnRetry: func(err error, _ time.Duration) {
			select {
			case retries <- err:
			default:
			}
		},
		Backoff: gosse.Backoff{InitialInterval: 20 * time.Millisecond, Multiplier: 1, Jitter: -1},
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url, nil)
	if err != nil {
		t.Fatal(err)
	}
	conn := client.NewConnection(req)
	conn.SubscribeToAll(func(e gosse.Event) { r.add(e.LastEventID, e.Data) })
	done := make(chan error, 1)
	go func() { done <- conn.Connect() }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("Connect returned %v, want context.Canceled", err)
		}
	})

	s.waitStream(1)
	want := s.publish(0, 7)
	r.wait(t, "go-sse", want)

	s.restart()
	select {
	case err := <-retries:
		var ce *gosse.ConnectionError
		if !errors.As(err, &ce) || ce.Reason != "connection to server lost" || ce.Err != io.EOF {
			t.Fatalf("go-sse retries after %v (%#v), want a clean end of the stream", err, ce)
		}
	case <-time.After(detachedWait):
		t.Fatalf("go-sse did not see the stream end in %v", detachedWait)
	}
	want = append(want, s.publish(7, 12)...)
	r.wait(t, "go-sse", want)
	s.waitStream(2)
	checkResumed(t, s, want[6])
}

// checkResumed checks that the client asked twice: first without a
// Last-Event-ID, then with the id of the last event before the restart.
func checkResumed(t *testing.T, s *detachedServer, lastBefore string) {
	t.Helper()
	id, _, _ := strings.Cut(lastBefore, " ")
	if got := s.requests(); !slices.Equal(got, []string{"", id}) {
		t.Errorf("the client sent Last-Event-ID %q, want %q", got, []string{"", id})
	}
}

// TestDetachedR3labs reads a detached stream with r3labs' Client: it gets
// every event, in order, with its id; at the Hub's Shutdown its Subscribe
// returns nil, which it does only at a clean EOF (a malformed or truncated
// chunked body is an error, and StopBackOff returns it); subscribed again,
// it sends the last id as Last-Event-ID and gets the events published
// meanwhile, none twice.
func TestDetachedR3labs(t *testing.T) {
	s := newDetachedServer(t)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	var r received
	client := r3.NewClient(s.url)
	client.ReconnectStrategy = &backoff.StopBackOff{}
	handler := func(e *r3.Event) { r.add(string(e.ID), string(e.Data)) }
	first := make(chan error, 1)
	go func() { first <- client.SubscribeRawWithContext(ctx, handler) }()

	s.waitStream(1)
	want := s.publish(0, 7)
	r.wait(t, "r3labs", want)

	s.restart()
	select {
	case err := <-first:
		if err != nil {
			t.Fatalf("r3labs' Subscribe returned %v at the end of the stream, want nil", err)
		}
	case <-time.After(detachedWait):
		t.Fatalf("r3labs did not see the stream end in %v", detachedWait)
	}
	want = append(want, s.publish(7, 12)...)
	second := make(chan error, 1)
	go func() { second <- client.SubscribeRawWithContext(ctx, handler) }()
	t.Cleanup(func() {
		cancel()
		<-second
	})
	r.wait(t, "r3labs", want)
	s.waitStream(2)
	checkResumed(t, s, want[6])
}

// TestDetachedCurl reads a detached stream with curl: its output, the
// body it decoded, is byte for byte the stream the Hub wrote (the retry
// time, the position, the events), and at the Hub's Shutdown curl exits
// 0, which it does only at the last chunk (18 or 56 for a body cut short
// or malformed).
func TestDetachedCurl(t *testing.T) {
	path, err := exec.LookPath("curl")
	if err != nil {
		t.Fatalf("curl not found (%v): install it with `apt-get install -y curl`", err)
	}
	s := newDetachedServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), detachedWait)
	defer cancel()
	var out lockedBuffer
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, path, "-sSN", "--http1.1", s.url)
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s.waitStream(1)
	events := s.publish(0, 7)
	last, _, _ := strings.Cut(events[len(events)-1], " ")
	for !strings.Contains(out.String(), "id: "+last+"\n") {
		if ctx.Err() != nil {
			t.Fatalf("curl did not print the events in %v; it printed %q", detachedWait, out.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	s.restart()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("curl: %v at the end of the stream, want exit 0; stderr %q", err, stderr.String())
	}

	// The position is the id before the first event: the stream started
	// on an empty topic, so it is the Broker's first position.
	got := out.String()
	head, rest, ok := strings.Cut(got, "\n\n")
	if !ok || !strings.HasPrefix(head, "retry: 20\nid: ") || strings.Count(head, "\n") != 1 {
		t.Fatalf("curl printed %q first, want the retry time and the position", head)
	}
	var want strings.Builder
	for _, e := range events {
		id, data, _ := strings.Cut(e, " ")
		fmt.Fprintf(&want, "id: %s\n", id)
		for _, line := range strings.Split(data, "\n") {
			fmt.Fprintf(&want, "data: %s\n", line)
		}
		want.WriteString("\n")
	}
	if rest != want.String() {
		t.Fatalf("curl printed, after the position:\n%s\nwant:\n%s", rest, want.String())
	}
}

// lockedBuffer is a bytes.Buffer that curl's output goroutine writes while
// the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
