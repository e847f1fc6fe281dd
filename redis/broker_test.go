package sseredis_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/b2ce5911/sse"
	sseredis "github.com/b2ce5911/sse/redis"
	"github.com/b2ce5911/sse/redis/redistest"
	"github.com/redis/go-redis/v9"
)

// An event published on one node reaches the subscribers of its topic on
// every node, with the Redis entry id as its id, and no other topic.
func TestCrossNodePublish(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t, false)
	a, b := newNode(t, srv), newNode(t, srv)
	onA := a.subscribe(t, "topic=news", "")
	onB := b.subscribe(t, "topic=news", "")
	other := b.subscribe(t, "topic=sport", "")
	ids := a.publish(t, "news", "a1")
	ids = append(ids, b.publish(t, "news", "b1")...)
	ids = append(ids, a.publish(t, "news", "a2")...)

	stored, err := a.client.XRange(context.Background(), "sse:topic:news", "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(stored) != 3 {
		t.Fatalf("stream holds %d entries, want 3", len(stored))
	}
	for i, x := range stored {
		if x.ID != ids[i] {
			t.Fatalf("entry %d has id %s, publish returned %s", i, x.ID, ids[i])
		}
	}
	for name, s := range map[string]*stream{"A": onA, "B": onB} {
		for i, e := range s.expect(t, "a1", "b1", "a2") {
			if e.id != ids[i] {
				t.Errorf("node %s: event %d has id %q, want %q", name, i, e.id, ids[i])
			}
		}
	}
	other.silent(t, 300*time.Millisecond)
}

// A client of a node that dies reconnects to another node with its
// Last-Event-ID and gets exactly what it missed, then live events.
func TestReconnectToOtherNode(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t, false)
	a, b := newNode(t, srv), newNode(t, srv)
	watcher := b.subscribe(t, "topic=t", "") // B's feed runs before the client arrives
	c := a.subscribe(t, "topic=t", "")
	a.publish(t, "t", "e1", "e2")
	last := c.expect(t, "e1", "e2")[1].id
	watcher.expect(t, "e1", "e2")

	a.shutdown()
	for range c.events {
		// node A closed the stream
	}
	// Published while the client is away, by a third node without
	// subscribers: B's feed may or may not have them when the client
	// arrives, and either way each must come once.
	third := &sseredis.Broker{Client: srv.Client(t)}
	defer third.Close()
	for _, d := range []string{"e3", "e4"} {
		if _, err := third.Publish(context.Background(), "t", sse.Message{Data: []byte(d)}); err != nil {
			t.Fatal(err)
		}
	}
	resumed := b.subscribe(t, "topic=t", last)
	resumed.expect(t, "e3", "e4")
	b.publish(t, "t", "e5")
	resumed.expect(t, "e5")
	resumed.silent(t, 300*time.Millisecond)
	watcher.expect(t, "e3", "e4", "e5")

	// The first subscriber of a topic on a node, too.
	cold := newNode(t, srv)
	again := cold.subscribe(t, "topic=t", last)
	again.expect(t, "e3", "e4", "e5")
	again.silent(t, 300*time.Millisecond)
}

