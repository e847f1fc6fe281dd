package sse_test

import (
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/b2ce5911/sse"
)

// sentRetries opens n streams with u and returns the retry field each was
// sent.
func sentRetries(t *testing.T, u *sse.Upgrader, n int) map[time.Duration]int {
	t.Helper()
	got := make(map[time.Duration]int)
	for range n {
		w := httptest.NewRecorder()
		c, err := u.Upgrade(w, httptest.NewRequest("GET", "/", nil))
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
		d := sse.NewDecoder(w.Body)
		d.Decode() // the stream ends after its retry field
		r, ok := d.Retry()
		if !ok {
			t.Fatalf("no retry field in %q", w.Body.String())
		}
		got[r]++
	}
	return got
}

func TestUpgraderRetryJitter(t *testing.T) {
	t.Parallel()
	const retry = time.Second
	for _, tt := range []struct {
		name     string
		jitter   time.Duration
		most     time.Duration
		distinct int // at least: 200 draws of 501 values spread out
	}{
		{"default is half of RetryTime", 0, retry / 2, 50},
		{"set", 100 * time.Millisecond, 100 * time.Millisecond, 20},
		{"off", -1, 0, 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := sentRetries(t, &sse.Upgrader{RetryTime: retry, RetryJitter: tt.jitter, Heartbeat: -1}, 200)
			for r := range got {
				if r < retry || r > retry+tt.most {
					t.Errorf("retry %v sent, want within [%v, %v]", r, retry, retry+tt.most)
				}
			}
			if len(got) < tt.distinct || tt.jitter < 0 && len(got) != 1 {
				t.Errorf("%d distinct retry values in 200 streams, want at least %d: %v", len(got), tt.distinct, got)
			}
		})
	}
	w := httptest.NewRecorder()
	c, err := (&sse.Upgrader{RetryJitter: time.Second, Heartbeat: -1}).Upgrade(w, httptest.NewRequest("GET", "/", nil))
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if strings.Contains(w.Body.String(), "retry") {
		t.Fatalf("jitter without RetryTime sent %q, want no retry field", w.Body.String())
	}
}
