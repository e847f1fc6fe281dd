package main

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/b2ce5911/sse"
)

// ticks reads n ticks from d and checks that they are consecutive, each with
// its number as id; it returns them.
func ticks(t *testing.T, d *sse.Decoder, n int) []tick {
	t.Helper()
	var got []tick
	for range n {
		e, err := d.Decode()
		if err != nil {
			t.Fatal(err)
		}
		var tk tick
		if err := json.Unmarshal(e.Bytes(), &tk); err != nil || e.Type != "tick" || e.ID != strconv.FormatInt(tk.N, 10) {
			t.Fatalf("event %q %q %q: %+v %v; want a tick with its number as id", e.ID, e.Type, e.Bytes(), tk, err)
		}
		if len(got) > 0 && tk.N != got[len(got)-1].N+1 {
			t.Fatalf("tick %d after %d", tk.N, got[len(got)-1].N)
		}
		got = append(got, tk)
	}
	return got
}

func get(t *testing.T, url, lastID string) *sse.Decoder {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return sse.NewDecoder(resp.Body)
}

func TestStreamTicks(t *testing.T) {
	ts := httptest.NewServer(stream(context.Background(), time.Millisecond))
	t.Cleanup(ts.Close) // after the streams close: cleanups run last first
	d := get(t, ts.URL, "")
	ticks(t, d, 5)
	if r, ok := d.Retry(); !ok || r < 2*time.Second || r > 3*time.Second {
		t.Fatalf("retry %v %v, want 2 s and at most half as much jitter", r, ok)
	}
}

// TestStreamResumes: a client that comes back, to this server or another,
// gets the ticks after its last one, those it missed marked as replayed; one
// that was away long gets the newest maxCatchUp; a bad id starts now.
func TestStreamResumes(t *testing.T) {
	every := time.Hour // no tick comes while the test runs, or one at most
	ts := httptest.NewServer(stream(context.Background(), every))
	t.Cleanup(ts.Close) // after the streams close: cleanups run last first
	now := time.Now().UnixNano() / int64(every)
	got := ticks(t, get(t, ts.URL, strconv.FormatInt(now-3, 10)), 3)
	if got[0].N != now-2 || !got[0].Replayed || !got[1].Replayed {
		t.Fatalf("after tick %d: %+v", now-3, got)
	}
	if got := ticks(t, get(t, ts.URL, "7"), 1); got[0].N < now-maxCatchUp+1 || got[0].N > now-maxCatchUp+2 {
		t.Fatalf("after tick 7: tick %d, want %d", got[0].N, now-maxCatchUp+1)
	}
	for _, bad := range []string{"x", strconv.FormatInt(now+5, 10)} {
		if got := ticks(t, get(t, ts.URL, bad), 1); got[0].N < now || got[0].Replayed {
			t.Fatalf("after %q: %+v, want the current tick", bad, got[0])
		}
	}
}

// TestRunShutsDown: cancelling run's context ends the streams and run.
func TestRunShutsDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- run(ctx, ln, time.Hour) }()
	d := get(t, "http://"+ln.Addr().String()+"/events", "")
	ticks(t, d, 1)
	cancel()
	if _, err := d.Decode(); err != io.EOF {
		t.Fatalf("stream after shutdown: %v, want EOF", err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not return")
	}
}
