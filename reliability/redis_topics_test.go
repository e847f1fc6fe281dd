package reliability_test

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/b2ce5911/sse"
	sseredis "github.com/b2ce5911/sse/redis"
	"github.com/b2ce5911/sse/redis/redistest"
	"github.com/redis/go-redis/v9"
)

// TestRedisManyTopicsConstantConnections: one node serves 1,000 topics
// (10,000 with SSE_LONG=1), each with a subscriber, on go-redis' default
// pool: every subscriber registers and gets its topic's event, and the
// node holds no more Redis connections than its pool and one Pub/Sub
// connection, as with one topic.
func TestRedisManyTopicsConstantConnections(t *testing.T) {
	t.Parallel()
	topics := pick(1000, 10000)
	rs := redistest.Start(t, false)
	client := redis.NewClient(&redis.Options{Network: "unix", Addr: rs.Socket, MaxRetries: -1, ClientName: "node"})
	t.Cleanup(func() { client.Close() })
	b := &sseredis.Broker{Client: client, Logger: quiet}
	hub := &sse.Hub{Broker: b, Logger: quiet, MaxSubscribers: -1, Upgrader: sse.Upgrader{Heartbeat: -1}}
	addr := serveLoopback(t, hub, func() {
		hub.Close()
		b.Close()
	})
	ctl := rs.Client(t)
	connections := func() int {
		list, err := ctl.ClientList(context.Background()).Result()
		if err != nil {
			t.Fatal(err)
		}
		return strings.Count(list, " name=node ")
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: -1}}
	defer hc.CloseIdleConnections()
	got := make(chan string, topics)
	most := 0
	for i := range topics {
		topic := "t" + strconv.Itoa(i)
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/?topic="+topic, nil)
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("topic %s: status %d", topic, resp.StatusCode)
		}
		go func() {
			defer resp.Body.Close()
			e, err := sse.NewDecoder(resp.Body).Decode()
			if err != nil {
				got <- topic + ": " + err.Error()
				return
			}
			got <- topic + ": " + string(e.Bytes())
		}()
		if i%100 == 0 {
			most = max(most, connections())
		}
	}
	for deadline := time.Now().Add(60 * time.Second); hub.Stats().Subscribers < topics; { // a hang, not a measurement
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d subscribers registered", hub.Stats().Subscribers, topics)
		}
		time.Sleep(10 * time.Millisecond)
	}
	for i := range topics {
		topic := "t" + strconv.Itoa(i)
		if _, err := hub.Publish(ctx, topic, sse.Message{Data: []byte("for " + topic)}); err != nil {
			t.Fatal(err)
		}
	}
	for range topics {
		select {
		case s := <-got:
			topic, data, _ := strings.Cut(s, ": ")
			if data != "for "+topic {
				t.Fatalf("subscriber of %s got %q", topic, data)
			}
		case <-time.After(60 * time.Second):
			t.Fatal("a subscriber got nothing within 60 s")
		}
	}
	most = max(most, connections())
	if pool := client.Options().PoolSize; most > pool+1 {
		t.Errorf("the node held up to %d Redis connections for %d topics; its pool holds %d", most, topics, pool)
	}
	t.Logf("%d topics: at most %d Redis connections", topics, most)
}