// A Last-Event-ID from before the oldest entry kept, malformed, or unknown
// gives the reset event, carrying the newest id; live events follow.
func TestHistoryGapResets(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t, false)
	n := newNode(t, srv, func(n *node) { n.broker.MaxLen = 10 })
	first := n.publish(t, "t", "e1")[0]
	second := n.publish(t, "t", "e2")[0]
	ids := n.publish(t, "t", names("x", 500)...)
	newest := ids[len(ids)-1]
	if l := n.client.XLen(context.Background(), "sse:topic:t").Val(); l >= 502 {
		t.Fatalf("stream not trimmed: %d entries", l)
	}
	ms, _, _ := strings.Cut(newest, "-")
	future, _ := strconv.ParseUint(ms, 10, 64)
	// Ids that are stream ids but were never given out on this topic.
	ctx := context.Background()
	for _, id := range []string{"1000-0", "3000-0"} {
		n.client.XAdd(ctx, &redis.XAddArgs{Stream: "sse:topic:sparse", ID: id, Values: []any{"data", id}})
	}
	for _, tt := range []struct {
		name, topic, id string
		reason          sse.GapReason
	}{
		{"trimmed", "t", first, sse.GapExpired},
		{"trimmed second", "t", second, sse.GapExpired},
		{"zero position after trimming", "t", "0-0", sse.GapExpired},
		{"malformed", "t", "garbage", sse.GapUnknown},
		{"not canonical", "t", "0" + newest, sse.GapUnknown},
		{"no sequence", "t", ms, sse.GapUnknown},
		{"future", "t", strconv.FormatUint(future+1000, 10) + "-0", sse.GapUnknown},
		{"max id", "t", "18446744073709551615-18446744073709551615", sse.GapUnknown},
		{"between entries", "sparse", "2000-0", sse.GapUnknown},
		{"not a topic's", "empty", newest, sse.GapUnknown},
	} {
		s := n.subscribe(t, "topic="+tt.topic, tt.id)
		e := s.next(t)
		if e.typ != sse.DefaultResetType {
			t.Errorf("%s: got %+v, want a reset event", tt.name, e)
			continue
		}
		want := map[string]string{"t": newest, "sparse": "3000-0", "empty": "0-0"}[tt.topic]
		if e.id != want {
			t.Errorf("%s: reset carries id %q, want %q", tt.name, e.id, want)
		}
		var d sse.ResetData
		if err := json.Unmarshal([]byte(e.data), &d); err != nil || d != (sse.ResetData{Reason: tt.reason, LastEventID: tt.id, Resume: want}) {
			t.Errorf("%s: reset data %q (%v), want reason %q, lastEventId %q, resume %q", tt.name, e.data, err, tt.reason, tt.id, want)
		}
	}
	s := n.subscribe(t, "topic=t", first)
	if e := s.next(t); e.typ != sse.DefaultResetType {
		t.Fatalf("got %+v, want reset", e)
	}
	n.publish(t, "t", "after")
	s.expect(t, "after")
	s.silent(t, 300*time.Millisecond)
}

