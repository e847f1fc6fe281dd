//go:build linux

package reliability_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/b2ce5911/sse"
	"golang.org/x/sys/unix"
)

// TestVanishedClient serves a detached stream to a client in a network
// namespace of its own, linked to this one by a veth pair, and then takes
// the client's end of the link down while the stream is idle: the client
// neither sends a FIN nor a reset, it is gone as behind a pulled cable or
// a crashed host. The heartbeats then stay unacknowledged, and the Hub must
// find the stream dead (TCP_USER_TIMEOUT at the write timeout, seen by the
// poller) and drop it, with no goroutine left, while a client on the same
// server that stays keeps its stream and its events.
//
// It needs root, for the namespace; without one it fails, for this is the
// one test of that path.
func TestVanishedClient(t *testing.T) {
	t.Parallel()
	ns := newNetns(t)

	hub := &sse.Hub{Logger: quietLogger, Upgrader: sse.Upgrader{Heartbeat: 200 * time.Millisecond, WriteTimeout: time.Second}}
	var hijacked atomic.Int64
	srv := &http.Server{Handler: hub, ConnState: func(_ net.Conn, s http.ConnState) {
		if s == http.StateHijacked {
			hijacked.Add(1)
		}
	}}
	ln, err := net.Listen("tcp", net.JoinHostPort(ns.hostAddr, "0"))
	if err != nil {
		t.Fatal(err)
	}
	var served sync.WaitGroup
	served.Go(func() { srv.Serve(ln) })
	t.Cleanup(func() { // before the namespace's cleanup, registered earlier
		hub.Close()
		srv.Close()
		served.Wait()
	})
	addr := ln.Addr().String()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := hub.Publish(ctx, "t", sse.Message{Data: []byte("before")}); err != nil {
		t.Fatal(err)
	}
	baseG := runtime.NumGoroutine()

	// The client that stays dials from this namespace (to the host's
	// address on the link, which is local here), the one that vanishes
	// from the other.
	stay, err := dialStream(ctx, addr, "t", "", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer stay.Close()
	gone, err := ns.dial(ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer gone.Close() // after the test: no FIN reaches the server before
	if _, err := gone.Write(request(addr, "t", "")); err != nil {
		t.Fatal(err)
	}
	// Both streams are detached and get heartbeats.
	var bodies [2]*bufio.Reader
	for i, c := range []net.Conn{stay, gone} {
		c.SetReadDeadline(time.Now().Add(30 * time.Second))
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("stream %d: %v", i, err)
		}
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("stream %d: %s", i, resp.Status)
		}
		bodies[i] = bufio.NewReader(resp.Body)
	}
	waitFor(t, 30*time.Second, func() bool { return hub.Stats().Subscribers == 2 && hijacked.Load() == 2 }, "both streams to be served and detached")
	for i, br := range bodies {
		// At least two heartbeats: the one the wheel sends, and another.
		beats := 0
		for beats < 2 {
			line, err := br.ReadString('\n')
			if err != nil {
				t.Fatalf("stream %d, waiting for heartbeats: %v", i, err)
			}
			if line == ":\n" {
				beats++
			}
		}
	}

	ns.cut(t)
	cut := time.Now()
	waitFor(t, time.Minute, func() bool { return hub.Stats().Subscribers == 1 }, "the Hub to drop the client that vanished")
	found := time.Since(cut)

	// The one that stayed still gets its events, and the heartbeats.
	if _, err := hub.Publish(ctx, "t", sse.Message{Data: []byte("after")}); err != nil {
		t.Fatal(err)
	}
	stay.SetReadDeadline(time.Now().Add(30 * time.Second))
	for {
		line, err := bodies[0].ReadString('\n')
		if err != nil {
			t.Fatalf("the stream that stayed: %v", err)
		}
		if line == "data: after\n" {
			break
		}
	}
	if st := hub.Stats(); st.Subscribers != 1 || st.Evicted != 0 {
		t.Errorf("Stats() = %+v: want the one subscriber that stayed, none evicted", st)
	}
	stay.Close()
	var afterG int
	waitFor(t, 30*time.Second, func() bool {
		afterG = runtime.NumGoroutine()
		return hub.Stats().Subscribers == 0 && afterG <= baseG
	}, fmt.Sprintf("the goroutines to return to their baseline %d", baseG))
	t.Logf("vanished client dropped %v after its link went down (heartbeat 200ms, write timeout 1s); goroutines base=%d after=%d",
		found.Round(10*time.Millisecond), baseG, afterG)
}

