package main

import (
	"encoding/json"
	"flag"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// step is what a scripted server answers to one request.
type step struct {
	body string // written as an event stream, at once
	hold bool   // keep the stream open, silent, until the client leaves
}

// request is what a scripted server received.
type request struct {
	method, body string
	header       http.Header
}

// scripted serves the i-th request with steps[i] and answers 204 No
// Content after the last step; it records every request.
type scripted struct {
	steps []step

	mu   sync.Mutex
	reqs []request
}

func (s *scripted) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	s.mu.Lock()
	i := len(s.reqs)
	s.reqs = append(s.reqs, request{r.Method, string(body), r.Header.Clone()})
	s.mu.Unlock()
	if i >= len(s.steps) {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	io.WriteString(w, s.steps[i].body)
	w.(http.Flusher).Flush()
	if s.steps[i].hold {
		<-r.Context().Done()
	}
}

func (s *scripted) requests() []request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]request(nil), s.reqs...)
}

// serveScript starts a loopback server that plays steps.
func serveScript(t *testing.T, steps ...step) (*scripted, string) {
	s := &scripted{steps: steps}
	ts := httptest.NewServer(s)
	t.Cleanup(ts.Close)
	return s, ts.URL + "/events"
}

func serveFunc(t *testing.T, h http.HandlerFunc) string {
	ts := httptest.NewServer(h)
	t.Cleanup(ts.Close)
	return ts.URL + "/events"
}

// TestPrintText prints events in the wire format, and reconnects with
// Last-Event-ID after the server's retry time: -retry 1h would hang the
// test if the server's retry: 1 were not honoured.
func TestPrintText(t *testing.T) {
	s, url := serveScript(t,
		step{body: "retry: 1\nid: 1\nevent: greet\ndata: hello\ndata: world\n\n: a comment\ndata: plain\n\n"},
		step{body: "id: 2\ndata:\n\n"},
	)
	r := runSSE(t, "", "-retry", "1h", url)
	r.want(t, exitNoMore, "reconnecting")
	want := "id: 1\nevent: greet\ndata: hello\ndata: world\n\n" +
		"id: 1\ndata: plain\n\n" +
		"id: 2\ndata:\n\n"
	if r.stdout != want {
		t.Fatalf("stdout:\n%q\nwant:\n%q", r.stdout, want)
	}
	if strings.Contains(r.stdout, "\x1b[") {
		t.Fatal("colour in output that is not a terminal")
	}
	reqs := s.requests()
	if len(reqs) != 3 {
		t.Fatalf("%d requests, want 3 (two streams, then 204)", len(reqs))
	}
	for i, want := range []string{"", "1", "2"} {
		if got := reqs[i].header.Get("Last-Event-ID"); got != want {
			t.Errorf("request %d: Last-Event-ID %q, want %q", i, got, want)
		}
		if got := reqs[i].header.Get("Accept"); got != "text/event-stream" {
			t.Errorf("request %d: Accept %q", i, got)
		}
	}
}

func TestColorAlways(t *testing.T) {
	_, url := serveScript(t, step{body: "id: 7\nevent: e\ndata: d\n\n"})
	r := runSSE(t, "", "-retry", "0", "-color", "always", url)
	r.want(t, exitNoMore)
	want := styleField + "id:" + styleReset + " " + styleID + "7" + styleReset + "\n" +
		styleField + "event:" + styleReset + " " + styleType + "e" + styleReset + "\n" +
		styleField + "data:" + styleReset + " d\n\n"
	if r.stdout != want {
		t.Fatalf("stdout %q, want %q", r.stdout, want)
	}
}

func TestJSONOutput(t *testing.T) {
	_, url := serveScript(t, step{body: "id: a<1>\nevent: price\ndata: {\"eur\": 1}\ndata: \"two\" & lines\n\ndata: untyped\n\n"})
	r := runSSE(t, "", "-retry", "0", "-o", "json", url)
	r.want(t, exitNoMore)
	lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
	want := []jsonEvent{
		{ID: "a<1>", Type: "price", Data: "{\"eur\": 1}\n\"two\" & lines"},
		{ID: "a<1>", Type: "message", Data: "untyped"},
	}
	if len(lines) != len(want) {
		t.Fatalf("stdout has %d lines, want %d:\n%s", len(lines), len(want), r.stdout)
	}
	for i, line := range lines {
		var got jsonEvent
		if err := json.Unmarshal([]byte(line), &got); err != nil || got != want[i] {
			t.Errorf("line %d: %s: %+v %v, want %+v", i, line, got, err, want[i])
		}
	}
	if !strings.Contains(r.stdout, "a<1>") {
		t.Errorf("HTML characters escaped: %s", r.stdout)
	}
}