// Replay merges topics by id, reports heads, and tells gaps apart from
// ordinary positions; Subscribe's position is one Replay accepts.
func TestReplay(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t, false)
	b := &sseredis.Broker{Client: srv.Client(t), Prefix: "app:", Logger: quiet}
	defer b.Close()
	ctx := context.Background()

	pos, err := b.Subscribe(ctx, "a", func(sse.Entry) {})
	if err != nil || pos != "0-0" {
		t.Fatalf("Subscribe on a missing stream = %q, %v; want 0-0", pos, err)
	}
	ids := map[string]string{}
	for _, p := range []struct{ topic, data, typ string }{{"a", "a1", "x"}, {"b", "b1", ""}, {"a", "a2", ""}, {"b", "b2", "y"}} {
		id, err := b.Publish(ctx, p.topic, sse.Message{Data: []byte(p.data), Type: p.typ, Retry: time.Second, Comment: "c"})
		if err != nil {
			t.Fatal(err)
		}
		ids[p.data] = id
	}
	if n := srv.Client(t).Exists(ctx, "app:topic:a", "app:topic:b").Val(); n != 2 {
		t.Fatalf("%d streams under the prefix, want 2", n)
	}
	check := func(topics []string, after string, want []string, heads []string) {
		t.Helper()
		entries, gotHeads, err := b.Replay(ctx, topics, after)
		if err != nil {
			t.Fatalf("Replay(%v, %s): %v", topics, after, err)
		}
		var got []string
		for _, e := range entries {
			got = append(got, e.Topic+":"+e.Type+":"+string(e.Data))
			if e.ID != ids[string(e.Data)] || e.Retry != time.Second || e.Comment != "c" { // stored whole
				t.Errorf("entry %+v", e)
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(want) || fmt.Sprint(gotHeads) != fmt.Sprint(heads) {
			t.Errorf("Replay(%v, %s) = %v %v, want %v %v", topics, after, got, gotHeads, want, heads)
		}
	}
	all := []string{"a", "b", "none"}
	heads := []string{ids["a2"], ids["b2"], "0-0"}
	if got, err := b.Newest(ctx, all, heads); err != nil || got != ids["b2"] {
		t.Errorf("Newest(%q) = %q, %v; want %q", heads, got, err, ids["b2"])
	}
	check(all, "0-0", []string{"a:x:a1", "b::b1", "a::a2", "b:y:b2"}, heads)
	check(all, ids["a1"], []string{"b::b1", "a::a2", "b:y:b2"}, heads)
	check(all, ids["b1"], []string{"a::a2", "b:y:b2"}, heads)
	check(all, ids["b2"], nil, heads)
	check([]string{"a"}, ids["a1"], []string{"a::a2"}, heads[:1])
	check([]string{"none"}, "0-0", nil, heads[2:])

	// After XDEL, an id before the deleted entry has lost it; one after
	// has not; a stream emptied keeps its last id as position.
	srv.Client(t).XDel(ctx, "app:topic:b", ids["b2"])
	var gap *sse.HistoryGapError
	if _, _, err := b.Replay(ctx, []string{"b"}, ids["b1"]); !errors.As(err, &gap) || gap.Reason != sse.GapExpired {
		t.Errorf("replay over a deleted entry: %v, want a gap of reason expired", err)
	}
	check([]string{"b"}, ids["b2"], nil, []string{ids["b1"]})
	srv.Client(t).XDel(ctx, "app:topic:b", ids["b1"])
	pos, err = b.Subscribe(ctx, "b", func(sse.Entry) {})
	if err != nil || pos != ids["b2"] {
		t.Errorf("Subscribe on an emptied stream = %q, %v; want its last id %s", pos, err, ids["b2"])
	}
	check([]string{"b"}, ids["b2"], nil, []string{ids["b2"]})

	for _, bad := range []string{"", "x", "1", "1-", "-1", "01-1", "1-01", "+1-1", "1-1-1", "1-0 "} {
		if _, _, err := b.Replay(ctx, all, bad); !errors.As(err, &gap) || gap.Reason != sse.GapUnknown {
			t.Errorf("Replay after %q: %v, want a gap of reason unknown", bad, err)
		}
	}
}

// A Redis that is down or refuses the event fails the publish; ids of the
// publisher's own are refused; a closed Broker refuses everything.
func TestPublishErrors(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t, false)
	n := newNode(t, srv)
	ctx := context.Background()
	if _, err := n.hub.Publish(ctx, "t", sse.Message{ID: "7", Data: []byte("x")}); !errors.Is(err, sseredis.ErrOwnID) {
		t.Errorf("publish with an id: %v", err)
	}
	if _, err := (&sseredis.Broker{}).Publish(ctx, "t", sse.Message{}); !errors.Is(err, sseredis.ErrNoClient) {
		t.Errorf("publish without client: %v", err)
	}
	n.client.Set(ctx, "sse:topic:string", "not a stream", 0)
	if _, err := n.hub.Publish(ctx, "string", sse.Message{Data: []byte("x")}); err == nil || !strings.Contains(err.Error(), "WRONGTYPE") {
		t.Errorf("publish to a key that is not a stream: %v", err)
	}
	srv.Stop(syscall.SIGKILL)
	if _, err := n.hub.Publish(ctx, "t", sse.Message{Data: []byte("x")}); err == nil || !strings.Contains(err.Error(), "sseredis:") {
		t.Errorf("publish with Redis down: %v", err)
	}
	if _, err := n.broker.Subscribe(ctx, "t", func(sse.Entry) {}); err == nil {
		t.Errorf("subscribe with Redis down: no error")
	}
	n.broker.Close()
	if _, err := n.broker.Publish(ctx, "t", sse.Message{}); !errors.Is(err, sseredis.ErrClosed) {
		t.Errorf("publish after Close: %v", err)
	}
	if _, err := n.broker.Subscribe(ctx, "t", func(sse.Entry) {}); !errors.Is(err, sseredis.ErrClosed) {
		t.Errorf("subscribe after Close: %v", err)
	}
}

