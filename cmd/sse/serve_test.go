package main

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/b2ce5911/sse"
)

// server is a running "sse serve".
type server struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stdout *bufio.Reader
	stderr *lockedBuffer
	url    string // http://127.0.0.1:port/
	exited chan struct{}
	err    error // of Wait, once exited is closed
}

// startServe starts "sse serve" on a free loopback port and waits until it
// listens. The test's cleanup kills it if it is still running.
func startServe(t *testing.T, args ...string) *server {
	t.Helper()
	cmd := exec.Command(binary, append([]string{"serve", "-addr", "127.0.0.1:0"}, args...)...)
	s := &server{cmd: cmd, stderr: &lockedBuffer{}, exited: make(chan struct{})}
	var err error
	if s.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	s.stdout = bufio.NewReader(out)
	errPipe, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	listening := make(chan string, 1)
	stderrDone := make(chan struct{})
	go func() {
		defer close(stderrDone)
		sc := bufio.NewScanner(errPipe)
		for sc.Scan() {
			s.stderr.Write([]byte(sc.Text() + "\n"))
			if rest, ok := strings.CutPrefix(sc.Text(), "sse: serving "); ok {
				select {
				case listening <- strings.Fields(rest)[0]:
				default:
				}
			}
		}
	}()
	go func() {
		<-stderrDone // Wait closes the pipes: read them to the end first
		s.err = cmd.Wait()
		close(s.exited)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-s.exited
	})
	select {
	case s.url = <-listening:
	case <-s.exited:
		t.Fatalf("sse serve exited: %v\n%s", s.err, s.stderr)
	case <-time.After(runTimeout):
		t.Fatalf("sse serve does not listen:\n%s", s.stderr)
	}
	return s
}

func (s *server) write(t *testing.T, lines ...string) {
	t.Helper()
	if _, err := io.WriteString(s.stdin, strings.Join(lines, "\n")+"\n"); err != nil {
		t.Fatal(err)
	}
}

// wait returns the exit status once the server exits.
func (s *server) wait(t *testing.T) int {
	t.Helper()
	select {
	case <-s.exited:
		return exitCode(t, s.err)
	case <-time.After(runTimeout):
		t.Fatalf("sse serve did not exit:\n%s", s.stderr)
		return -1
	}
}

// read returns the next n events of a Client's stream at url.
func read(t *testing.T, c *sse.Client, url string, n int) []*sse.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
	defer cancel()
	var events []*sse.Event
	for e, err := range c.Events(ctx, url) {
		if err != nil {
			t.Fatalf("after %d events: %v", len(events), err)
		}
		events = append(events, e)
		if len(events) == n {
			break
		}
	}
	return events
}

func data(events []*sse.Event) string {
	var b strings.Builder
	for i, e := range events {
		if i > 0 {
			b.WriteByte(',')
		}
		if e.Type != "message" {
			b.WriteString(e.Type + ":")
		}
		b.Write(e.Bytes())
	}
	return b.String()
}

