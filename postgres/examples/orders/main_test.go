package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/b2ce5911/sse"
	"github.com/b2ce5911/sse/postgres/pgtest"
)

var server *pgtest.Server

func TestMain(m *testing.M) {
	var err error
	if server, err = pgtest.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "FAIL: cannot start PostgreSQL:", err)
		os.Exit(1)
	}
	code := m.Run()
	server.Close()
	os.Exit(code)
}

// TestOrdersTwoNodes: an order placed on node A reaches a browser of node
// B as an event; one the table refuses publishes nothing.
func TestOrdersTwoNodes(t *testing.T) {
	ctx := context.Background()
	dbURL, err := server.NewDB(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := migrate(ctx, dbURL); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	var urls []string
	var nodes []*node
	// Both at once, as main starts them.
	type made struct {
		n   *node
		err error
	}
	ch := make(chan made, 2)
	for range 2 {
		go func() {
			n, err := newNode(ctx, dbURL, log)
			ch <- made{n, err}
		}()
	}
	for range 2 {
		m := <-ch
		n := m.n
		if m.err != nil {
			t.Fatal(m.err)
		}
		ts := httptest.NewServer(n)
		t.Cleanup(func() { n.Close(); ts.Close() })
		urls = append(urls, ts.URL)
		nodes = append(nodes, n)
	}
	page, err := http.Get(urls[0] + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(page.Body)
	page.Body.Close()
	if !strings.Contains(string(body), `new EventSource("/events?topic=orders")`) {
		t.Fatalf("GET / served %q", body)
	}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	req, _ := http.NewRequestWithContext(sctx, "GET", urls[1]+"/events?topic=orders", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	events := make(chan *sse.Event, 10)
	go func() {
		d := sse.NewDecoder(resp.Body)
		for {
			e, err := d.Decode()
			if err != nil {
				close(events)
				return
			}
			events <- e
		}
	}()
	for deadline := time.Now().Add(30 * time.Second); nodes[1].hub.Stats().Subscriptions == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the stream is not registered within 30s")
		}
	}
	for _, q := range []string{"0", "2"} {
		r, err := http.PostForm(urls[0]+"/orders", url.Values{"item": {"tea"}, "quantity": {q}})
		if err != nil {
			t.Fatal(err)
		}
		r.Body.Close()
		if want := map[string]int{"0": 422, "2": 200}[q]; r.StatusCode != want {
			t.Fatalf("quantity %s: status %d, want %d", q, r.StatusCode, want)
		}
	}
	select {
	case e, ok := <-events:
		if !ok {
			t.Fatal("the stream ended")
		}
		if e.Type != "order" || !strings.Contains(string(e.Bytes()), `"quantity":2`) {
			t.Fatalf("got %s %q, want the order of 2", e.Type, e.Bytes())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no event within 30s")
	}
}
