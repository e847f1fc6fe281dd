package reliability_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"runtime/metrics"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/b2ce5911/sse"
)

// abuseStreamBudget is what the Hub's bounds let one stream cost at most,
// with its defaults (16 topics, each new, names of 256 bytes): net/http's
// share (about 14 KiB of heap and two goroutine stacks), the Hub's own, and
// a feed per topic. The package documents about 55 KB; the race detector's
// larger stacks make that some 57 KB here.
const abuseStreamBudget = 64 << 10

// serveLoopback serves h on a loopback port until the test ends, then
// calls first, which must end h's streams, and closes the server. It
// returns the address.
func serveLoopback(t *testing.T, h http.Handler, first func()) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	var served sync.WaitGroup
	served.Go(func() { srv.Serve(ln) })
	t.Cleanup(func() {
		first()
		srv.Close()
		served.Wait()
	})
	return ln.Addr().String()
}

// stacks returns the bytes of goroutine stacks in use.
func stacks() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/stacks:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// topicsQuery names n topics prefix-0, prefix-1... of names about length
// bytes long, as one query string.
func topicsQuery(prefix string, n, length int) string {
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteString("&topic=")
		}
		name := fmt.Sprintf("%s-%d-", prefix, i)
		b.WriteString(name + strings.Repeat("x", max(length-len(name), 0)))
	}
	return b.String()
}

// TestTopicFlood holds a thousand streams that each ask for as many topics
// as the Hub allows, each topic new, and sends a thousand requests beyond
// the limits, some with 9,000 topics, while honest clients receive events:
// the held streams cost no more than the bounds document, the others are
// answered 400 or 503 at once and cost nothing, and the honest clients get
// every event once and in order.
func TestTopicFlood(t *testing.T) {
	const honest = 10
	flood, over, huge, full := 1000, 1000, pick(50, 1000), 100
	events := int64(pick(100, 1000))
	hub := &sse.Hub{Logger: quietLogger, Upgrader: sse.Upgrader{Heartbeat: -1}, MaxSubscribers: honest + flood}
	addr := serveLoopback(t, hub, func() { hub.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	// The honest clients read topic t from the start.
	results := make([]error, honest)
	var readers sync.WaitGroup
	for i := range honest {
		c, err := dialStream(ctx, addr, "t", "", 0)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		d, err := streamDecoder(c)
		if err != nil {
			t.Fatal(err)
		}
		readers.Go(func() {
			seqs, _, err := readAll(d, events)
			if err == nil {
				err = checkSeqs(seqs, 1)
			}
			if err == nil && int64(len(seqs)) != events {
				err = fmt.Errorf("%d events, want %d", len(seqs), events)
			}
			results[i] = err
		})
	}
	waitFor(t, time.Minute, func() bool { return hub.Stats().Subscribers == honest }, "the honest clients")
	warmGoroutines(2*flood + 100)
	baseHeap, baseStacks := liveHeap(), stacks()

	// The flood: each stream asks for the most topics, each topic new and
	// of the longest name; they never read, and get no event.
	for i := range flood {
		c, err := dialStream(ctx, addr, topicsQuery(fmt.Sprint("f", i), sse.DefaultMaxTopics, sse.DefaultMaxTopicLength), "", 0)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := streamBody(c); err != nil {
			t.Fatalf("flood stream %d: %v", i, err)
		}
	}
	waitFor(t, time.Minute, func() bool { return hub.Stats().Subscribers == honest+flood }, "the flood streams")
	floodHeap, floodStacks := liveHeap(), stacks()
	perStream := (floodHeap + floodStacks - baseHeap - baseStacks) / uint64(flood)
	if perStream > abuseStreamBudget {
		t.Errorf("each stream of %d topics costs %d B, more than the %d B the bounds allow", sse.DefaultMaxTopics, perStream, abuseStreamBudget)
	}

	// While events go out, requests beyond the bounds: one topic too many,
	// 9,000 topics, and streams beyond MaxSubscribers.
	published := make(chan error, 1)
	go func() {
		var err error
		for seq := int64(1); seq <= events && err == nil; seq++ {
			_, err = hub.Publish(ctx, "t", sse.Message{Data: eventData(seq, time.Now(), 64)})
			time.Sleep(time.Millisecond)
		}
		published <- err
	}()
	tr := &http.Transport{MaxIdleConnsPerHost: 8}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr}
	answers := map[int]int{}
	var mu sync.Mutex
	var sent sync.WaitGroup
	ask := func(query string) {
		req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+addr+"/?"+query, nil)
		resp, err := hc.Do(req)
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			answers[-1]++
			return
		}
		resp.Body.Close()
		answers[resp.StatusCode]++
	}
	work := make(chan string)
	for range 8 {
		sent.Go(func() {
			for q := range work {
				ask(q)
			}
		})
	}
	for i := range over {
		if i < huge {
			work <- "topic=" + topicsQuery("h", 9000, 8)
		} else {
			work <- "topic=" + topicsQuery("o", sse.DefaultMaxTopics+1, 8)
		}
	}
	for range full {
		work <- "topic=t"
	}
	close(work)
	sent.Wait()
	if err := <-published; err != nil {
		t.Fatal(err)
	}
	readers.Wait()
	for i, err := range results {
		if err != nil {
			t.Errorf("honest client %d: %v", i, err)
		}
	}
	if answers[http.StatusBadRequest] != over || answers[http.StatusServiceUnavailable] != full || len(answers) != 2 {
		t.Errorf("answers %v: want %d × 400 and %d × 503", answers, over, full)
	}
	st := hub.Stats()
	if st.Refused != int64(over+full) || st.Evicted != 0 || st.Topics != 1+flood*sse.DefaultMaxTopics {
		t.Errorf("Stats() = %+v: want %d refused, none evicted, %d topics", st, over+full, 1+flood*sse.DefaultMaxTopics)
	}
	afterHeap := liveHeap()
	// The refused requests hold nothing once answered; the margin is for
	// net/http's idle connections and the pools.
	if afterHeap > floodHeap+4<<20 {
		t.Errorf("live heap %s after the refused requests, %s before", mib(afterHeap), mib(floodHeap))
	}
	t.Logf("topic flood: %d streams × %d topics of %d B: %d B each (heap+stacks; base %s+%s, flood %s+%s); %d refused (%d with 9,000 topics): %v; heap after %s; %d honest clients got %d events each",
		flood, sse.DefaultMaxTopics, sse.DefaultMaxTopicLength, perStream, mib(baseHeap), mib(baseStacks), mib(floodHeap), mib(floodStacks),
		over+full, huge, answers, mib(afterHeap), honest, events)
}
