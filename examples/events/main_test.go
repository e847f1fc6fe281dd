package main

import (
	"encoding/json"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/b2ce5911/sse"
)

func TestStreamTicks(t *testing.T) {
	ts := httptest.NewServer(stream(time.Millisecond))
	defer ts.Close()
	resp, err := ts.Client().Get(ts.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	d := sse.NewDecoder(resp.Body)
	for want := 1; want <= 3; want++ {
		e, err := d.Decode()
		if err != nil {
			t.Fatal(err)
		}
		var tk tick
		if err := json.Unmarshal(e.Bytes(), &tk); err != nil || e.Type != "tick" || tk.N != want {
			t.Fatalf("event %q %q: %+v %v; want tick #%d", e.Type, e.Bytes(), tk, err, want)
		}
	}
	if r, ok := d.Retry(); !ok || r != 2*time.Second {
		t.Fatalf("retry %v %v", r, ok)
	}
}
