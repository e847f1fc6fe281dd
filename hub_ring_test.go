package sse_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/b2ce5911/sse"
)

// pipeWriter is a ResponseWriter whose writes block until the test's
// Decoder reads them: a subscriber that reads at the test's pace. The
// first write, Upgrade's, is kept, for the Decoder to read first.
type pipeWriter struct {
	header http.Header
	w      *io.PipeWriter
	first  []byte
}

func (w *pipeWriter) Header() http.Header { return w.header }
func (w *pipeWriter) WriteHeader(int)     {}
func (w *pipeWriter) Flush()              {}
func (w *pipeWriter) Write(b []byte) (int, error) {
	if w.first == nil {
		w.first = append([]byte{}, b...)
		return len(b), nil
	}
	return w.w.Write(b)
}

// pipeSubscribe serves topics of h, after lastID when not "", to a
// subscriber read through the returned Decoder, once the Hub counts it.
// The stream ends with the test, before the Hub closes.
func pipeSubscribe(t *testing.T, h *sse.Hub, lastID string, topics ...string) *sse.Decoder {
	t.Helper()
	pr, pw := io.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	req := httptest.NewRequest("GET", "/", nil).WithContext(ctx)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	w := &pipeWriter{header: http.Header{}, w: pw}
	c, err := (&sse.Upgrader{Heartbeat: -1, WriteTimeout: -1}).Upgrade(w, req)
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	before := h.Stats().Subscriptions
	go func() {
		err := h.Serve(c, topics...)
		pw.CloseWithError(fmt.Errorf("serve returned: %w", err)) // the Decoder sees the stream end
		served <- err
	}()
	for h.Stats().Subscriptions == before {
		time.Sleep(time.Millisecond) // registration happens on Serve's goroutine
	}
	t.Cleanup(func() {
		cancel()
		pr.Close() // a write in progress fails
		<-served
	})
	return sse.NewDecoder(io.MultiReader(bytes.NewReader(w.first), pr))
}

// memSeq is the sequence of an id a MemoryBroker assigned ("<epoch>-<n>"),
// which is the order it published in.
func memSeq(t *testing.T, id string) uint64 {
	t.Helper()
	_, n, ok := strings.Cut(id, "-")
	seq, err := strconv.ParseUint(n, 10, 64)
	if !ok || err != nil {
		t.Fatalf("id %q is not a MemoryBroker's", id)
	}
	return seq
}

// TestHubBurstWithinHistory publishes a burst as fast as it goes to
// subscribers that read at their own pace: with a history that holds the
// burst, no one is evicted and everyone gets every event in order.
func TestHubBurstWithinHistory(t *testing.T) {
	t.Parallel()
	const events, subscribers = 5000, 50
	h := &sse.Hub{History: events, Logger: quiet}
	t.Cleanup(func() { h.Close() })
	var wg sync.WaitGroup
	for range subscribers {
		d := pipeSubscribe(t, h, "", "t")
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range events {
				e, err := d.Decode()
				if err != nil {
					t.Errorf("event %d: %v", i, err)
					return
				}
				if string(e.Bytes()) != strconv.Itoa(i) {
					t.Errorf("event %d: got %q", i, e.Bytes())
					return
				}
			}
		}()
	}
	for i := range events {
		publish(t, h, "t", strconv.Itoa(i))
	}
	wg.Wait()
	if s := h.Stats(); s.Evicted != 0 || s.Subscribers != subscribers || s.Delivered != events*subscribers {
		t.Fatalf("stats %+v: want no eviction and every event delivered to all %d", s, subscribers)
	}
}