// Redis killed and restarted (append-only file, fsync always) while a
// node publishes: every acknowledged event reaches the subscribers of both
// nodes once, in order; an event whose publish failed, at most once.
func TestRedisRestart(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t, true)
	a, b := newNode(t, srv), newNode(t, srv)
	subs := []*stream{a.subscribe(t, "topic=t", ""), b.subscribe(t, "topic=t", "")}

	var mu sync.Mutex
	var acked []string
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(acked) }
	stop := make(chan struct{})
	done := make(chan struct{})
	// The publisher ends before the test does, on a failure too.
	stopPublisher := sync.OnceFunc(func() { close(stop); <-done })
	defer stopPublisher()
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			for attempt := 0; ; attempt++ {
				select {
				case <-stop:
					return
				default:
				}
				data := fmt.Sprintf("%d.%d", i, attempt)
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				_, err := a.hub.Publish(ctx, "t", sse.Message{Data: []byte(data)})
				cancel()
				if err == nil {
					mu.Lock()
					acked = append(acked, data)
					mu.Unlock()
					break
				}
				time.Sleep(5 * time.Millisecond)
			}
		}
	}()
	waitFor := func(n int) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for count() < n {
			if time.Now().After(deadline) {
				t.Fatalf("only %d events acknowledged, waiting for %d", count(), n)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitFor(100)
	srv.Stop(syscall.SIGKILL)
	time.Sleep(300 * time.Millisecond)
	srv.Restart(t)
	waitFor(count() + 100)
	stopPublisher()

	for i, s := range subs {
		seen := map[string]bool{}
		next := 0 // index in acked of the next acknowledged event expected
		for next < len(acked) {
			e := s.next(t)
			if seen[e.data] {
				t.Fatalf("subscriber %d: %q twice", i, e.data)
			}
			seen[e.data] = true
			if e.data == acked[next] {
				next++
				continue
			}
			if !strings.Contains(e.data, ".") || slices.Contains(acked[next:], e.data) {
				t.Fatalf("subscriber %d: got %q, want %q (acknowledged %d of %d)", i, e.data, acked[next], next, len(acked))
			}
			// A publish that failed but that Redis had taken.
		}
		s.silent(t, 300*time.Millisecond)
	}
}

// Publishers on both nodes at once: every subscriber, on either node, live
// or resuming, sees the one order of the stream, each publisher's events
// in the order it published them.
func TestConcurrentPublishersOneOrder(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t, false)
	a, b := newNode(t, srv), newNode(t, srv)
	subs := []*stream{a.subscribe(t, "topic=t", ""), b.subscribe(t, "topic=t", "")}
	const each = 200
	var wg sync.WaitGroup
	for _, n := range []*node{a, b} {
		name := "a"
		if n == b {
			name = "b"
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				if _, err := n.hub.Publish(context.Background(), "t", sse.Message{Data: []byte(fmt.Sprintf("%s%d", name, i))}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	var order []event
	for i := range 2 * each {
		order = append(order, subs[0].next(t))
		if i > 0 && !idLess(order[i-1].id, order[i].id) {
			t.Fatalf("ids out of order: %s then %s", order[i-1].id, order[i].id)
		}
	}
	nextOf := map[byte]int{}
	for _, e := range order {
		if want := fmt.Sprintf("%c%d", e.data[0], nextOf[e.data[0]]); e.data != want {
			t.Fatalf("got %q, want %q", e.data, want)
		}
		nextOf[e.data[0]]++
	}
	resumed := b.subscribe(t, "topic=t", order[0].id)
	for _, s := range []*stream{subs[1], resumed} {
		start := 0
		if s == resumed {
			start = 1
		}
		for _, want := range order[start:] {
			if e := s.next(t); e != want {
				t.Fatalf("got %+v, want %+v", e, want)
			}
		}
	}
}

func idLess(x, y string) bool {
	parse := func(s string) (uint64, uint64) {
		ms, seq, _ := strings.Cut(s, "-")
		m, _ := strconv.ParseUint(ms, 10, 64)
		q, _ := strconv.ParseUint(seq, 10, 64)
		return m, q
	}
	xm, xs := parse(x)
	ym, ys := parse(y)
	return xm < ym || xm == ym && xs < ys
}

// A node that shuts down leaves no goroutine and no Redis connection
// behind; a topic whose last subscriber leaves is no longer read. Not
// parallel: it counts the process's goroutines.
func TestNodeShutdownNoLeak(t *testing.T) {
	srv := redistest.Start(t, false)
	ctl := srv.Client(t)
	ctx := context.Background()
	clients := func() int {
		list, err := ctl.ClientList(ctx).Result()
		if err != nil {
			t.Fatal(err)
		}
		return strings.Count(list, "\n")
	}
	clientsBefore := clients()
	goroutinesBefore := runtime.NumGoroutine()

	n := newNode(t, srv)
	var streams []*stream
	for _, topic := range []string{"a", "b", "c"} {
		streams = append(streams, n.subscribe(t, "topic="+topic, ""), n.subscribe(t, "topic="+topic, ""))
	}
	for _, topic := range []string{"a", "b", "c"} {
		n.publish(t, topic, topic+"1")
	}
	for i, s := range streams {
		s.expect(t, string("abc"[i/2])+"1")
	}
	if r := readers(); r != 1 {
		t.Fatalf("%d readers for 3 topics and 6 subscribers", r)
	}
	woken := func(topic string) int64 {
		return ctl.PubSubNumSub(ctx, "sse:wake:"+topic).Val()["sse:wake:"+topic]
	}
	eventually(t, "the node to wait for wake-ups of its topics", func() bool { return woken("a") == 1 })
	streams[0].close()
	streams[1].close()
	eventually(t, "the node to stop reading a topic without subscribers", func() bool { return woken("a") == 0 })
	if woken("b") != 1 {
		t.Errorf("topic b: %d wake-up subscriptions, want 1", woken("b"))
	}

	n.shutdown()
	for _, s := range streams {
		for range s.events {
			// the node closed the stream
		}
	}
	if r := readers(); r != 0 {
		t.Errorf("%d readers still running after Close", r)
	}
	eventually(t, "the node's goroutines to end", func() bool { return runtime.NumGoroutine() <= goroutinesBefore })
	eventually(t, "the node's Redis connections to close", func() bool { return clients() <= clientsBefore })
}

// readers counts the Brokers' readers running.
func readers() int {
	n := 0
	for _, g := range goroutines() {
		if strings.Contains(g, "redis.(*Broker).read(") {
			n++
		}
	}
	return n
}

func eventually(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second) // a hang, not a measurement
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s:\n%s", what, strings.Join(goroutines(), "\n\n"))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// lagging holds its feeds' deliveries until released, as a node whose
// feed reads later than another node wrote.
type lagging struct {
	*sseredis.Broker
	gate chan struct{}
	once sync.Once
}

func (b *lagging) Subscribe(ctx context.Context, topic string, deliver func(sse.Entry)) (string, error) {
	return b.Broker.Subscribe(ctx, topic, func(e sse.Entry) {
		<-b.gate
		deliver(e)
	})
}

func (b *lagging) release() { b.once.Do(func() { close(b.gate) }) }

// Clients that resume on a node whose feed lags behind Redis get what they
// missed once: the heads Replay reports let the Hub skip what the feed
// delivers late.
func TestLaggingFeedNoDuplicate(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t, false)
	a := newNode(t, srv)
	lag := &lagging{gate: make(chan struct{})}
	b := newNode(t, srv, func(n *node) { lag.Broker, n.wrap = n.broker, lag })
	t.Cleanup(lag.release) // before the node's: a held feed would keep Close waiting

	live := b.subscribe(t, "topic=t", "")
	ids := a.publish(t, "t", "e1", "e2") // in Redis; B's feed holds them
	ahead := b.subscribe(t, "topic=t", ids[1])
	between := b.subscribe(t, "topic=t", ids[0])
	lag.release()
	a.publish(t, "t", "e3")
	live.expect(t, "e1", "e2", "e3")
	ahead.expect(t, "e3")
	between.expect(t, "e2", "e3")
	for _, s := range []*stream{live, ahead, between} {
		s.silent(t, 200*time.Millisecond)
	}
}

// A client of several topics resumes from one id on another node: ids are
// unique across topics, so the replay holds exactly the later events of
// each, in publish order.
func TestMultiTopicResume(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t, false)
	a, b := newNode(t, srv), newNode(t, srv)
	var ids []string
	for i := range 50 { // many in one millisecond: Redis's own ids would collide across streams
		ids = append(ids, a.publish(t, "ab"[i%2:i%2+1], fmt.Sprint(i+1))...)
	}
	c := b.subscribe(t, "topic=a&topic=b", ids[9])
	c.expect(t, names("", 50)[10:]...)
	c.silent(t, 200*time.Millisecond)
}

// MaxLen bounds each stream approximately; negative never trims.
func TestMaxLen(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t, false)
	ctx := context.Background()
	for _, tt := range []struct {
		maxLen   int64
		min, max int64
	}{{-1, 1000, 1000}, {10, 10, 999}, {0, 1000, 1000}} {
		br := &sseredis.Broker{Client: srv.Client(t), Prefix: fmt.Sprint(tt.maxLen, ":"), MaxLen: tt.maxLen}
		for range 1000 {
			if _, err := br.Publish(ctx, "t", sse.Message{}); err != nil {
				t.Fatal(err)
			}
		}
		if l := srv.Client(t).XLen(ctx, fmt.Sprint(tt.maxLen, ":topic:t")).Val(); l < tt.min || l > tt.max {
			t.Errorf("MaxLen %d: %d entries", tt.maxLen, l)
		}
		br.Close()
	}
}

