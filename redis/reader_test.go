package sseredis_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/b2ce5911/sse"
	"github.com/b2ce5911/sse/redis/redistest"
	"github.com/redis/go-redis/v9"
)

// nodeClient makes a node use a client of its own options.
func nodeClient(srv *redistest.Server, opt redis.Options) func(*node) {
	return func(n *node) {
		n.client.Close()
		opt.Network, opt.Addr, opt.MaxRetries = "unix", srv.Socket, -1
		n.client = redis.NewClient(&opt)
		n.broker.Client = n.client
	}
}

// A node serving 100 topics, each with a subscriber, on a client whose
// pool holds 4 connections: every subscriber registers and gets its
// topic's events, publishes work, and the node holds no more connections
// than its pool and one Pub/Sub connection.
func TestConnectionsDoNotGrowWithTopics(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t, false)
	const pool = 4
	b := newNode(t, srv, nodeClient(srv, redis.Options{ClientName: "node-b", PoolSize: pool}))
	a := newNode(t, srv)
	topics := names("t", 100)
	subs := make([]*stream, len(topics))
	for i, topic := range topics {
		subs[i] = b.subscribe(t, "topic="+topic, "")
	}
	for _, topic := range topics {
		a.publish(t, topic, "from a "+topic)
		b.publish(t, topic, "from b "+topic)
	}
	for i, s := range subs {
		s.expect(t, "from a "+topics[i], "from b "+topics[i])
	}
	list, err := a.client.ClientList(context.Background()).Result()
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(list, " name=node-b "); n > pool+1 {
		t.Errorf("the node holds %d Redis connections for %d topics, want at most %d", n, len(topics), pool+1)
	}
}

// closeWithin closes n's Broker and fails the test if that takes longer
// than d, a bound on a hang with ample slack.
func closeWithin(t *testing.T, n *node, d time.Duration) {
	t.Helper()
	n.hub.Close()
	done := make(chan struct{})
	start := time.Now()
	go func() {
		n.broker.Close()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(d):
		<-done
		t.Errorf("Close took %v, want at most about the client's ReadTimeout", time.Since(start).Round(time.Millisecond))
	}
}

// Close returns within about the client's ReadTimeout when Redis has
// stopped answering, whatever Block is.
func TestCloseWhenRedisHangs(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t, false)
	n := newNode(t, srv, nodeClient(srv, redis.Options{ReadTimeout: 500 * time.Millisecond}))
	s := n.subscribe(t, "topic=t", "")
	n.publish(t, "t", "e1")
	s.expect(t, "e1")
	srv.Pause(t)
	defer srv.Resume(t)
	time.Sleep(400 * time.Millisecond) // twice Block: the feed reads, and waits
	closeWithin(t, n, 5*time.Second)
}

// A Block under a millisecond neither makes the feed wait forever nor
// keeps Close waiting.
func TestCloseWithTinyBlock(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t, false)
	n := newNode(t, srv, func(n *node) { n.broker.Block = 500 * time.Microsecond })
	s := n.subscribe(t, "topic=t", "")
	n.publish(t, "t", "e1")
	s.expect(t, "e1")
	time.Sleep(100 * time.Millisecond)
	closeWithin(t, n, 5*time.Second)
}