// gateSubscribe serves topic of h to w, once the Hub counts it.
func gateSubscribe(t *testing.T, h *sse.Hub, w *gateWriter, topic string) <-chan error {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	c, err := (&sse.Upgrader{Heartbeat: -1, WriteTimeout: -1}).Upgrade(w, httptest.NewRequest("GET", "/", nil).WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	before := h.Stats().Subscriptions
	go func() { served <- h.Serve(c, topic) }()
	for h.Stats().Subscriptions == before {
		time.Sleep(time.Millisecond)
	}
	return served
}

// waitFor polls cond for up to a generous bound: a hang, not a measure.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// TestHubEvictedWhenOutOfHistoryReplays pins that a subscriber is cut off
// exactly when an event it has not sent falls out of the history, and that
// reconnecting with the last id it got replays exactly what it missed.
func TestHubEvictedWhenOutOfHistoryReplays(t *testing.T) {
	t.Parallel()
	const history = 8
	h := &sse.Hub{History: history, Logger: quiet}
	t.Cleanup(func() { h.Close() })
	w := newGateWriter(t)
	served := gateSubscribe(t, h, w, "t")
	publish(t, h, "t", "e1", "e2", "e3")
	waitFor(t, "the first events to be written", func() bool { return len(w.events()) == 3 })
	close(w.armed)
	publish(t, h, "t", "e4")
	<-w.entered // the writer holds e4; the history fills behind it
	for i := 5; i < 5+history; i++ {
		publish(t, h, "t", fmt.Sprint("e", i))
	}
	if s := h.Stats(); s.Evicted != 0 {
		t.Fatalf("stats %+v: evicted with %d events waiting, History %d", s, history, history)
	}
	publish(t, h, "t", fmt.Sprint("e", 5+history))
	waitFor(t, "the eviction", func() bool { return h.Stats().Evicted == 1 })
	w.open()
	if err := <-served; !errors.Is(err, sse.ErrEvicted) {
		t.Fatalf("Serve: %v, want ErrEvicted", err)
	}
	got := w.events()
	last := got[len(got)-1]
	n, _ := strconv.Atoi(strings.TrimPrefix(string(last.Bytes()), "e"))

	d := pipeSubscribe(t, h, last.ID, "t")
	publish(t, h, "t", "live")
	for i := n + 1; i <= 5+history; i++ {
		if e := next(t, d); e.data != fmt.Sprint("e", i) {
			t.Fatalf("replay after e%d: got %q, want e%d", n, e.data, i)
		}
	}
	if e := next(t, d); e.data != "live" {
		t.Fatalf("after the replay: got %q, want live", e.data)
	}
}

// TestHubBackpressureWaitsForSlowReader pins the backpressure mode: a
// Publish waits for room behind a reader that does not keep up, a ctx
// deadline bounds the wait (it publishes nothing, to anyone), and room
// made lets a waiting Publish go on; no one is evicted.
func TestHubBackpressureWaitsForSlowReader(t *testing.T) {
	t.Parallel()
	const history = 4
	h := &sse.Hub{History: history, Backpressure: true, Logger: quiet}
	t.Cleanup(func() { h.Close() })
	w := newGateWriter(t)
	served := gateSubscribe(t, h, w, "t")
	fast := pipeSubscribe(t, h, "", "t")
	const events = history + 2
	fastGot := make(chan string, events)
	go func() {
		defer close(fastGot)
		for range events {
			e, err := fast.Decode()
			if err != nil {
				return
			}
			fastGot <- string(e.Bytes())
		}
	}()
	close(w.armed)
	publish(t, h, "t", "e0")
	<-w.entered // the slow reader holds e0; the history fills behind it
	for i := 1; i <= history; i++ {
		publish(t, h, "t", fmt.Sprint("e", i))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := h.Publish(ctx, "t", sse.Message{Data: []byte("late")}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Publish with a full history: %v, want context.DeadlineExceeded", err)
	}
	waiting := make(chan error, 1)
	go func() {
		_, err := h.Publish(context.Background(), "t", sse.Message{Data: []byte(fmt.Sprint("e", events-1))})
		waiting <- err
	}()
	w.open()
	if err := <-waiting; err != nil {
		t.Fatalf("Publish once room was made: %v", err)
	}
	for i := range events {
		if got := <-fastGot; got != fmt.Sprint("e", i) {
			t.Fatalf("fast reader: got %q, want e%d", got, i)
		}
	}
	waitFor(t, "the slow reader to get everything", func() bool { return len(w.events()) == events })
	for i, e := range w.events() {
		if string(e.Bytes()) != fmt.Sprint("e", i) {
			t.Fatalf("slow reader: event %d is %q", i, e.Bytes())
		}
	}
	if s := h.Stats(); s.Evicted != 0 || s.Published != events {
		t.Fatalf("stats %+v: want no eviction and %d published", s, events)
	}
	select {
	case err := <-served:
		t.Fatalf("the slow reader's Serve returned %v", err)
	default:
	}
}

// TestHubBackpressureFrozenClientCut pins that in backpressure mode a
// client that stopped reading is still cut off by its write deadline, and
// the publisher, which waited for it, then goes on.
func TestHubBackpressureFrozenClientCut(t *testing.T) {
	t.Parallel()
	h := &sse.Hub{History: 4, Backpressure: true, Upgrader: sse.Upgrader{WriteTimeout: 100 * time.Millisecond}}
	ts := hubServer(t, h)
	rawSubscribe(t, h, ts, "/?topic=t") // and never read
	payload := strings.Repeat("x", 64<<10)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute) // a hang, not a measure
	defer cancel()
	// 200 events (12.8 MB) are far more than socket buffers hold.
	for i := range 200 {
		if _, err := h.Publish(ctx, "t", sse.Message{Data: []byte(payload)}); err != nil {
			t.Fatalf("Publish %d: %v", i, err)
		}
	}
	waitFor(t, "the frozen client to be cut", func() bool { return h.Subscribers("t") == 0 })
	if s := h.Stats(); s.Evicted != 0 {
		t.Fatalf("stats %+v: the write deadline, not an eviction, should cut the frozen client", s)
	}
}

// TestHubMultiTopicOrderHammer publishes on several topics at once and
// pins that every subscriber, of one topic or several, gets each of its
// events once, in the order the Broker published them.
func TestHubMultiTopicOrderHammer(t *testing.T) {
	t.Parallel()
	const perTopic = 300
	topics := []string{"a", "b", "c", "d"}
	h := &sse.Hub{History: 4 * perTopic, Logger: quiet}
	t.Cleanup(func() { h.Close() })
	sets := [][]string{{"a"}, {"a", "b"}, {"b", "c", "d"}, {"a", "b", "c", "d"}, {"d", "a"}, {"c"}}
	var wg sync.WaitGroup
	for _, set := range sets {
		d := pipeSubscribe(t, h, "", set...)
		wg.Add(1)
		go func() {
			defer wg.Done()
			next := map[string]int{}
			var last uint64
			for range len(set) * perTopic {
				e, err := d.Decode()
				if err != nil {
					t.Errorf("%v: %v", set, err)
					return
				}
				seq := memSeq(t, e.ID)
				topic, n, _ := strings.Cut(string(e.Bytes()), ":")
				if seq <= last || n != strconv.Itoa(next[topic]) {
					t.Errorf("%v: got %s (%s) after seq %d, want %s:%d next", set, e.Bytes(), e.ID, last, topic, next[topic])
					return
				}
				last = seq
				next[topic]++
			}
		}()
	}
	publishPerTopic(t, h, topics, perTopic)
	wg.Wait()
	if s := h.Stats(); s.Evicted != 0 {
		t.Fatalf("stats %+v: no one should be evicted", s)
	}
}

// publishPerTopic publishes "topic:0" to "topic:n-1" on each topic, from a
// publisher per topic, and returns once all are published.
func publishPerTopic(t *testing.T, h *sse.Hub, topics []string, n int) {
	t.Helper()
	var pub sync.WaitGroup
	for _, topic := range topics {
		pub.Add(1)
		go func() {
			defer pub.Done()
			for i := range n {
				if _, err := h.Publish(context.Background(), topic, sse.Message{Data: []byte(fmt.Sprint(topic, ":", i))}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	pub.Wait()
}