// TestRecent: the newest events of each topic, merged in id order, with
// the heads Replay gives; a Hub with Recent set starts a new stream with
// them, then live events of any node.
func TestRecent(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t, false)
	b := &sseredis.Broker{Client: srv.Client(t), Logger: quiet}
	defer b.Close()
	ctx := context.Background()
	ids := map[string]string{}
	for _, p := range []struct{ topic, data string }{{"a", "a1"}, {"a", "a2"}, {"b", "b1"}, {"a", "a3"}} {
		id, err := b.Publish(ctx, p.topic, sse.Message{Data: []byte(p.data)})
		if err != nil {
			t.Fatal(err)
		}
		ids[p.data] = id
	}
	for _, tt := range []struct {
		n    int
		want string
	}{{2, "a:a2 b:b1 a:a3"}, {10, "a:a1 a:a2 b:b1 a:a3"}, {0, ""}} {
		entries, heads, err := b.Recent(ctx, []string{"a", "b", "none"}, tt.n)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, e := range entries {
			got = append(got, e.Topic+":"+string(e.Data))
			if e.ID != ids[string(e.Data)] {
				t.Errorf("entry %+v, want id %s", e, ids[string(e.Data)])
			}
		}
		if strings.Join(got, " ") != tt.want || fmt.Sprint(heads) != fmt.Sprint([]string{ids["a3"], ids["b1"], "0-0"}) {
			t.Errorf("Recent(%d) = %v %v, want %s and heads a3, b1, 0-0", tt.n, got, heads, tt.want)
		}
	}

	one := newNode(t, srv, func(n *node) { n.recent = 2 })
	other := newNode(t, srv)
	s := one.subscribe(t, "topic=a", "")
	s.expect(t, "a2", "a3")
	other.publish(t, "a", "a4")
	s.expect(t, "a4")
}

