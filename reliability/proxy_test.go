package reliability_test

import (
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/NYTimes/gziphandler"
	"github.com/b2ce5911/sse"
	"github.com/klauspost/compress/gzhttp"
)

// wire sits between a middleware and net/http's ResponseWriter and counts
// what the middleware passed on: the bytes written, and those of them
// handed to a Flush, which is what reaches the client.
type wire struct {
	http.ResponseWriter
	mu              sync.Mutex
	written, flushd int
}

func (w *wire) Write(b []byte) (int, error) {
	n, err := w.ResponseWriter.Write(b)
	w.mu.Lock()
	w.written += n
	w.mu.Unlock()
	return n, err
}

func (w *wire) Flush() {
	w.mu.Lock()
	w.flushd = w.written
	w.mu.Unlock()
	w.ResponseWriter.(http.Flusher).Flush()
}

func (w *wire) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *wire) flushed() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.flushd
}

// lockstep is a stream whose handler writes event k only when the client
// asks for it, and reports, once the write returned (the Conn flushed),
// how many bytes the middleware had flushed to the network by then.
type lockstep struct {
	step    chan int // event numbers to write
	flushed chan int // the wire's flushed byte count after each write
	wire    atomic.Pointer[wire]
}

// lockstepServer serves one lockstep stream through middleware.
func lockstepServer(t *testing.T, u *sse.Upgrader, middleware func(http.Handler) http.Handler) (*httptest.Server, *lockstep) {
	t.Helper()
	ls := &lockstep{step: make(chan int, 1), flushed: make(chan int, 1)}
	h := middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := u.Upgrade(w, r)
		if err != nil {
			t.Error(err)
			return
		}
		defer c.Close()
		for {
			select {
			case k := <-ls.step:
				if err := c.WriteMessage(sse.Message{ID: fmt.Sprint(k), Data: fmt.Appendf(nil, "event %d", k)}); err != nil {
					t.Error(err)
					return
				}
				ls.flushed <- ls.wire.Load().flushed()
			case <-c.Done():
				return
			}
		}
	}))
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		wr := &wire{ResponseWriter: w}
		ls.wire.Store(wr)
		h.ServeHTTP(wr, r)
	}))
	t.Cleanup(ts.Close)
	return ts, ls
}

// lockstepEvents checks that events 0..n-1 arrive one by one: event k is
// written only after event k-1 was decoded, and once its write returned the
// middleware must have flushed new bytes to the network. Event 0 was asked
// for already.
func lockstepEvents(t *testing.T, ls *lockstep, n int, next func() (*sse.Event, error)) {
	t.Helper()
	last := 0
	for k := range n {
		flushed := <-ls.flushed
		if flushed <= last {
			t.Fatalf("event %d: written and flushed by the Conn, but the middleware flushed nothing new to the network (%d bytes so far)", k, flushed)
		}
		last = flushed
		e, err := next()
		if err != nil {
			t.Fatalf("event %d: %v", k, err)
		}
		if e.ID != fmt.Sprint(k) || string(e.Bytes()) != fmt.Sprint("event ", k) {
			t.Fatalf("got %q %q, want event %d", e.ID, e.Bytes(), k)
		}
		if k+1 < n {
			ls.step <- k + 1
		}
	}
}

