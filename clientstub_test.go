package sse_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/b2ce5911/sse"
)

// stubRequest is what a stub server saw of one request.
type stubRequest struct {
	method, path, body string
	header             http.Header
}

// stubStep answers one request. quit closes when the test ends, so that a
// step that holds its connection open lets the server shut down.
type stubStep func(w http.ResponseWriter, r *http.Request, quit <-chan struct{})

// stubServer answers its n-th request with its n-th step, and every request
// past the script with 204, which stops a Client: a test's stream always
// comes to an end, without timing.
type stubServer struct {
	*httptest.Server
	steps []stubStep
	quit  chan struct{}

	mu   sync.Mutex
	reqs []stubRequest
}

func newStubServer(t *testing.T, steps ...stubStep) *stubServer {
	t.Helper()
	s := &stubServer{steps: steps, quit: make(chan struct{})}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(func() {
		close(s.quit)
		s.Close() // also closes the idle connections of s.Client()
	})
	return s
}

func (s *stubServer) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	s.mu.Lock()
	n := len(s.reqs)
	s.reqs = append(s.reqs, stubRequest{r.Method, r.URL.Path, string(body), r.Header.Clone()})
	s.mu.Unlock()
	if n >= len(s.steps) {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	s.steps[n](w, r, s.quit)
}

func (s *stubServer) requests() []stubRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]stubRequest(nil), s.reqs...)
}

// send answers with an event stream holding body, then ends it cleanly.
func stubSend(body string) stubStep { return stubSendAs("text/event-stream", body) }

func stubSendAs(contentType, body string) stubStep {
	return func(w http.ResponseWriter, r *http.Request, _ <-chan struct{}) {
		w.Header().Set("Content-Type", contentType)
		io.WriteString(w, body)
	}
}

// stubHang sends body and then keeps the connection open, silent, until
// the client goes away or the test ends.
func stubHang(body string) stubStep {
	return func(w http.ResponseWriter, r *http.Request, quit <-chan struct{}) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, body)
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
		case <-quit:
		}
	}
}

// stubHangBeforeHeaders never answers.
func stubHangBeforeHeaders(w http.ResponseWriter, r *http.Request, quit <-chan struct{}) {
	select {
	case <-r.Context().Done():
	case <-quit:
	}
}

// stubBreak sends body and then drops the connection in the middle of
// the chunked response: the client sees a network error, not a clean end.
func stubBreak(body string) stubStep {
	return func(w http.ResponseWriter, r *http.Request, _ <-chan struct{}) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, body)
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	}
}

func stubStatus(code int) stubStep {
	return func(w http.ResponseWriter, r *http.Request, _ <-chan struct{}) {
		w.WriteHeader(code)
	}
}

func stubRedirect(code int, location string) stubStep {
	return func(w http.ResponseWriter, r *http.Request, _ <-chan struct{}) {
		if location != "" {
			w.Header().Set("Location", location)
		}
		w.WriteHeader(code)
	}
}

// stubDelays records the waits of a Client instead of spending them.
type stubDelays struct {
	mu sync.Mutex
	d  []time.Duration
}

func (r *stubDelays) install(c *sse.Client) {
	sse.SetSleep(c, func(ctx context.Context, d time.Duration) error {
		r.mu.Lock()
		r.d = append(r.d, d)
		r.mu.Unlock()
		return ctx.Err()
	})
}

func (r *stubDelays) get() []time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]time.Duration(nil), r.d...)
}

// span is a wait within [lo, hi].
type span struct{ lo, hi time.Duration }

func exactly(d time.Duration) span { return span{d, d} }

// jittered is a wait of d plus the jitter, which adds up to half of it.
func jittered(d time.Duration) span { return span{d, d + d/2} }

// stubCollect ranges over c.Events and returns what it yielded.
func stubCollect(ctx context.Context, c *sse.Client, url string) ([]ev, error) {
	var got []ev
	for e, err := range c.Events(ctx, url) {
		if err != nil {
			return got, err
		}
		got = append(got, ev{e.ID, e.Type, string(e.Bytes())})
	}
	return got, nil
}

// stubErrorLog is an OnError hook that keeps what it is given.
type stubErrorLog struct {
	mu   sync.Mutex
	errs []error
}

func (l *stubErrorLog) add(err error) {
	l.mu.Lock()
	l.errs = append(l.errs, err)
	l.mu.Unlock()
}

func (l *stubErrorLog) get() []error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]error(nil), l.errs...)
}
