package sse_test

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/b2ce5911/sse"
)

// TestHubRecentForNewSubscriber: a subscriber without a Last-Event-ID gets
// the newest events of its topics, then the live ones; a reload gets the
// same again, and a topic's recent events do not crowd out another's.
func TestHubRecentForNewSubscriber(t *testing.T) {
	t.Parallel()
	h := &sse.Hub{Recent: 3}
	ts := hubServer(t, h)
	ids := publish(t, h, "room", "1", "2", "3", "4", "5")
	other := publish(t, h, "other", "x")
	for _, tt := range []struct {
		name, query string
		want        []ev
	}{
		{"open", "topic=room", []ev{{ids[2], "message", "3"}, {ids[3], "message", "4"}, {ids[4], "message", "5"}}},
		{"reload", "topic=room", []ev{{ids[2], "message", "3"}, {ids[3], "message", "4"}, {ids[4], "message", "5"}}},
		{"two topics", "topic=room&topic=other", []ev{{ids[2], "message", "3"}, {ids[3], "message", "4"}, {ids[4], "message", "5"}, {other[0], "message", "x"}}},
	} {
		ctx, cancel := context.WithCancel(context.Background())
		req, _ := http.NewRequestWithContext(ctx, "GET", ts.URL+"?"+tt.query, nil)
		resp, err := ts.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		d := sse.NewDecoder(resp.Body)
		for _, w := range tt.want {
			if got := next(t, d); got != w {
				t.Fatalf("%s: got %+v, want %+v", tt.name, got, w)
			}
		}
		cancel()
		resp.Body.Close()
	}
	// A client of the recent events resumes after the last of them.
	d := subscribed(t, h, ts, "topic=room", http.Header{"Last-Event-Id": {ids[4]}})
	live := publish(t, h, "room", "6")
	if got := next(t, d); got != (ev{live[0], "message", "6"}) {
		t.Fatalf("resumed with %+v", got)
	}
}

// recentBroker runs beforeRecent as a Recent starts, with the feeds held
// as laggingBroker holds them.
type recentBroker struct {
	*laggingBroker
	beforeRecent func()
}

func (b *recentBroker) Recent(ctx context.Context, topics []string, n int) ([]sse.Entry, []string, error) {
	if b.beforeRecent != nil {
		b.beforeRecent()
	}
	return b.MemoryBroker.Recent(ctx, topics, n)
}

// TestHubRecentMeetsLiveEvents: events published while the recent ones
// are read reach the new subscriber once, whether the feed delivered them
// before the read ended or not.
func TestHubRecentMeetsLiveEvents(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name     string
		released int // held deliveries let through while Recent reads: of e2, e3
	}{{"feed past the read", 2}, {"feed half way", 1}, {"feed behind", 0}} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := &recentBroker{laggingBroker: &laggingBroker{MemoryBroker: &sse.MemoryBroker{}}}
			h := &sse.Hub{Broker: b, Recent: 10}
			ts := hubServer(t, h)
			live := subscribed(t, h, ts, "topic=t", nil)
			publish(t, h, "t", "e1")
			b.release(-1)
			read := make(chan struct{})
			b.beforeRecent = func() {
				defer close(read)
				publish(t, h, "t", "e2", "e3") // stored before Recent reads
				b.release(tt.released)         // and some delivered live meanwhile
			}
			fresh := subscribed(t, h, ts, "topic=t", nil)
			<-read
			b.release(-1)
			publish(t, h, "t", "e4")
			b.release(-1)
			for name, d := range map[string]*sse.Decoder{"live": live, "fresh": fresh} {
				for _, w := range []string{"e1", "e2", "e3", "e4"} {
					if got := next(t, d); got.data != w {
						t.Fatalf("%s: got %q, want %q", name, got.data, w)
					}
				}
			}
		})
	}
}

