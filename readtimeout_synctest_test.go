//go:build go1.25

package sse_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/b2ce5911/sse"
)

// scriptedTransport answers the n-th request with its n-th step, and every
// request past the script with 204. A step writes the body, or returns an
// error instead of a response; it runs in memory, so that it can be silent
// for minutes of fake time.
type scriptedTransport struct {
	steps []func(ctx context.Context, w io.Writer) error
	mu    sync.Mutex
	n     int
}

func (s *scriptedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	s.mu.Lock()
	n := s.n
	s.n++
	s.mu.Unlock()
	if n >= len(s.steps) {
		return &http.Response{StatusCode: http.StatusNoContent, Status: "204 No Content", Header: http.Header{}, Body: http.NoBody, Request: req}, nil
	}
	pr, pw := io.Pipe()
	headers := make(chan error, 1)
	go func() {
		err := s.steps[n](req.Context(), &headerWriter{w: pw, sent: headers})
		select {
		case headers <- err: // nothing written: no headers either
		default:
		}
		pw.CloseWithError(err)
	}()
	stop := context.AfterFunc(req.Context(), func() { pw.CloseWithError(context.Cause(req.Context())) })
	if err := <-headers; err != nil {
		stop()
		return nil, err
	}
	return &http.Response{StatusCode: http.StatusOK, Status: "200 OK", Header: http.Header{"Content-Type": {"text/event-stream"}}, Body: pr, Request: req}, nil
}

// headerWriter lets RoundTrip return once the step writes its first bytes,
// as a server's headers come with its first flush.
type headerWriter struct {
	w    io.Writer
	sent chan error
	once sync.Once
}

func (h *headerWriter) Write(p []byte) (int, error) {
	h.once.Do(func() { h.sent <- nil })
	return h.w.Write(p)
}

func silence(ctx context.Context) error {
	<-ctx.Done()
	return context.Cause(ctx)
}

// TestClientSilentServerFakeTime runs servers that send nothing for
// minutes, in fake time: with a ReadTimeout of a minute the Client drops
// the connection after one silent minute (ErrReadTimeout to OnError),
// reconnects with the last id, and keeps every event it had; comments
// every 30 s keep a stream alive for as long as they come.
func TestClientSilentServerFakeTime(t *testing.T) {
	t.Parallel()
	write := func(w io.Writer, s string) error { _, err := io.WriteString(w, s); return err }
	tests := []struct {
		name  string
		steps []func(ctx context.Context, w io.Writer) error
		want  []ev
		// errs is what OnError must get, each at a fake time since the
		// start within the matching span (the wait after a failed attempt
		// has jitter).
		errs []error
		at   [][2]time.Duration
	}{
		{
			name: "silent after an event",
			steps: []func(ctx context.Context, w io.Writer) error{
				func(ctx context.Context, w io.Writer) error {
					if err := write(w, "id: 1\ndata: a\n\n"); err != nil {
						return err
					}
					return silence(ctx)
				},
				func(ctx context.Context, w io.Writer) error { return write(w, "data: b\n\n") },
			},
			want: []ev{{"1", "message", "a"}, {"1", "message", "b"}},
			errs: []error{sse.ErrReadTimeout, io.EOF},
			at:   [][2]time.Duration{{time.Minute, time.Minute}, {time.Minute + time.Second, time.Minute + time.Second}},
		},
		{
			name: "no response for minutes",
			steps: []func(ctx context.Context, w io.Writer) error{
				func(ctx context.Context, w io.Writer) error { return silence(ctx) },
				func(ctx context.Context, w io.Writer) error { return write(w, "data: b\n\n") },
			},
			want: []ev{{"", "message", "b"}},
			errs: []error{sse.ErrReadTimeout, io.EOF},
			at:   [][2]time.Duration{{time.Minute, time.Minute}, {time.Minute + time.Second, time.Minute + 3*time.Second/2}},
		},
		{
			name: "comments for ten minutes keep the stream",
			steps: []func(ctx context.Context, w io.Writer) error{
				func(ctx context.Context, w io.Writer) error {
					for range 20 {
						if err := write(w, ":\n"); err != nil {
							return err
						}
						time.Sleep(30 * time.Second)
					}
					return write(w, "data: a\n\n")
				},
			},
			want: []ev{{"", "message", "a"}},
			errs: []error{io.EOF},
			at:   [][2]time.Duration{{10 * time.Minute, 10 * time.Minute}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				start := time.Now()
				var errs []error
				var at []time.Duration
				c := &sse.Client{
					HTTPClient:     &http.Client{Transport: &scriptedTransport{steps: tt.steps}},
					ReadTimeout:    time.Minute,
					ReconnectDelay: time.Second,
					OnError: func(err error) {
						errs = append(errs, err)
						at = append(at, time.Since(start))
					},
				}
				got, err := stubCollect(context.Background(), c, "http://stream.test/")
				if err != nil {
					t.Fatalf("stopped with %v, want the 204's nil", err)
				}
				if !equalEvents(got, tt.want) {
					t.Errorf("events = %q, want %q", got, tt.want)
				}
				if len(errs) != len(tt.errs) {
					t.Fatalf("OnError got %v, want %v", errs, tt.errs)
				}
				for i := range errs {
					if !errors.Is(errs[i], tt.errs[i]) || at[i] < tt.at[i][0] || at[i] > tt.at[i][1] {
						t.Errorf("OnError %d: %v at %v, want %v within %v", i, errs[i], at[i], tt.errs[i], tt.at[i])
					}
				}
			})
		})
	}
}

// TestClientReadTimeoutIgnoresSlowConsumer checks that ReadTimeout counts
// only the server's silence: a consumer that takes three minutes per event,
// in fake time, with a ReadTimeout of one, gets every event and no timeout.
func TestClientReadTimeoutIgnoresSlowConsumer(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		tr := &scriptedTransport{steps: []func(context.Context, io.Writer) error{
			func(ctx context.Context, w io.Writer) error {
				_, err := io.WriteString(w, "data: a\n\ndata: b\n\ndata: c\n\n")
				return err
			},
		}}
		var errs stubErrorLog
		c := &sse.Client{HTTPClient: &http.Client{Transport: tr}, ReadTimeout: time.Minute, OnError: errs.add}
		var got []string
		for e, err := range c.Events(context.Background(), "http://stream.test/") {
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, string(e.Bytes()))
			time.Sleep(3 * time.Minute)
		}
		if want := []string{"a", "b", "c"}; !slices.Equal(got, want) {
			t.Errorf("events = %q, want %q", got, want)
		}
		for _, err := range errs.get() {
			if errors.Is(err, sse.ErrReadTimeout) {
				t.Errorf("read timeout while the consumer was busy: %v", err)
			}
		}
	})
}