func TestDataOutput(t *testing.T) {
	_, url := serveScript(t, step{body: "data: {\"n\":1}\n\nevent: x\ndata: a\ndata: b\n\n"})
	r := runSSE(t, "", "-retry", "0", "-o", "data", url)
	r.want(t, exitNoMore)
	if want := "{\"n\":1}\na\nb\n"; r.stdout != want {
		t.Fatalf("stdout %q, want %q", r.stdout, want)
	}
}

func TestNoContentExit(t *testing.T) {
	s, url := serveScript(t)
	r := runSSE(t, "", url)
	r.want(t, exitNoMore)
	if r.stdout != "" || len(s.requests()) != 1 {
		t.Fatalf("stdout %q after %d requests; want nothing after 1", r.stdout, len(s.requests()))
	}
}

func TestStatusErrorShowsBodyLine(t *testing.T) {
	url := serveFunc(t, func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no such stream\nsecond line", http.StatusNotFound)
	})
	r := runSSE(t, "", url)
	r.want(t, exitError, "sse: unexpected status 404 Not Found: no such stream\n")
	if strings.Contains(r.stderr, "second line") || strings.Contains(r.stderr, "reconnecting") {
		t.Fatalf("stderr:\n%s", r.stderr)
	}
}

func TestNotEventStream(t *testing.T) {
	url := serveFunc(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		io.WriteString(w, "<html></html>")
	})
	r := runSSE(t, "", url)
	r.want(t, exitError, `sse: response is not text/event-stream: got "text/html"`)
	if strings.Contains(r.stderr, "reconnecting") {
		t.Fatalf("reconnected to a page:\n%s", r.stderr)
	}
}

// TestCount takes options after the URL, as people type them.
func TestCount(t *testing.T) {
	_, url := serveScript(t, step{body: "data: 1\n\ndata: 2\n\ndata: 3\n\n", hold: true})
	r := runSSE(t, "", url, "-n", "2", "-o", "data")
	r.want(t, exitOK)
	if r.stdout != "1\n2\n" {
		t.Fatalf("stdout %q, want two events", r.stdout)
	}
}

func TestTypeFilter(t *testing.T) {
	body := "event: a\ndata: 1\n\nevent: b\ndata: 2\n\ndata: 3\n\nevent: c\ndata: 4\n\nevent: b\ndata: 5\n\n"
	for _, args := range [][]string{{"-type", "b,message"}, {"-type", "b", "-type", "message"}} {
		_, url := serveScript(t, step{body: body, hold: true})
		r := runSSE(t, "", append(args, "-n", "3", "-o", "data", url)...)
		r.want(t, exitOK)
		if r.stdout != "2\n3\n5\n" {
			t.Fatalf("%q: stdout %q, want events 2, 3 and 5", args, r.stdout)
		}
	}
}

// TestReadTimeoutReconnects: the first connection stays silent, the next
// ones send an event, and the one after the event is 204. A read timeout
// that fired early on a slow machine only adds a connection that sends the
// event again, from scratch: the output is the same.
func TestReadTimeoutReconnects(t *testing.T) {
	var mu sync.Mutex
	silent := true
	url := serveFunc(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		first := silent
		silent = false
		mu.Unlock()
		if r.Header.Get("Last-Event-ID") == "1" {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		w.(http.Flusher).Flush()
		if first {
			<-r.Context().Done()
			return
		}
		io.WriteString(w, "id: 1\ndata: after\n\n")
	})
	r := runSSE(t, "", "-read-timeout", "300ms", "-retry", "0", "-o", "data", url)
	r.want(t, exitNoMore, "sse: read timeout")
	if r.stdout != "after\n" {
		t.Fatalf("stdout %q", r.stdout)
	}
}

func TestReadTimeoutOnce(t *testing.T) {
	_, url := serveScript(t, step{body: "data: x\n\n", hold: true})
	r := runSSE(t, "", "-once", "-read-timeout", "200ms", url)
	r.want(t, exitTimeout, "sse: read timeout")
}

