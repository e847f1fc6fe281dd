package sse_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"time"

	"github.com/b2ce5911/sse"
)

// Per-user topics: each user's events go to a topic "user:<id>", and the
// Authorize hook lets a request read only the topic of the user its
// session belongs to, whatever topics it names. Without the hook any
// client could read anyone's events by naming their topic.
func ExampleHub_authorize() {
	sessions := map[string]string{"s3cr3t": "42"} // session cookie → user id
	hub := &sse.Hub{
		Authorize: func(r *http.Request, topics []string) ([]string, error) {
			cookie, err := r.Cookie("session")
			if err != nil || sessions[cookie.Value] == "" {
				return nil, sse.ErrUnauthorized // 401
			}
			own := "user:" + sessions[cookie.Value]
			if !slices.Contains(topics, own) {
				return nil, fmt.Errorf("user %s asked for %q", sessions[cookie.Value], topics) // 403, logged
			}
			return []string{own}, nil // the others named are dropped
		},
	}
	defer hub.Close()
	srv := httptest.NewServer(hub)
	defer srv.Close()

	resp, err := srv.Client().Get(srv.URL + "/?topic=user:42")
	if err != nil {
		panic(err)
	}
	resp.Body.Close()
	fmt.Println("without a session:", resp.Status)

	req, _ := http.NewRequest("GET", srv.URL+"/?topic=user:42&topic=user:7", nil)
	req.AddCookie(&http.Cookie{Name: "session", Value: "s3cr3t"})
	resp, err = srv.Client().Do(req)
	if err != nil {
		panic(err)
	}
	defer resp.Body.Close()
	for hub.Stats().Subscribers == 0 {
		time.Sleep(time.Millisecond) // wait until the server has registered it
	}
	hub.Publish(context.Background(), "user:7", sse.Message{Data: []byte("for user 7")})
	hub.Publish(context.Background(), "user:42", sse.Message{Data: []byte("for user 42")})
	e, err := sse.NewDecoder(resp.Body).Decode()
	if err != nil {
		panic(err)
	}
	fmt.Println("user 42 gets:", string(e.Bytes()))
	// Output:
	// without a session: 401 Unauthorized
	// user 42 gets: for user 42
}