// TestHubRecentTellsPosition: with Recent set but nothing to send, on an
// empty topic or with a Broker that cannot say what is recent, a new
// subscriber is still told where it stands, and misses nothing after it.
func TestHubRecentTellsPosition(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name   string
		broker sse.Broker
		before bool
	}{
		{"empty topic", &sse.MemoryBroker{}, false},
		{"no RecentBroker", struct{ sse.Broker }{&sse.MemoryBroker{}}, true},
	} {
		h := &sse.Hub{Broker: tt.broker, Recent: 5}
		ts := hubServer(t, h)
		if tt.before {
			publish(t, h, "t", "before")
		}
		pos := position(t, ts.URL+"?topic=t")
		publish(t, h, "t", "while away")
		d := subscribed(t, h, ts, "topic=t", http.Header{"Last-Event-Id": {pos}})
		if got := next(t, d); got.data != "while away" {
			t.Fatalf("%s: resumed with %q", tt.name, got)
		}
	}
}

// position reads a new stream up to the end of its first block with an id
// and checks that the block is a position: an id without an event.
func position(t *testing.T, url string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br, seen := bufio.NewReader(resp.Body), ""
	for !strings.Contains(seen, "id: ") || !strings.HasSuffix(seen, "\n\n") {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("stream %q then %v", seen, err)
		}
		seen += line
	}
	d := sse.NewDecoder(strings.NewReader(seen))
	if _, err := d.Decode(); err != io.EOF {
		t.Fatalf("%q dispatched an event (%v)", seen, err)
	}
	if d.LastEventID() == "" {
		t.Fatal("no position told")
	}
	return d.LastEventID()
}

func TestMemoryBrokerRecent(t *testing.T) {
	t.Parallel()
	b := &sse.MemoryBroker{History: 4}
	ctx := context.Background()
	var a []string
	for _, d := range []string{"a1", "a2", "a3", "a4", "a5"} {
		id, _ := b.Publish(ctx, "a", sse.Message{Data: []byte(d)})
		a = append(a, id)
	}
	bid, _ := b.Publish(ctx, "b", sse.Message{Data: []byte("b1")})
	a6, _ := b.Publish(ctx, "a", sse.Message{Data: []byte("a6")})
	entries, heads, err := b.Recent(ctx, []string{"a", "b", "none"}, 2)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		got = append(got, e.Topic+":"+string(e.Data))
	}
	if strings.Join(got, ",") != "a:a5,b:b1,a:a6" {
		t.Fatalf("Recent = %q", got)
	}
	if heads[0] != a6 || heads[1] != bid || heads[2] == "" {
		t.Fatalf("heads %q, want %q, %q and a position", heads, a6, bid)
	}
	// The History bound holds: more than it keeps returns what it keeps.
	entries, _, _ = b.Recent(ctx, []string{"a"}, 100)
	if len(entries) != 4 || entries[0].ID != a[2] {
		t.Fatalf("Recent(100) = %d events from %q, want 4 from %q", len(entries), entries[0].ID, a[2])
	}
	if entries, _, _ := b.Recent(ctx, []string{"a"}, 0); len(entries) != 0 {
		t.Fatalf("Recent(0) = %d events", len(entries))
	}
}

func TestHubSubscribers(t *testing.T) {
	t.Parallel()
	h := &sse.Hub{}
	ts := hubServer(t, h)
	if n := h.Subscribers("a"); n != 0 {
		t.Fatalf("before any: %d", n)
	}
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", ts.URL+"?topic=a", nil)
	before := h.Stats().Subscriptions
	resp, err := ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	waitSubscribed(t, h, before)
	subscribed(t, h, ts, "topic=a&topic=b", nil)
	if a, b, c := h.Subscribers("a"), h.Subscribers("b"), h.Subscribers("c"); a != 2 || b != 1 || c != 0 {
		t.Fatalf("subscribers a %d, b %d, c %d; want 2, 1, 0", a, b, c)
	}
	cancel()
	deadline := time.Now().Add(10 * time.Second)
	for h.Subscribers("a") != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("a has %d subscribers after one left, want 1", h.Subscribers("a"))
		}
		time.Sleep(time.Millisecond)
	}
}
