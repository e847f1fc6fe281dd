//go:build go1.25

package sse_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/b2ce5911/sse"
)

// timedTransport notes the fake time of every request it passes on.
type timedTransport struct {
	next http.RoundTripper
	mu   sync.Mutex
	at   []time.Time
}

func (t *timedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	t.mu.Lock()
	t.at = append(t.at, time.Now())
	t.mu.Unlock()
	return t.next.RoundTrip(req)
}

// TestClientNeverReconnectsEarly checks, in fake time, that no wait between
// two attempts is shorter than the reconnection time, whether it comes from
// the server's retry field or from ReconnectDelay, after a working stream
// (exactly the reconnection time) and after failures of every kind, where
// backoff and jitter may only add to it.
func TestClientNeverReconnectsEarly(t *testing.T) {
	t.Parallel()
	const retry = 400 * time.Millisecond
	send := func(s string) func(context.Context, io.Writer) error {
		return func(_ context.Context, w io.Writer) error { _, err := io.WriteString(w, s); return err }
	}
	refused := func(context.Context, io.Writer) error { return errors.New("connection refused") }
	// Each script starts with a working stream; then come streams that
	// open and end without an event, and connections that fail.
	failures := func(first string) []func(context.Context, io.Writer) error {
		return []func(context.Context, io.Writer) error{
			send(first + "data: a\n\n"),
			send(":\n"), send(":\n"), refused, refused, send(""), refused, refused, refused,
			send("data: b\n\n"), refused, send(":\n"),
		}
	}
	tests := []struct {
		name   string
		steps  []func(context.Context, io.Writer) error
		config func(c *sse.Client)
	}{
		{"server retry", failures("retry: 400\n"), func(c *sse.Client) {}},
		{"ReconnectDelay", failures(""), func(c *sse.Client) { c.ReconnectDelay = retry }},
		{"server retry over ReconnectDelay", failures("retry: 400\n"), func(c *sse.Client) { c.ReconnectDelay = time.Millisecond }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				tr := &timedTransport{next: &scriptedTransport{steps: tt.steps}}
				c := &sse.Client{HTTPClient: &http.Client{Transport: tr}}
				tt.config(c)
				if _, err := stubCollect(context.Background(), c, "http://stream.test/"); err != nil {
					t.Fatalf("stopped with %v, want the 204's nil", err)
				}
				if len(tr.at) != len(tt.steps)+1 {
					t.Fatalf("%d requests, want %d", len(tr.at), len(tt.steps)+1)
				}
				for i := 1; i < len(tr.at); i++ {
					wait := tr.at[i].Sub(tr.at[i-1])
					if wait < retry || wait > 30*time.Second {
						t.Errorf("wait %d = %v, want within [%v, 30s]", i, wait, retry)
					}
				}
				// After a stream that dispatched an event: no backoff, no jitter.
				for _, i := range []int{1, 10} {
					if wait := tr.at[i].Sub(tr.at[i-1]); wait != retry {
						t.Errorf("wait %d after a working stream = %v, want exactly %v", i, wait, retry)
					}
				}
			})
		})
	}
}