// A client of two topics, on a node where two publishers of another node
// write one each at once, gets every event once with ids in increasing
// order, each topic's in publish order; resuming from any id gives exactly
// the events after it.
func TestSeveralTopicsOneOrder(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t, false)
	a, b := newNode(t, srv), newNode(t, srv)
	c := b.subscribe(t, "topic=a&topic=b", "")
	const each = 1500
	var wg sync.WaitGroup
	for _, topic := range []string{"a", "b"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				if _, err := a.hub.Publish(context.Background(), topic, sse.Message{Data: []byte(fmt.Sprint(topic, i))}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	var got []event
	nextOf := map[byte]int{}
	for i := range 2 * each {
		e := c.next(t)
		if i > 0 && !idLess(got[i-1].id, e.id) {
			t.Fatalf("event %d: id %s after %s", i, e.id, got[i-1].id)
		}
		if want := fmt.Sprintf("%c%d", e.data[0], nextOf[e.data[0]]); e.data != want {
			t.Fatalf("got %q, want %q", e.data, want)
		}
		nextOf[e.data[0]]++
		got = append(got, e)
	}
	resumed := b.subscribe(t, "topic=a&topic=b", got[999].id)
	for _, want := range got[1000:] {
		if e := resumed.next(t); e != want {
			t.Fatalf("resumed: got %+v, want %+v", e, want)
		}
	}
}

// position opens a stream of n and returns the position it is told first.
func position(t *testing.T, n *node, query string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, n.ts.URL+"?"+query, nil)
	resp, err := n.ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	r := bufio.NewReader(resp.Body)
	var block strings.Builder
	for !strings.HasSuffix(block.String(), "\n\n") {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("stream %q: %v", block.String(), err)
		}
		if !strings.HasPrefix(line, ":") && !strings.HasPrefix(line, "retry:") {
			block.WriteString(line)
		}
	}
	d := sse.NewDecoder(strings.NewReader(block.String()))
	for {
		if _, err := d.Decode(); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
	}
	return d.LastEventID()
}

// A new client of several topics is told a position of its own topics,
// whatever other topics hold, and resumes from it with no reset.
func TestSeveralTopicsPosition(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t, false)
	a, b := newNode(t, srv), newNode(t, srv)
	for _, tt := range []struct {
		name   string
		before map[string]int // events of each topic before the client comes
	}{
		{"none", map[string]int{"other": 2}},
		{"one", map[string]int{"x": 1, "other": 2}},
		{"both", map[string]int{"x": 2, "y": 1, "other": 3}},
	} {
		x, y, other := tt.name+"x", tt.name+"y", tt.name+"other"
		for _, topic := range []string{"x", "y", "other"} {
			for i := range tt.before[topic] {
				a.publish(t, tt.name+topic, fmt.Sprint("old", i))
			}
		}
		a.publish(t, other, "newest")
		query := "topic=" + x + "&topic=" + y
		pos := position(t, b, query)
		s := b.subscribe(t, query, pos)
		a.publish(t, y, "new")
		if e := s.next(t); e.data != "new" || e.typ != "message" {
			t.Errorf("%s: resumed from %q: got %+v, want the new event", tt.name, pos, e)
		}
		s.close()
	}
}

// Broker.Publish refuses what the Hub's Publish refuses: a Type or Comment
// with a line break would be stored, then make every node evict the
// topic's subscribers and Replay drop the event.
func TestPublishValidatesFields(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t, false)
	n := newNode(t, srv)
	s := n.subscribe(t, "topic=t", "")
	ctx := context.Background()
	for _, m := range []sse.Message{
		{Type: "a\nb", Data: []byte("x")},
		{Type: "a\rb", Data: []byte("x")},
		{Comment: "c\nd", Data: []byte("x")},
	} {
		if _, err := n.broker.Publish(ctx, "t", m); !errors.Is(err, sse.ErrInvalidField) {
			t.Errorf("Publish(%+v) = %v, want ErrInvalidField", m, err)
		}
	}
	if l := n.client.XLen(ctx, "sse:topic:t").Val(); l != 0 {
		t.Errorf("%d entries stored", l)
	}
	n.publish(t, "t", "ok")
	s.expect(t, "ok")
}

// An entry whose wake-up never came (as one lost while the Pub/Sub
// connection was down) still reaches the subscribers: the reader reads
// every topic each Block.
func TestLostWakeUpIsPolled(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t, false)
	n := newNode(t, srv)
	s := n.subscribe(t, "topic=t", "")
	n.publish(t, "t", "woken")
	s.expect(t, "woken")
	ctx := context.Background()
	id, err := n.client.XAdd(ctx, &redis.XAddArgs{Stream: "sse:topic:t", Values: []any{"data", "unannounced"}}).Result()
	if err != nil {
		t.Fatal(err)
	}
	n.client.Set(ctx, "sse:lastid", id, 0) // as Publish would, so that its next id is greater
	s.expect(t, "unannounced")
	n.publish(t, "t", "woken again")
	s.expect(t, "woken again")
}