// TestCompressionMiddlewareOneByOne sends a stream through compression
// middlewares, to a client that asks for gzip, in lockstep: each event is
// written only after the previous one arrived, so a middleware that holds
// an event back shows as flushing nothing (no timing involved).
func TestCompressionMiddlewareOneByOne(t *testing.T) {
	t.Parallel()
	gzhttpDefaults := func(h http.Handler) http.Handler { return gzhttp.GzipHandler(h) }
	tests := []struct {
		name     string
		allow    bool // Upgrader.AllowCompression
		wrap     func(http.Handler) http.Handler
		encoding string // Content-Encoding of the answer
		stalls   bool   // the middleware holds the first event back
		proxied  bool   // an httputil.ReverseProxy stands in front
	}{
		{"gziphandler defaults", false, gziphandler.GzipHandler, "identity", false, false},
		{"gzhttp defaults", false, gzhttpDefaults, "identity", false, false},
		{"gzhttp defaults, AllowCompression", true, gzhttpDefaults, "gzip", false, false},
		{"gzhttp defaults, AllowCompression, behind a ReverseProxy", true, gzhttpDefaults, "gzip", false, true},
		{"gziphandler defaults, behind a ReverseProxy", false, gziphandler.GzipHandler, "identity", false, true},
		// The hazard AllowCompression documents: gziphandler buffers its
		// first 1400 bytes, headers included, whatever the handler flushes.
		{"gziphandler defaults, AllowCompression", true, gziphandler.GzipHandler, "", true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ts, ls := lockstepServer(t, &sse.Upgrader{Heartbeat: -1, AllowCompression: tt.allow}, tt.wrap)
			if tt.proxied {
				target, _ := url.Parse(ts.URL)
				proxy := httputil.NewSingleHostReverseProxy(target) // passes Accept-Encoding on, and the gzip stream back
				proxy.Transport = ts.Client().Transport
				ts = httptest.NewServer(proxy)
				t.Cleanup(ts.Close)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, ts.URL, nil)
			req.Header.Set("Accept-Encoding", "gzip") // set by hand: the Transport leaves the body as it came
			type answer struct {
				resp *http.Response
				err  error
			}
			answered := make(chan answer, 1)
			go func() {
				resp, err := ts.Client().Do(req)
				answered <- answer{resp, err}
			}()
			// The server writes event 0 whether or not the headers have
			// reached the client.
			ls.step <- 0
			if tt.stalls {
				if flushed := <-ls.flushed; flushed != 0 {
					t.Fatalf("the middleware flushed %d bytes; this case documents that it holds them", flushed)
				}
				cancel()
				if a := <-answered; a.err == nil {
					a.resp.Body.Close()
				}
				return
			}
			// Wait for the headers in lockstepEvents' first step; the
			// flush check comes first and fails rather than hangs.
			var d *sse.Decoder
			lockstepEvents(t, ls, 5, func() (*sse.Event, error) {
				if d == nil {
					a := <-answered
					if a.err != nil {
						return nil, a.err
					}
					t.Cleanup(func() { a.resp.Body.Close() })
					if got := a.resp.Header.Get("Content-Encoding"); got != tt.encoding {
						t.Errorf("Content-Encoding %q, want %q", got, tt.encoding)
					}
					var body io.Reader = a.resp.Body
					if tt.encoding == "gzip" {
						zr, err := gzip.NewReader(a.resp.Body)
						if err != nil {
							return nil, err
						}
						body = zr
					}
					d = sse.NewDecoder(body)
				}
				return d.Decode()
			})
		})
	}
}

// TestCompressedClientOneByOne reads a gzip-compressed stream with the
// package's Client, whose Transport asks for gzip and decodes it.
func TestCompressedClientOneByOne(t *testing.T) {
	t.Parallel()
	ts, ls := lockstepServer(t, &sse.Upgrader{Heartbeat: -1, AllowCompression: true}, func(h http.Handler) http.Handler { return gzhttp.GzipHandler(h) })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var decompressed atomic.Bool
	c := &sse.Client{HTTPClient: ts.Client(), OnConnect: func(resp *http.Response) { decompressed.Store(resp.Uncompressed) }}
	events := make(chan *sse.Event) // unbuffered: Notify hands over one event at a time
	stopped := make(chan error, 1)
	go func() { stopped <- c.Notify(ctx, ts.URL, events) }()
	ls.step <- 0
	lockstepEvents(t, ls, 5, func() (*sse.Event, error) {
		select {
		case e := <-events:
			return e, nil
		case err := <-stopped:
			return nil, err
		}
	})
	cancel()
	if err := <-stopped; !errors.Is(err, context.Canceled) {
		t.Errorf("Notify returned %v, want context.Canceled", err)
	}
	if !decompressed.Load() {
		t.Error("the stream did not come gzip-compressed")
	}
}
