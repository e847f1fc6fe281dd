package reliability_test

import (
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

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

// plainWriter hides every optional interface of the ResponseWriter but
// Flush: a middleware of the kind that can neither hijack nor Unwrap.
type plainWriter struct{ w http.ResponseWriter }

func (p plainWriter) Header() http.Header         { return p.w.Header() }
func (p plainWriter) Write(b []byte) (int, error) { return p.w.Write(b) }
func (p plainWriter) WriteHeader(code int)        { p.w.WriteHeader(code) }
func (p plainWriter) Flush()                      { p.w.(http.Flusher).Flush() }

// TestHubBehindMiddleware serves a Hub through middlewares and proxies,
// detached (the default) and with DisableDetach: two streams get every
// event once and in order, one client leaves and the Hub notices, and
// Close ends the other cleanly (the last chunk reaches the client, through
// the proxy too). Which connections the Hub hijacked is checked, so that
// each case runs on the path it names.
func TestHubBehindMiddleware(t *testing.T) {
	t.Parallel()
	gzhttpDefaults := func(h http.Handler) http.Handler { return gzhttp.GzipHandler(h) }
	plain := func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { h.ServeHTTP(plainWriter{w}, r) })
	}
	none := func(h http.Handler) http.Handler { return h }
	tests := []struct {
		name     string
		wrap     func(http.Handler) http.Handler
		allow    bool // Upgrader.AllowCompression
		disable  bool // Hub.DisableDetach
		proxied  bool // an httputil.ReverseProxy stands in front
		encoding string
		detached bool // the Hub hijacks the connections
	}{
		{"bare", none, false, false, false, "identity", true},
		{"bare, DisableDetach", none, false, true, false, "identity", false},
		{"behind a ReverseProxy", none, false, false, true, "identity", true},
		{"behind a ReverseProxy, DisableDetach", none, false, true, true, "identity", false},
		{"gzhttp defaults", gzhttpDefaults, false, false, false, "identity", true},
		{"gziphandler defaults", gziphandler.GzipHandler, false, false, false, "identity", true},
		// A compressing middleware can hijack, but the Hub's plain chunks
		// must not follow its compressed bytes: the stream stays attached.
		{"gzhttp defaults, AllowCompression", gzhttpDefaults, true, false, false, "gzip", false},
		{"gzhttp defaults, AllowCompression, behind a ReverseProxy", gzhttpDefaults, true, false, true, "gzip", false},
		{"a wrapper without Hijack or Unwrap", plain, false, false, false, "identity", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			hub := &sse.Hub{Logger: quietLogger, DisableDetach: tt.disable, Upgrader: sse.Upgrader{Heartbeat: -1, AllowCompression: tt.allow}}
			var hijacked atomic.Int64
			ts := httptest.NewUnstartedServer(tt.wrap(hub))
			ts.Config.ConnState = func(_ net.Conn, s http.ConnState) {
				if s == http.StateHijacked {
					hijacked.Add(1)
				}
			}
			ts.Start()
			t.Cleanup(ts.Close)
			t.Cleanup(func() { hub.Close() }) // before ts.Close, which does not end detached streams
			front := ts
			if tt.proxied {
				target, _ := url.Parse(ts.URL)
				proxy := httputil.NewSingleHostReverseProxy(target)
				proxy.Transport = ts.Client().Transport
				front = httptest.NewServer(proxy)
				t.Cleanup(front.Close)
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			type stream struct {
				cancel context.CancelFunc
				body   io.ReadCloser
				d      *sse.Decoder
			}
			open := func() *stream {
				sctx, scancel := context.WithCancel(ctx)
				req, _ := http.NewRequestWithContext(sctx, http.MethodGet, front.URL+"/?topic=t", nil)
				req.Header.Set("Accept-Encoding", "gzip") // by hand: the Transport leaves the body as it came
				resp, err := front.Client().Do(req)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { resp.Body.Close() })
				if got := resp.Header.Get("Content-Encoding"); got != tt.encoding {
					t.Errorf("Content-Encoding %q, want %q", got, tt.encoding)
				}
				var body io.Reader = resp.Body
				if tt.encoding == "gzip" {
					zr, err := gzip.NewReader(resp.Body)
					if err != nil {
						t.Fatal(err)
					}
					body = zr
				}
				return &stream{scancel, resp.Body, sse.NewDecoder(body)}
			}
			a, b := open(), open()
			waitFor(t, 30*time.Second, func() bool { return hub.Stats().Subscribers == 2 }, "both streams to be served")
			const events = 20
			for i := range events {
				if _, err := hub.Publish(ctx, "t", sse.Message{Data: fmt.Appendf(nil, "event %d", i)}); err != nil {
					t.Fatal(err)
				}
			}
			for _, s := range []*stream{a, b} {
				for i := range events {
					e, err := s.d.Decode()
					if err != nil {
						t.Fatalf("event %d: %v", i, err)
					}
					if got, want := string(e.Bytes()), fmt.Sprint("event ", i); got != want {
						t.Fatalf("got %q, want %q", got, want)
					}
				}
			}
			if got, want := hijacked.Load() > 0, tt.detached; got != want {
				t.Errorf("%d connections hijacked: detached=%v, want %v", hijacked.Load(), got, want)
			}
			// a leaves: the Hub must notice, through the proxy too.
			a.cancel()
			a.body.Close()
			waitFor(t, 30*time.Second, func() bool { return hub.Stats().Subscribers == 1 }, "the Hub to notice the client that left")
			// Close ends b with the end of its response, not a cut.
			if err := hub.Close(); err != nil {
				t.Fatal(err)
			}
			if e, err := b.d.Decode(); err != io.EOF {
				t.Errorf("after Close: %v %v, want io.EOF (the response's clean end)", e, err)
			}
			waitFor(t, 30*time.Second, func() bool { return hub.Stats().Subscribers == 0 }, "every stream to end")
		})
	}
}
