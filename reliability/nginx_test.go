package reliability_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/b2ce5911/sse"
)

// nginxWait bounds each wait of TestHubBehindNginx: ample on a loaded
// machine.
const nginxWait = 20 * time.Second

// nginxConf proxies everything to the Hub the way an SSE deployment
// should: HTTP/1.1 upstream without "Connection: close" (so that the Hub
// can detach), no buffering, no read timeout to cut idle streams. Every
// path nginx writes is in the test's directory.
const nginxConf = `daemon off;
master_process off;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log info;
events { worker_connections 64; }
http {
	access_log off;
	client_body_temp_path %[1]s/client_body;
	proxy_temp_path %[1]s/proxy;
	fastcgi_temp_path %[1]s/fastcgi;
	uwsgi_temp_path %[1]s/uwsgi;
	scgi_temp_path %[1]s/scgi;
	server {
		listen %[2]s;
		location / {
			proxy_pass http://%[3]s;
			proxy_http_version 1.1;
			proxy_set_header Connection "";
			proxy_buffering off;
			proxy_read_timeout 1h;
		}
	}
}
`

// startNginx starts an nginx of the test's own in front of upstream and
// returns its address; it is stopped when the test ends. Without nginx the
// test fails: it is what the test is about.
func startNginx(t *testing.T, upstream string) string {
	t.Helper()
	bin, err := exec.LookPath("nginx")
	if err != nil {
		if _, serr := os.Stat("/usr/sbin/nginx"); serr != nil {
			t.Fatalf("nginx is not installed (%v): scripts/test installs it as root, or apt-get install nginx", err)
		}
		bin = "/usr/sbin/nginx"
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nginx binds it in a moment
	dir := t.TempDir()
	conf := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(conf, fmt.Appendf(nil, nginxConf, dir, addr, upstream), 0o600); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	cmd := exec.Command(bin, "-p", dir, "-c", conf, "-e", filepath.Join(dir, "error.log"))
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGQUIT) // graceful: its clients are gone by now
		select {
		case <-exited:
		case <-time.After(nginxWait):
			t.Errorf("nginx did not quit in %v after SIGQUIT", nginxWait)
			cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			log, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			t.Logf("nginx's error log:\n%s%s", out.Bytes(), log)
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case <-exited:
			log, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			t.Fatalf("nginx exited: %v\n%s%s", cmd.ProcessState, out.Bytes(), log)
		default:
		}
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return addr
		}
		if time.Now().After(deadline) {
			t.Fatalf("nginx did not accept on %s in 10 s: %v", addr, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// nginxUpstream is a Hub on a plain http.Server behind a handler that can
// be pointed at a replacement Hub on the same Broker, whose requests wait
// until the test opens the gate.
type nginxUpstream struct {
	t        *testing.T
	addr     string
	broker   *sse.MemoryBroker
	hub      atomic.Pointer[sse.Hub]
	gate     atomic.Pointer[chan struct{}] // nil: no wait
	hijacked atomic.Int64                  // connections net/http reported as StateHijacked

	mu          sync.Mutex
	lastEventID []string // the Last-Event-ID of each request, in order
}

func newNginxUpstream(t *testing.T) *nginxUpstream {
	t.Helper()
	u := &nginxUpstream{t: t, broker: &sse.MemoryBroker{}}
	u.hub.Store(u.newHub())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u.addr = ln.Addr().String()
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			u.mu.Lock()
			u.lastEventID = append(u.lastEventID, r.Header.Get("Last-Event-ID"))
			u.mu.Unlock()
			if g := u.gate.Load(); g != nil {
				select {
				case <-*g:
				case <-r.Context().Done():
					return
				}
			}
			u.hub.Load().ServeHTTP(w, r)
		}),
		ConnState: func(_ net.Conn, st http.ConnState) {
			if st == http.StateHijacked {
				u.hijacked.Add(1)
			}
		},
	}
	served := make(chan struct{})
	go func() { srv.Serve(ln); close(served) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), nginxWait)
		defer cancel()
		u.hub.Load().Shutdown(ctx)
		srv.Close()
		<-served
		u.broker.Close()
	})
	return u
}

