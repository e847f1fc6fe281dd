package sse_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"time"

	"github.com/b2ce5911/sse"
)

func ExampleUpgrade() {
	prices := make(chan float64, 2)
	prices <- 42.5
	prices <- 43.0
	close(prices)

	handler := func(w http.ResponseWriter, r *http.Request) {
		c, err := sse.Upgrade(w, r)
		if err != nil {
			return // Upgrade has answered the request
		}
		defer c.Close()
		for p := range prices {
			if err := c.WriteJsonEvent("price", map[string]float64{"eur": p}); err != nil {
				return // the client went away
			}
		}
	}

	srv := httptest.NewServer(http.HandlerFunc(handler))
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL)
	if err != nil {
		panic(err)
	}
	defer resp.Body.Close()
	d := sse.NewDecoder(resp.Body)
	for {
		e, err := d.Decode()
		if err != nil {
			break
		}
		fmt.Printf("%s %s\n", e.Type, e.Bytes())
	}
	// Output:
	// price {"eur":42.5}
	// price {"eur":43}
}

func ExampleHub() {
	hub := &sse.Hub{Upgrader: sse.Upgrader{RetryTime: time.Second}}
	defer hub.Close()
	srv := httptest.NewServer(hub) // GET /?topic=news subscribes to news
	defer srv.Close()

	resp, err := srv.Client().Get(srv.URL + "/?topic=news")
	if err != nil {
		panic(err)
	}
	defer resp.Body.Close()
	for hub.Stats().Subscribers == 0 {
		time.Sleep(time.Millisecond) // wait until the server has registered it
	}

	hub.Publish(context.Background(), "news", sse.Message{Type: "headline", Data: []byte("SSE library ships")})
	hub.Publish(context.Background(), "weather", sse.Message{Data: []byte("rain")}) // another topic

	e, err := sse.NewDecoder(resp.Body).Decode()
	if err != nil {
		panic(err)
	}
	fmt.Printf("%s: %s\n", e.Type, e.Bytes())
	// Output:
	// headline: SSE library ships
}

func ExampleJsonMessage() {
	type order struct {
		ID     int    `json:"id"`
		Status string `json:"status"`
	}
	hub := &sse.Hub{}
	defer hub.Close()

	// The id is the order's own, so that a client that reconnects with it
	// as its Last-Event-ID resumes right after this event.
	m, err := sse.JsonMessage("order-42", "order", order{42, "paid"})
	if err != nil {
		panic(err) // the order could not be marshalled, or the id is invalid
	}
	id, err := hub.Publish(context.Background(), "orders", m)
	if err != nil {
		panic(err)
	}
	wire, _ := m.AppendTo(nil)
	fmt.Printf("published %s as\n%s", id, wire)
	// Output:
	// published order-42 as
	// id: order-42
	// event: order
	// data: {"id":42,"status":"paid"}
}

func ExampleConn_WriteJsonEventWithID() {
	type price struct {
		Seq int     `json:"seq"`
		EUR float64 `json:"eur"`
	}
	history := []price{{1, 42.5}, {2, 43}, {3, 41.75}}

	handler := func(w http.ResponseWriter, r *http.Request) {
		c, err := sse.Upgrade(w, r)
		if err != nil {
			return // Upgrade has answered the request
		}
		defer c.Close()
		after, _ := strconv.Atoi(c.LastEventID()) // 0 on a first connection
		for _, p := range history {
			if p.Seq <= after {
				continue // the client has it
			}
			if err := c.WriteJsonEventWithID(strconv.Itoa(p.Seq), "price", p); err != nil {
				return // the client went away
			}
		}
	}

	srv := httptest.NewServer(http.HandlerFunc(handler))
	defer srv.Close()
	req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
	req.Header.Set("Last-Event-ID", "1") // a client resuming after the first price
	resp, err := srv.Client().Do(req)
	if err != nil {
		panic(err)
	}
	defer resp.Body.Close()
	d := sse.NewDecoder(resp.Body)
	for {
		e, err := d.Decode()
		if err != nil {
			break
		}
		fmt.Printf("%s %s %s\n", e.ID, e.Type, e.Bytes())
	}
	// Output:
	// 2 price {"seq":2,"eur":43}
	// 3 price {"seq":3,"eur":41.75}
}
