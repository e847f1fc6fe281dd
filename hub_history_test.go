package sse_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/b2ce5911/sse"
)

// hubLines is subscribed for a test that reads the stream line by line.
func hubLines(t *testing.T, h *sse.Hub, ts *httptest.Server, query string, header http.Header) *bufio.Reader {
	t.Helper()
	return bufio.NewReader(subscribedBody(t, h, ts, query, header))
}

// readThrough reads br until what it read ends with end.
func readThrough(t *testing.T, br *bufio.Reader, end string) string {
	t.Helper()
	var seen strings.Builder
	for !strings.HasSuffix(seen.String(), end) {
		line, err := br.ReadString('\n')
		seen.WriteString(line)
		if err != nil {
			t.Fatalf("stream %q then %v, want it to reach %q", seen.String(), err, end)
		}
	}
	return seen.String()
}

// TestHubCarriesRetryAndComment: a Message's Retry and Comment reach the
// subscribers, live and replayed, encoded as a Conn encodes them.
func TestHubCarriesRetryAndComment(t *testing.T) {
	t.Parallel()
	h := &sse.Hub{}
	ts := hubServer(t, h)
	first := publish(t, h, "t", "first")
	live := hubLines(t, h, ts, "topic=t", nil)
	m := sse.Message{Data: []byte("x"), Retry: 1500 * time.Millisecond, Comment: "note"}
	id, err := h.Publish(context.Background(), "t", m)
	if err != nil {
		t.Fatal(err)
	}
	m.ID = id
	want, _ := m.AppendTo(nil)
	if got := readThrough(t, live, "data: x\n\n"); !strings.HasSuffix(got, string(want)) {
		t.Fatalf("live: stream %q, want it to end with %q", got, want)
	}
	replayed := hubLines(t, h, ts, "topic=t", http.Header{"Last-Event-Id": first})
	if got := readThrough(t, replayed, "data: x\n\n"); !strings.HasSuffix(got, string(want)) {
		t.Fatalf("replayed: stream %q, want it to end with %q", got, want)
	}
}

// TestHubPositionOfSeveralTopics: a new subscriber of several topics is
// told, and a reset event carries, the newest position among them, even
// when the newest event is one the Hub never delivered: resuming from it
// replays nothing old and misses nothing new.
func TestHubPositionOfSeveralTopics(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name   string
		header http.Header
	}{{"position", nil}, {"reset", http.Header{"Last-Event-Id": {"stale"}}}} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := &sse.Hub{}
			ts := hubServer(t, h)
			publish(t, h, "b", "old") // before anyone subscribed
			// Read until a block with an id has ended, then let the Decoder
			// say what a client makes of it.
			seen := readThrough(t, hubLines(t, h, ts, "topic=a&topic=b", tt.header), "\n\n")
			d := sse.NewDecoder(strings.NewReader(seen))
			for {
				if _, err := d.Decode(); err == io.EOF {
					break
				} else if err != nil {
					t.Fatal(err)
				}
			}
			pos := d.LastEventID()
			if pos == "" {
				t.Fatalf("stream %q told no position", seen)
			}
			resumed := subscribed(t, h, ts, "topic=a&topic=b", http.Header{"Last-Event-Id": {pos}})
			publish(t, h, "a", "new")
			if got := next(t, resumed); got.data != "new" {
				t.Fatalf("resumed from %q (told by %q): got %q, want the new event", pos, seen, got)
			}
		})
	}
}

// TestHubResetData: the reset event's data is a JSON object that tells
// why, from which id the client came, and from which it resumes.
func TestHubResetData(t *testing.T) {
	t.Parallel()
	h := &sse.Hub{Broker: &sse.MemoryBroker{History: 2}}
	ts := hubServer(t, h)
	ids := publish(t, h, "t", "1", "2", "3", "4") // 3 and 4 are kept
	for _, tt := range []struct{ last, reason string }{{ids[0], "expired"}, {"stale", "unknown"}, {"\xff\"\\<", "unknown"}} {
		d := subscribed(t, h, ts, "topic=t", http.Header{"Last-Event-Id": {tt.last}})
		e := next(t, d)
		if e.typ != "reset" || e.id != ids[3] {
			t.Fatalf("Last-Event-ID %q: got %q, want a reset with id %q", tt.last, e, ids[3])
		}
		var got map[string]string
		if err := json.Unmarshal([]byte(e.data), &got); err != nil {
			t.Fatalf("Last-Event-ID %q: reset data %q: %v", tt.last, e.data, err)
		}
		want := map[string]string{"reason": tt.reason, "lastEventId": strings.ToValidUTF8(tt.last, "\uFFFD"), "resume": ids[3]}
		if len(got) != len(want) || got["reason"] != want["reason"] || got["lastEventId"] != want["lastEventId"] || got["resume"] != want["resume"] {
			t.Fatalf("Last-Event-ID %q: reset data %q, want %q", tt.last, got, want)
		}
	}
}