func TestOnceEndOfStream(t *testing.T) {
	s, url := serveScript(t, step{body: "data: x\n\n"}, step{body: "data: again\n\n"})
	r := runSSE(t, "", "-once", "-o", "data", url)
	r.want(t, exitOK)
	if r.stdout != "x\n" || len(s.requests()) != 1 {
		t.Fatalf("stdout %q after %d requests", r.stdout, len(s.requests()))
	}
	if r.stderr != "" {
		t.Fatalf("stderr: %s", r.stderr)
	}
}

// TestBody sends the body of -d, from each of its sources, on every
// connection, with the headers of -H.
func TestBody(t *testing.T) {
	const body = `{"model":"m","stream":true}`
	file := filepath.Join(t.TempDir(), "body.json")
	if err := os.WriteFile(file, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, stdin string
		args        []string
	}{
		{"text", "", []string{"-d", body}},
		{"file", "", []string{"-d", "@" + file}},
		{"stdin", body, []string{"-d", "@-"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, url := serveScript(t, step{body: "retry: 1\ndata: a\n\n"}, step{body: "data: b\n\n"})
			args := append(tc.args, "-once=false", "-H", "Authorization: Bearer k", "-H", "X-Multi: 1", "-H", "x-multi:2", "-o", "data", url)
			r := runSSE(t, tc.stdin, args...)
			r.want(t, exitNoMore)
			if r.stdout != "a\nb\n" {
				t.Fatalf("stdout %q", r.stdout)
			}
			reqs := s.requests()
			if len(reqs) != 3 {
				t.Fatalf("%d requests, want 3", len(reqs))
			}
			for i, req := range reqs {
				h := req.header
				if req.method != "POST" || req.body != body || h.Get("Content-Type") != "application/json" ||
					h.Get("Authorization") != "Bearer k" || strings.Join(h["X-Multi"], ",") != "1,2" {
					t.Errorf("request %d: %s %q %v", i, req.method, req.body, h)
				}
			}
		})
	}
}

func TestMethod(t *testing.T) {
	s, url := serveScript(t)
	runSSE(t, "", "-X", "PUT", "-d", "not json", "-H", "Content-Type: text/plain", url).want(t, exitNoMore)
	reqs := s.requests()
	if len(reqs) != 1 || reqs[0].method != "PUT" || reqs[0].body != "not json" || reqs[0].header.Get("Content-Type") != "text/plain" {
		t.Fatalf("requests %+v", reqs)
	}
	// A request other than GET is not repeated unless asked.
	s, url = serveScript(t, step{body: "data: answer\n\n"}, step{body: "data: again\n\n"})
	r := runSSE(t, "", "-d", "{}", "-o", "data", url)
	r.want(t, exitOK)
	if r.stdout != "answer\n" || len(s.requests()) != 1 {
		t.Fatalf("stdout %q after %d requests", r.stdout, len(s.requests()))
	}
	s, url = serveScript(t)
	runSSE(t, "", "-X", "REPORT", "-once=false", "-last-event-id", "41", url).want(t, exitNoMore)
	if reqs := s.requests(); len(reqs) != 1 || reqs[0].method != "REPORT" || reqs[0].header.Get("Last-Event-ID") != "41" {
		t.Fatalf("requests %+v", reqs)
	}
}

func TestMaxAttempts(t *testing.T) {
	url := serveFunc(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream") // and nothing: a server that hangs up at once
	})
	r := runSSE(t, "", "-max-attempts", "2", "-retry", "0", url)
	r.want(t, exitError, "giving up after 2 failed attempts")
}

