package sse

import (
	"io"
	"log/slog"
	"strconv"
	"testing"
)

// TestTakeSendsNothingPastAHole: between the moment a feed cuts a ring
// below a subscriber's cursor and the moment it evicts that subscriber, the
// subscriber's writer may take. It must send nothing then: the events after
// the hole would move its client's last id past events it never got, and
// its replay would not bring them back (the load tool's no-window run lost
// 51 events of 26 clients that way).
func TestTakeSendsNothingPastAHole(t *testing.T) {
	h := &Hub{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	h.init()
	s := &subscriber{topics: []string{"a", "b"}, wake: make(chan struct{}, 1)}
	if _, err := h.register(s); err != nil {
		t.Fatal(err)
	}
	ta, tb := h.topics["a"], h.topics["b"]
	for i := range 3 {
		h.deliver(ta, Entry{Topic: "a", Message: Message{ID: "a" + strconv.Itoa(i), Data: []byte("x")}})
		h.deliver(tb, Entry{Topic: "b", Message: Message{ID: "b" + strconv.Itoa(i), Data: []byte("x")}})
	}
	// The state deliver leaves while it has still to evict s: b's ring no
	// longer holds the events s has not sent.
	tb.mu.Lock()
	tb.ring.dropTo(tb.ring.start + 2)
	tb.mu.Unlock()
	if got := h.take(s, nil); len(got) != 0 {
		ids := make([]string, len(got))
		for i, pm := range got {
			ids[i] = pm.id
		}
		t.Fatalf("took %v past the hole in b", ids)
	}
}