// TestHubLiveAfterPublisherIDAgedOut: once the newest event of a topic,
// whose id the publisher set, has aged out, a client that resumes from the
// position of several topics still gets that topic's live events.
func TestHubLiveAfterPublisherIDAgedOut(t *testing.T) {
	t.Parallel()
	h := &sse.Hub{Broker: &sse.MemoryBroker{HistoryAge: time.Millisecond}}
	ts := hubServer(t, h)
	d := subscribed(t, h, ts, "topic=t", nil) // keeps t's feed, which delivers "own"
	if _, err := h.Publish(context.Background(), "t", sse.Message{ID: "own", Data: []byte("1")}); err != nil {
		t.Fatal(err)
	}
	if got := next(t, d); got.id != "own" {
		t.Fatalf("got %q", got)
	}
	time.Sleep(20 * time.Millisecond) // "own" ages out
	seen := readThrough(t, hubLines(t, h, ts, "topic=t&topic=u", nil), "\n\n")
	pos := sse.NewDecoder(strings.NewReader(seen))
	if _, err := pos.Decode(); err != io.EOF || pos.LastEventID() == "" {
		t.Fatalf("stream %q: %v, want a position", seen, err)
	}
	resumed := subscribed(t, h, ts, "topic=t&topic=u", http.Header{"Last-Event-Id": {pos.LastEventID()}})
	publish(t, h, "t", "2")
	publish(t, h, "u", "3") // what comes next when "2" was skipped
	if got := next(t, resumed); got.data != "2" {
		t.Fatalf("resumed from %q: got %q, want the live event", pos.LastEventID(), got)
	}
}

// topicLagBroker holds back the deliveries of one topic's feed until
// release, as a node whose reader of that topic lags behind the store.
type topicLagBroker struct {
	*sse.MemoryBroker
	lag  string
	mu   sync.Mutex
	held []func()
}

func (b *topicLagBroker) Subscribe(ctx context.Context, topic string, deliver func(sse.Entry)) (string, error) {
	if topic != b.lag {
		return b.MemoryBroker.Subscribe(ctx, topic, deliver)
	}
	return b.MemoryBroker.Subscribe(ctx, topic, func(e sse.Entry) {
		b.mu.Lock()
		defer b.mu.Unlock()
		b.held = append(b.held, func() { deliver(e) })
	})
}

func (b *topicLagBroker) release() {
	b.mu.Lock()
	held := b.held
	b.held = nil
	b.mu.Unlock()
	for _, f := range held {
		f()
	}
}

// TestHubPositionPastLaggingFeed: with several topics, the position a new
// subscriber is told, and the id of a reset event, are read from the store,
// not made of this node's feeds, one of which may lag. Either way the
// stream that was told the position and a stream resumed from it get the
// same events after it: none that the position already covers, such as an
// event stored before it but delivered late.
func TestHubPositionPastLaggingFeed(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name   string
		header http.Header
	}{
		{"position", nil},
		{"reset", http.Header{"Last-Event-Id": {"stale"}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := &topicLagBroker{MemoryBroker: &sse.MemoryBroker{}, lag: "a"}
			h := &sse.Hub{Broker: b}
			ts := hubServer(t, h)
			stays := subscribed(t, h, ts, "topic=a&topic=b", nil)
			publish(t, h, "a", "a1") // stored, held back on its way to this node
			publish(t, h, "b", "b1")

			br := bufio.NewReader(subscribedBody(t, h, ts, "topic=a&topic=b", tt.header))
			var pos string
			var told *sse.Decoder
			if tt.header == nil {
				for block := ""; !strings.HasSuffix(block, "\n\n"); {
					line, err := br.ReadString('\n')
					if err != nil {
						t.Fatalf("stream %q then %v", block, err)
					}
					block += line
					if id, ok := strings.CutPrefix(line, "id: "); ok {
						pos = strings.TrimSuffix(id, "\n")
					}
				}
				told = sse.NewDecoder(br)
			} else {
				told = sse.NewDecoder(br)
				reset := next(t, told)
				if reset.typ != sse.DefaultResetType {
					t.Fatalf("got %+v, want a reset", reset)
				}
				pos = reset.id
			}
			resumed := subscribed(t, h, ts, "topic=a&topic=b", http.Header{"Last-Event-Id": {pos}})
			b.release()
			publish(t, h, "b", "b2")
			b.release()

			for _, w := range []string{"b1", "a1", "b2"} {
				if got := next(t, stays); got.data != w {
					t.Fatalf("the stream that stayed got %q, want %q", got.data, w)
				}
			}
			if got := next(t, told).data; got != "b2" {
				t.Fatalf("the stream told %s then got %q, want b2: a1 came before its position", pos, got)
			}
			if got := next(t, resumed).data; got != "b2" {
				t.Fatalf("resumed from %s: got %q, want b2", pos, got)
			}
		})
	}
}
