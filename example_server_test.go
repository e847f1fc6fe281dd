package sse_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
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