// beforeTopicB runs fire once, just before the first command (or pipeline,
// or script) that names the stream of topic "b": between Replay's reads of
// topics "a" and "b", if it reads them one at a time.
type beforeTopicB struct {
	armed atomic.Bool
	fire  func()
}

func (h *beforeTopicB) names(cmds ...redis.Cmder) bool {
	for _, c := range cmds {
		for _, a := range c.Args() {
			if a == "sse:topic:b" {
				return true
			}
		}
	}
	return false
}

func (h *beforeTopicB) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *beforeTopicB) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, c redis.Cmder) error {
		if h.names(c) && h.armed.CompareAndSwap(true, false) {
			h.fire()
		}
		return next(ctx, c)
	}
}

func (h *beforeTopicB) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if h.names(cmds...) && h.armed.CompareAndSwap(true, false) {
			h.fire()
		}
		return next(ctx, cmds)
	}
}

// Replay and Recent of several topics read them at one moment: an event
// of topic a published just before one of topic b is never missing from
// a reply that has the one of b, which the client would resume after.
func TestReplaySeveralTopicsIsOneRead(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t, false)
	c := srv.Client(t)
	b := &sseredis.Broker{Client: c, Logger: quiet}
	pub := &sseredis.Broker{Client: srv.Client(t), Logger: quiet}
	t.Cleanup(func() { b.Close(); pub.Close() })
	ctx := context.Background()
	a0, err := pub.Publish(ctx, "a", sse.Message{Data: []byte("a0")})
	if err != nil {
		t.Fatal(err)
	}
	h := &beforeTopicB{}
	c.AddHook(h)
	for _, tc := range []struct {
		name string
		read func() ([]sse.Entry, []string, error)
	}{
		{"Replay", func() ([]sse.Entry, []string, error) { return b.Replay(ctx, []string{"a", "b"}, a0) }},
		{"Recent", func() ([]sse.Entry, []string, error) { return b.Recent(ctx, []string{"a", "b"}, 100) }},
	} {
		var a1, b1 string
		var pubErr error
		h.fire = func() {
			if a1, pubErr = pub.Publish(ctx, "a", sse.Message{Data: []byte("a1")}); pubErr == nil {
				b1, pubErr = pub.Publish(ctx, "b", sse.Message{Data: []byte("b1")})
			}
		}
		h.armed.Store(true)
		entries, heads, err := tc.read()
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if h.armed.Load() || pubErr != nil {
			t.Fatalf("%s: the publishes during the read did not happen: %v", tc.name, pubErr)
		}
		var ids []string
		for _, e := range entries {
			ids = append(ids, e.ID)
		}
		if slices.Contains(ids, b1) && !slices.Contains(ids, a1) {
			t.Fatalf("%s: got %v, heads %v: b1 (%s) but not a1 (%s), published before it", tc.name, ids, heads, b1, a1)
		}
		if heads[1] == b1 && heads[0] != a1 {
			t.Fatalf("%s: heads %v: b1 (%s) but not a1 (%s)", tc.name, heads, b1, a1)
		}
		a0 = b1 // the next read starts after both
	}
}
