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

// A Client that POSTs a body and sends a fresh bearer token on every
// connection attempt: Prepare runs before each one, with the attempt's
// context for the token fetch, and the Client still sends Last-Event-ID
// itself.
func ExampleClient_refreshedToken() {
	var served atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := served.Add(1)
		if n > 2 {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		body, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "retry: 10\nid: %d\ndata: %s %s, %s after %q\n\n", n, r.Method, body, r.Header.Get("Authorization"), r.Header.Get("Last-Event-ID"))
	}))
	defer srv.Close()

	var tokens atomic.Int32
	fetchToken := func(ctx context.Context) (string, error) {
		return fmt.Sprintf("token-%d", tokens.Add(1)), ctx.Err()
	}
	c := &sse.Client{
		HTTPClient: srv.Client(),
		Method:     http.MethodPost,
		Body:       []byte(`{"prompt": "hi"}`), // sent again on every attempt
		Prepare: func(req *http.Request) error {
			token, err := fetchToken(req.Context())
			if err != nil {
				return err // stops the Client
			}
			req.Header.Set("Authorization", "Bearer "+token)
			return nil
		},
	}
	for e, err := range c.Events(context.Background(), srv.URL) {
		if err != nil {
			fmt.Println("stopped:", err)
			break
		}
		fmt.Printf("%s\n", e.Bytes())
	}
	// Output:
	// POST {"prompt": "hi"}, Bearer token-1 after ""
	// POST {"prompt": "hi"}, Bearer token-2 after "1"
}