func (u *nginxUpstream) newHub() *sse.Hub {
	return &sse.Hub{Broker: u.broker, Logger: slog.New(slog.DiscardHandler), Upgrader: sse.Upgrader{RetryTime: 20 * time.Millisecond, RetryJitter: -1}}
}

// waitStreams waits until the current Hub serves n streams, and hijacked
// connections in all were hijacked: the streams are detached.
func (u *nginxUpstream) waitStreams(n int, hijacked int64) {
	u.t.Helper()
	deadline := time.Now().Add(nginxWait)
	for u.hub.Load().Stats().Subscribers != n || u.hijacked.Load() != hijacked {
		if time.Now().After(deadline) {
			u.t.Fatalf("waited %v for %d detached streams: %+v, %d hijacked, want %d", nginxWait, n, u.hub.Load().Stats(), u.hijacked.Load(), hijacked)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// publish publishes events from..to-1 and returns what a client should
// see of each, "id data": one line, three lines, or over 9 KB, so that
// nginx's reads and chunks vary too.
func (u *nginxUpstream) publish(from, to int) []string {
	u.t.Helper()
	var want []string
	for i := from; i < to; i++ {
		data := fmt.Sprintf("event %d", i)
		switch i % 3 {
		case 1:
			data += "\nsecond line\nthird line"
		case 2:
			data += " " + strings.Repeat("x", 9000)
		}
		id, err := u.hub.Load().Publish(context.Background(), "t", sse.Message{Data: []byte(data)})
		if err != nil {
			u.t.Fatal(err)
		}
		want = append(want, id+" "+data)
	}
	return want
}

// nginxClient is an sse.Client reading the stream through nginx.
type nginxClient struct {
	events chan *sse.Event
	ended  chan error // what OnError reported: the ends of its streams
	got    int        // events checked so far
}

// expect checks that the next events c dispatches are want.
func (c *nginxClient) expect(t *testing.T, name string, want []string) {
	t.Helper()
	for _, w := range want {
		select {
		case e := <-c.events:
			if got := e.ID + " " + string(e.Bytes()); got != w {
				t.Fatalf("%s: event %d is %.60q, want %.60q", name, c.got, got, w)
			}
			c.got++
		case <-time.After(nginxWait):
			t.Fatalf("%s: waited %v for event %d (%.60q)", name, nginxWait, c.got, w)
		}
	}
}

// TestHubBehindNginx serves detached Hub streams through nginx (1.22 in
// Debian 12), which re-frames the Hub's hand-written chunks for its own
// clients: several sse.Clients get every event, of one line, several or
// over 9 KB, in order; at the Hub's Shutdown, with a new Hub taking over on
// the same Broker, each sees a clean end of its stream (io.EOF: nginx ends
// its own response cleanly only when the upstream's ended with the last
// chunk, and cuts it off otherwise), comes back with the last id as
// Last-Event-ID and misses none of the events published while it was
// away, nor gets one twice. A client that closes its connection to nginx
// is noticed by the Hub: nginx closes the upstream connection, and the
// Hub's poller sees it.
func TestHubBehindNginx(t *testing.T) {
	u := newNginxUpstream(t)
	url := "http://" + startNginx(t, u.addr) + "/events?topic=t"

	const n = 3
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})
	clients := make([]*nginxClient, n)
	for i := range clients {
		c := &nginxClient{events: make(chan *sse.Event, 64), ended: make(chan error, 4)}
		clients[i] = c
		sc := &sse.Client{
			HTTPClient:     &http.Client{Transport: tr},
			ReconnectDelay: 20 * time.Millisecond,
			OnError: func(err error) {
				select {
				case c.ended <- err:
				default:
				}
			},
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := sc.Notify(ctx, url, c.events); !errors.Is(err, context.Canceled) {
				t.Errorf("client %d: Notify returned %v, want context.Canceled", i, err)
			}
		}()
	}
	expectAll := func(want []string) {
		t.Helper()
		for i, c := range clients {
			c.expect(t, fmt.Sprint("client ", i), want)
		}
	}

	u.waitStreams(n, n)
	want := u.publish(0, 9)
	expectAll(want)
	lastBefore, _, _ := strings.Cut(want[len(want)-1], " ")

	// The replacement Hub holds the clients' new requests until the
	// events of the gap are published, so they can only come from the
	// Broker through Last-Event-ID.
	gate := make(chan struct{})
	u.gate.Store(&gate)
	old := u.hub.Swap(u.newHub())
	sctx, scancel := context.WithTimeout(context.Background(), nginxWait)
	err := old.Shutdown(sctx)
	scancel()
	if err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	for i, c := range clients {
		select {
		case err := <-c.ended:
			if !errors.Is(err, io.EOF) {
				t.Fatalf("client %d: the stream ended with %v, want a clean end (io.EOF)", i, err)
			}
		case <-time.After(nginxWait):
			t.Fatalf("client %d: did not see its stream end in %v", i, nginxWait)
		}
	}
	gap := u.publish(9, 15)
	close(gate)
	u.waitStreams(n, 2*n)
	u.gate.Store(nil)
	expectAll(gap)
	expectAll(u.publish(15, 21))

	u.mu.Lock()
	ids := slices.Clone(u.lastEventID)
	u.mu.Unlock()
	slices.Sort(ids)
	if wantIDs := append(make([]string, n), slices.Repeat([]string{lastBefore}, n)...); !slices.Equal(ids, wantIDs) {
		t.Errorf("requests' Last-Event-IDs %q, want %d without and %d with %q", ids, n, n, lastBefore)
	}

	// The others carry on: they get the leaver's events and the next.
	expectAll(leaver(t, u, url, n))
	expectAll(u.publish(24, 27))

	for i, c := range clients {
		select {
		case err := <-c.ended:
			t.Errorf("client %d: its stream ended again: %v", i, err)
		default:
		}
	}
}

// leaver opens one more stream through nginx on a connection of its own,
// checks that nginx answers it in valid HTTP/1.1 with the events, closes
// the connection and waits for the Hub to notice: n streams again. It
// returns the events it published meanwhile.
func leaver(t *testing.T, u *nginxUpstream, url string, n int) []string {
	t.Helper()
	addr := strings.TrimPrefix(url, "http://")
	addr, path, _ := strings.Cut(addr, "/")
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(nginxWait))
	fmt.Fprintf(nc, "GET /%s HTTP/1.1\r\nHost: %s\r\nAccept: text/event-stream\r\n\r\n", path, addr)
	resp, err := http.ReadResponse(bufio.NewReader(nc), nil)
	if err != nil {
		t.Fatalf("nginx's answer: %v", err)
	}
	if resp.StatusCode != http.StatusOK || !slices.Equal(resp.TransferEncoding, []string{"chunked"}) || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("nginx answered %s, Transfer-Encoding %q, Content-Type %q", resp.Status, resp.TransferEncoding, resp.Header.Get("Content-Type"))
	}
	u.waitStreams(n+1, int64(2*n+1))
	want := u.publish(21, 24)
	d := sse.NewDecoder(resp.Body)
	for _, w := range want {
		e, err := d.Decode()
		if err != nil {
			t.Fatalf("the leaving client, before it left: %v", err)
		}
		if got := e.ID + " " + string(e.Bytes()); got != w {
			t.Fatalf("the leaving client got %.60q, want %.60q", got, w)
		}
	}
	nc.Close()
	deadline := time.Now().Add(nginxWait)
	for u.hub.Load().Stats().Subscribers != n {
		if time.Now().After(deadline) {
			t.Fatalf("waited %v for the Hub to see the client leave through nginx: %+v", nginxWait, u.hub.Load().Stats())
		}
		time.Sleep(5 * time.Millisecond)
	}
	return want
}