// TestServeLines serves the lines of stdin: a new client receives the
// recent ones, then live ones; a client that reconnects with Last-Event-ID
// receives those after it.
func TestServeLines(t *testing.T) {
	s := startServe(t)
	s.write(t, "one", "", "three")
	c := &sse.Client{}
	first := read(t, c, s.url+"events", 3)
	if got := data(first); got != "one,,three" {
		t.Fatalf("events %q", got)
	}
	if first[0].ID == "" || first[0].ID == first[1].ID {
		t.Fatalf("ids %q %q", first[0].ID, first[1].ID)
	}
	s.write(t, "four")
	resumed := read(t, &sse.Client{LastEventID: first[0].ID}, s.url+"events", 3)
	if got := data(resumed); got != ",three,four" {
		t.Fatalf("replay after %q: %q", first[0].ID, got)
	}
	// At / for a client of event streams, and with the command's client
	// (and a URL typed without http://).
	r := runSSE(t, "", "-n", "4", "-o", "data", strings.TrimPrefix(s.url, "http://"))
	r.want(t, exitOK)
	if r.stdout != "one\n\nthree\nfour\n" {
		t.Fatalf("sse %s: %q", s.url, r.stdout)
	}
	// Without -exit it serves on after the input ends, until a signal.
	s.stdin.Close()
	s.waitStderr(t, "sse: end of input after 4 events")
	if got := data(read(t, c, s.url+"events", 4)); got != "one,,three,four" {
		t.Fatalf("events after the end of input: %q", got)
	}
	if runtime.GOOS == "windows" {
		return
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	if code := s.wait(t); code != exitOK {
		t.Fatalf("exit status %d after SIGTERM:\n%s", code, s.stderr)
	}
}

// waitStderr waits until the server has said what.
func (s *server) waitStderr(t *testing.T, what string) {
	t.Helper()
	for deadline := time.Now().Add(runTimeout); !strings.Contains(s.stderr.String(), what); {
		if time.Now().After(deadline) {
			t.Fatalf("sse serve did not say %q:\n%s", what, s.stderr)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestServeLive: with -live a new client starts with the events published
// after it connected. Lines are written until one reaches it, since it
// cannot tell when it has subscribed; the old line must never.
func TestServeLive(t *testing.T) {
	s := startServe(t, "-live", "-tee")
	s.write(t, "old")
	if line, err := s.stdout.ReadString('\n'); line != "old\n" {
		t.Fatalf("-tee: %q, %v", line, err) // published once copied
	}
	ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
	defer cancel()
	got := make(chan string, 1)
	go func() {
		defer close(got)
		for e, err := range (&sse.Client{}).Events(ctx, s.url+"events") {
			if err == nil {
				got <- string(e.Bytes())
			}
			return
		}
	}()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case first := <-got:
			if first != "new" {
				t.Fatalf("first event %q, want new", first)
			}
			return
		case <-tick.C:
			s.write(t, "new")
			s.stdout.ReadString('\n')
		}
	}
}

// TestServeJSON reads -json events: types, ids, topics and data of any
// JSON type; bad lines are reported by number and skipped.
func TestServeJSON(t *testing.T) {
	s := startServe(t, "-json", "-type", "log")
	s.write(t,
		`{"type":"t","data":{"a": [1, 2]}}`,
		`not json`,
		`{"id":"x1","data":"s\nt"}`,
		``,
		`{"topic":"other","data":"elsewhere"}`,
		`{"data":"x","bogus":1}`,
		`{"id":"bad\nid","data":"x"}`,
		`{"data":null}`,
	)
	events := read(t, &sse.Client{}, s.url+"events", 3)
	if got := data(events); got != "t:{\"a\":[1,2]},log:s\nt,log:" {
		t.Fatalf("events %q", got)
	}
	if events[1].ID != "x1" {
		t.Fatalf("id %q, want x1", events[1].ID)
	}
	if got := data(read(t, &sse.Client{}, s.url+"events?topic=other", 1)); got != "log:elsewhere" {
		t.Fatalf("topic other: %q", got)
	}
	s.waitStderr(t, "sse: line 2: not a JSON event")
	s.waitStderr(t, `sse: line 6: not a JSON event: json: unknown field "bogus"`)
	s.waitStderr(t, "sse: line 7: invalid field")
}

// TestServeExit: with -exit the server exits when its input ends, once a
// subscriber received every event queued for it.
func TestServeExit(t *testing.T) {
	s := startServe(t, "-exit")
	ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
	defer cancel()
	c := &sse.Client{MaxAttempts: 1, ReconnectDelay: -1}
	var got []string
	s.write(t, "a", "b")
	for e, err := range c.Events(ctx, s.url+"events") {
		if err != nil {
			break // the server is gone
		}
		got = append(got, string(e.Bytes()))
		if len(got) == 2 {
			s.write(t, "c")
			s.stdin.Close()
		}
	}
	if code := s.wait(t); code != exitOK {
		t.Fatalf("exit status %d:\n%s", code, s.stderr)
	}
	if strings.Join(got, ",") != "a,b,c" {
		t.Fatalf("events %q", got)
	}
}

func TestServePage(t *testing.T) {
	s := startServe(t, "-type", "build", "-allow-origin", "*")
	resp, err := http.Get(s.url)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") ||
		!strings.Contains(string(page), `new EventSource("events" + location.search)`) ||
		!strings.Contains(string(page), `["reset","build"]`) {
		t.Fatalf("%s %s:\n%s", resp.Status, resp.Header.Get("Content-Type"), page)
	}
	resp, err = http.Get(s.url + "nothing")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("/nothing: %s", resp.Status)
	}
	var origin string
	c := &sse.Client{OnConnect: func(r *http.Response) { origin = r.Header.Get("Access-Control-Allow-Origin") }}
	s.write(t, "x")
	if got := data(read(t, c, s.url+"events", 1)); got != "build:x" || origin != "*" {
		t.Fatalf("event %q, Access-Control-Allow-Origin %q", got, origin)
	}
}
