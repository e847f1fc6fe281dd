package sse_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"

	"github.com/b2ce5911/sse"
)

func ExampleClient_Events() {
	// A server that sends two events and then tells the client to stop.
	var served atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if served.Swap(true) {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "retry: 10\nid: 1\ndata: {\"price\": 42}\n\nid: 2\nevent: close\ndata: bye\n\n")
	}))
	defer srv.Close()

	c := &sse.Client{HTTPClient: srv.Client()}
	for e, err := range c.Events(context.Background(), srv.URL) {
		if err != nil {
			fmt.Println("stopped:", err)
			break
		}
		if e.Type == "message" {
			var v struct{ Price int }
			if err := e.ReadJson(&v); err == nil {
				fmt.Println(e.ID, "price", v.Price)
			}
			continue
		}
		fmt.Printf("%s %s %s\n", e.ID, e.Type, e.Bytes())
	}
	// Output:
	// 1 price 42
	// 2 close bye
}

func ExampleNotify() {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "data: hello\n\ndata: world\n\n")
	}))
	defer srv.Close()

	evCh := make(chan *sse.Event)
	done := make(chan error, 1)
	go func() {
		done <- sse.Notify(srv.URL, srv.Client(), nil, evCh)
	}()
	for {
		select {
		case e := <-evCh:
			fmt.Printf("%s: %s\n", e.Type, e.Bytes())
			continue
		case err := <-done:
			fmt.Println("end of stream, error:", err)
		}
		break
	}
	// Output:
	// message: hello
	// message: world
	// end of stream, error: <nil>
}
