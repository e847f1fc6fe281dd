package e2e

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/b2ce5911/sse"
)

// detachedPage opens an EventSource on topic t and keeps, in order, what
// it dispatched ("lastEventId data"), how often it opened and how often it
// saw the stream end or fail.
const detachedPage = `<!doctype html>
<title>detached</title>
<link rel="icon" href="data:,">
<script>
window.got = [];
window.opens = 0;
window.errors = 0;
const es = new EventSource("/events?topic=t");
es.onopen = () => { opens++; };
es.onerror = () => { errors++; };
es.onmessage = e => { got.push(e.lastEventId + " " + e.data); };
</script>
`

// TestDetachedInBrowser reads a detached Hub stream (HTTP/1.1, hijacked
// after the headers) with Chromium's EventSource: the page gets every
// event, in order, with its id, several lines and 9 KB ones included, and
// the Hub's position (an id without data) dispatches nothing. Then the Hub
// shuts down, its stream ending with the last chunk, and a new Hub on the
// same Broker takes the requests: the page sees the end, reconnects after
// the retry time the stream sent, with the last id as Last-Event-ID, and
// gets the events published meanwhile and after, none twice, none missing.
// A console error fails it too: a stream that ends without its last chunk
// shows net::ERR_INCOMPLETE_CHUNKED_ENCODING, although EventSource then
// reconnects all the same.
func TestDetachedInBrowser(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)

	broker := &sse.MemoryBroker{}
	newHub := func() *sse.Hub {
		return &sse.Hub{Broker: broker, Logger: slog.New(slog.NewTextHandler(testWriter{t}, nil)),
			Upgrader: sse.Upgrader{RetryTime: 50 * time.Millisecond, RetryJitter: -1}}
	}
	var hub atomic.Pointer[sse.Hub]
	hub.Store(newHub())
	var hijacked atomic.Int64
	var mu sync.Mutex
	var lastEventIDs []string // of each stream request, in order
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, detachedPage)
	})
	mux.HandleFunc("GET /events", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		lastEventIDs = append(lastEventIDs, r.Header.Get("Last-Event-ID"))
		mu.Unlock()
		hub.Load().ServeHTTP(w, r)
	})
	ts := httptest.NewUnstartedServer(mux) // 127.0.0.1 only, HTTP/1.1
	ts.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateHijacked {
			hijacked.Add(1)
		}
	}
	ts.Start()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), stepTimeout)
		defer cancel()
		hub.Load().Shutdown(ctx)
		ts.Close()
		broker.Close()
	})

	// waitStream waits until the Hub serves one stream and n connections
	// in all were hijacked: the browser's stream is detached.
	waitStream := func(n int64) {
		t.Helper()
		deadline := time.Now().Add(stepTimeout)
		for hub.Load().Stats().Subscribers != 1 || hijacked.Load() != n {
			if time.Now().After(deadline) {
				t.Fatalf("waited %v for a detached stream: %+v, %d hijacked, want %d", stepTimeout, hub.Load().Stats(), hijacked.Load(), n)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	var want []string
	publish := func(from, to int) {
		t.Helper()
		for i := from; i < to; i++ {
			data := fmt.Sprintf("event %d", i)
			switch i % 3 {
			case 1:
				data += "\nsecond line\nthird line"
			case 2:
				data += " " + strings.Repeat("x", 9000)
			}
			id, err := hub.Load().Publish(ctx, "t", sse.Message{Data: []byte(data)})
			if err != nil {
				t.Fatal(err)
			}
			want = append(want, id+" "+data)
		}
	}
	// check waits until the page has as many events as want, and checks
	// they are want.
	check := func(p *page, what string) {
		t.Helper()
		p.waitFor(what, fmt.Sprintf(`got.length >= %d`, len(want)))
		if got := eval[[]string](p, `got`); !slices.Equal(got, want) {
			t.Fatalf("%s: the page got %d events:\n%s\nwant %d:\n%s", what, len(got), short(got), len(want), short(want))
		}
	}

	first := browser(t, ctx)
	p := open(t, first, "detached", ts.URL+"/", desktop)
	p.waitFor("open", `opens === 1`)
	waitStream(1)
	publish(0, 7)
	check(p, "before the restart")

	old := hub.Swap(newHub())
	sctx, scancel := context.WithTimeout(ctx, stepTimeout)
	err := old.Shutdown(sctx)
	scancel()
	if err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	publish(7, 10) // while the page reconnects, or before
	p.waitFor("the end of the stream and a new one", `errors >= 1 && opens === 2`)
	waitStream(2)
	publish(10, 13)
	check(p, "after the restart")

	if n := eval[int](p, `errors`); n != 1 {
		t.Errorf("the page saw %d errors, want 1: the end of the first stream", n)
	}
	mu.Lock()
	ids := slices.Clone(lastEventIDs)
	mu.Unlock()
	lastBefore, _, _ := strings.Cut(want[6], " ")
	if !slices.Equal(ids, []string{"", lastBefore}) {
		t.Errorf("the page sent Last-Event-ID %q, want %q", ids, []string{"", lastBefore})
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