func TestBadCommandLine(t *testing.T) {
	const url = "http://127.0.0.1:1/never-contacted"
	for _, tc := range []struct {
		args []string
		err  string
	}{
		{nil, "no URL"},
		{[]string{url, url}, "one URL only"},
		{[]string{"ftp://example.com/"}, "not an http or https URL"},
		{[]string{"http://"}, "not an http or https URL"},
		{[]string{"-n", "x", url}, `invalid value "x" for flag -n`},
		{[]string{"-n", "-1", url}, "-n must not be negative"},
		{[]string{"-read-timeout", "5", url}, `invalid value "5" for flag -read-timeout`},
		{[]string{"-H", "no colon", url}, `invalid value "no colon" for flag -H: want 'Name: value'`},
		{[]string{"-o", "xml", url}, "-o must be text, json or data"},
		{[]string{"-color", "yes", url}, "-color must be"},
		{[]string{"-bogus", url}, "flag provided but not defined: -bogus"},
		{[]string{"serve", "-history", "0"}, "-history must be at least 1"},
		{[]string{"serve", "extra"}, "serve takes no operands"},
		{[]string{"serve", "-retry", "x"}, "invalid value"},
	} {
		r := runSSE(t, "", tc.args...)
		r.want(t, exitUsage, "sse: "+tc.err, "usage: sse [options] URL")
		if r.stdout != "" {
			t.Errorf("%q: stdout %q", tc.args, r.stdout)
		}
	}
	r := runSSE(t, "", "-d", "@/nonexistent/body", url)
	r.want(t, exitError, "sse: reading the body: open /nonexistent/body")
	r = runSSE(t, "", "-once", ":1/never")
	r.want(t, exitError, `"http://localhost:1/never"`)
}

// TestManual checks that -h prints the manual, and that it describes
// every flag.
func TestManual(t *testing.T) {
	for _, args := range [][]string{{"-h"}, {"--help"}, {"help"}, {"serve", "-h"}} {
		r := runSSE(t, "", args...)
		r.want(t, exitOK)
		if r.stdout != manual {
			t.Fatalf("%q: stdout is not the manual:\n%s", args, r.stdout)
		}
	}
	for _, s := range []string{"NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "EXIT STATUS", "EXAMPLES"} {
		if !strings.Contains(manual, "\n"+s+"\n") && !strings.HasPrefix(manual, s+"\n") {
			t.Errorf("no %s section", s)
		}
	}
	client, server := manual[:strings.Index(manual, "SERVE OPTIONS")], manual[strings.Index(manual, "SERVE OPTIONS"):]
	watchFlags(&watchOptions{}).VisitAll(func(f *flag.Flag) {
		if !strings.Contains(client, "\n    -"+f.Name+" ") && !strings.Contains(client, "\n    -"+f.Name+"\n") {
			t.Errorf("the manual does not describe -%s", f.Name)
		}
	})
	serveFlags(&serveOptions{}).VisitAll(func(f *flag.Flag) {
		if !strings.Contains(server, "\n    -"+f.Name+" ") && !strings.Contains(server, "\n    -"+f.Name+"\n") {
			t.Errorf("the manual does not describe serve -%s", f.Name)
		}
	})
	for _, code := range []int{exitOK, exitError, exitUsage, exitNoMore, exitTimeout} {
		if !strings.Contains(manual, "\n    "+strconv.Itoa(code)+"    ") {
			t.Errorf("the manual does not document exit status %d", code)
		}
	}
}

func TestInterrupt(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no SIGINT to send")
	}
	_, url := serveScript(t, step{body: "data: first\n\n", hold: true})
	cmd := exec.Command(binary, "-o", "data", url)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	line := make([]byte, len("first\n"))
	if _, err := io.ReadFull(out, line); err != nil || string(line) != "first\n" {
		t.Fatalf("read %q, %v", line, err)
	}
	cmd.Process.Signal(syscall.SIGINT)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if code := exitCode(t, err); code != 130 {
			t.Fatalf("exit status %d after SIGINT, want 130", code)
		}
	case <-time.After(runTimeout):
		t.Fatal("no exit after SIGINT")
	}
}

// TestVerbose shows the exchange and the comments on stderr, and sends a
// Host of -H as the request's host.
func TestVerbose(t *testing.T) {
	hosts := make(chan string, 1)
	url := serveFunc(t, func(w http.ResponseWriter, r *http.Request) {
		hosts <- r.Host
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, ": hi\n:\ndata: x\n\n")
	})
	r := runSSE(t, "", "-v", "-once", "-H", "Host: example.test", "-H", "X-Token: t", url)
	r.want(t, exitOK, "> GET "+url+"\n", "> X-Token: t\n", "< HTTP/1.1 200 OK\n", "< Content-Type: text/event-stream\n", "\n: hi\n:\n")
	if host := <-hosts; host != "example.test" {
		t.Fatalf("host %q", host)
	}
	if r.stdout != "data: x\n\n" {
		t.Fatalf("stdout %q", r.stdout)
	}
}