// netns is a network namespace linked to this one by a veth pair, on a
// private /30 of 10.200.0.0/16 that this machine alone routes.
type netns struct {
	name, host, peer   string // the namespace, the veth ends here and there
	hostAddr, peerAddr string
}

var netnsCount atomic.Int64

// newNetns makes a namespace for the test, and removes it when the test
// ends. Without root or iproute2 the test fails: it must not pass
// silently.
func newNetns(t *testing.T) *netns {
	t.Helper()
	// Names and addresses by process and count, so that test processes
	// on the same machine (other packages, other checkouts) do not meet.
	id := os.Getpid()%4096*4 + int(netnsCount.Add(1))%4 // < 16384: a /30 each in a /16
	n := &netns{
		name:     fmt.Sprintf("sse-rel-%d", id),
		host:     fmt.Sprintf("sser%dh", id),
		peer:     fmt.Sprintf("sser%dp", id),
		hostAddr: fmt.Sprintf("10.200.%d.%d", id/64, id%64*4+1),
		peerAddr: fmt.Sprintf("10.200.%d.%d", id/64, id%64*4+2),
	}
	ipCmd := func(args ...string) error {
		out, err := exec.Command("ip", args...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
		return nil
	}
	if err := ipCmd("netns", "add", n.name); err != nil {
		t.Fatalf("this test needs a network namespace (root and iproute2): %v", err)
	}
	t.Cleanup(func() {
		ipCmd("link", "del", n.host) // both ends, if the test did not
		if err := ipCmd("netns", "del", n.name); err != nil {
			t.Errorf("removing the namespace: %v", err)
		}
	})
	for _, args := range [][]string{
		{"link", "add", n.host, "type", "veth", "peer", "name", n.peer},
		{"link", "set", n.peer, "netns", n.name},
		{"addr", "add", n.hostAddr + "/30", "dev", n.host},
		{"link", "set", n.host, "up"},
		{"-n", n.name, "addr", "add", n.peerAddr + "/30", "dev", n.peer},
		{"-n", n.name, "link", "set", n.peer, "up"},
	} {
		if err := ipCmd(args...); err != nil {
			t.Fatalf("linking the namespace: %v", err)
		}
	}
	return n
}

// dial connects from inside the namespace to addr: the socket is made on
// a thread that entered it, and belongs to it whichever thread uses it
// later. The thread is not given back to the runtime (it ends with its
// goroutine), so no other goroutine runs in the namespace.
func (n *netns) dial(ctx context.Context, addr string) (net.Conn, error) {
	type result struct {
		c   net.Conn
		err error
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread exits with the goroutine
		f, err := os.Open("/var/run/netns/" + n.name)
		if err != nil {
			done <- result{nil, err}
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			done <- result{nil, fmt.Errorf("entering the namespace: %w", err)}
			return
		}
		d := net.Dialer{Timeout: 10 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(n.peerAddr)}}
		c, err := d.DialContext(ctx, "tcp", addr)
		done <- result{c, err}
	}()
	r := <-done
	if r.err != nil {
		return nil, errors.Join(errors.New("dialling from the namespace"), r.err)
	}
	return r.c, nil
}

// cut takes the namespace's end of the link down: from then on nothing
// passes either way, and nothing tells the other end.
func (n *netns) cut(t *testing.T) {
	t.Helper()
	if out, err := exec.Command("ip", "-n", n.name, "link", "set", n.peer, "down").CombinedOutput(); err != nil {
		t.Fatalf("taking the link down: %v: %s", err, out)
	}
}
