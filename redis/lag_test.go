package sseredis_test

import (
	"context"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/b2ce5911/sse"
	"github.com/b2ce5911/sse/redis/redistest"
)

// seq is prefix+from, ..., prefix+to.
func seq(prefix string, from, to int) []string {
	var out []string
	for i := from; i <= to; i++ {
		out = append(out, fmt.Sprint(prefix, i))
	}
	return out
}

func maxLen10(n *node) { n.broker.MaxLen = 10 }

// resumesWithReset checks that a client resuming on n after last, whose
// events after it Redis has trimmed, gets the reset event, then live
// events.
func resumesWithReset(t *testing.T, n, publisher *node, last string) {
	t.Helper()
	s := n.subscribe(t, "topic=t", last)
	if e := s.next(t); e.typ != "reset" || !strings.Contains(e.data, `"reason":"expired"`) {
		t.Fatalf("resuming after %s: got %+v, want the reset event", last, e)
	}
	publisher.publish(t, "t", "after")
	s.expect(t, "after")
}

// A node whose reads are held back while another publishes more than
// MaxLen events: its feed finds what it had yet to read trimmed, and its
// subscribers are cut off, so that they resume and get the reset event;
// never a silent skip from e0 to e400.
func TestLaggingFeedPastMaxLen(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t, false)
	a := newNode(t, srv, maxLen10)
	h := &holdReads{}
	b := heldNode(t, srv, h, maxLen10)
	live := b.subscribe(t, "topic=t", "")
	a.publish(t, "t", "e0")
	last := live.expect(t, "e0")[0]
	h.hold()
	a.publish(t, "t", seq("e", 1, 499)...)
	h.release()
	if got, ended := live.consecutive(t, "e", 0, 499); ended {
		if got.id != "" {
			last = got
		}
		resumesWithReset(t, b, a, last.id)
	}
}

// The same across a Redis restart (append-only file): a node reconnects
// and publishes more than MaxLen events while the other's reads are held
// (as in its backoff): its subscribers are cut off and get the reset
// event when they resume.
func TestLaggingFeedPastMaxLenAcrossRestart(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t, true)
	a := newNode(t, srv, maxLen10)
	h := &holdReads{}
	b := heldNode(t, srv, h, maxLen10)
	live := b.subscribe(t, "topic=t", "")
	a.publish(t, "t", "e0")
	last := live.expect(t, "e0")[0]
	h.hold()
	srv.Stop(syscall.SIGKILL)
	srv.Restart(t)
	for _, d := range seq("e", 1, 300) {
		for attempt := 0; ; attempt++ { // the first on each pooled connection finds it broken
			_, err := a.hub.Publish(context.Background(), "t", sse.Message{Data: []byte(d)})
			if err == nil {
				break
			}
			if attempt == 100 {
				t.Fatalf("publish %s: %v", d, err)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	h.release()
	if got, ended := live.consecutive(t, "e", 0, 300); ended {
		if got.id != "" {
			last = got
		}
		resumesWithReset(t, b, a, last.id)
	}
}

// A client resumes on a node whose feed lags: its replay is right, and
// ends at a head the feed has yet to deliver; more events then trim that
// head before the feed reads it. The client must not wait for it forever:
// it gets the later events, or is cut off and resumes with a reset.
func TestResumeOnLaggingNodeNeverStalls(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t, false)
	a := newNode(t, srv, maxLen10)
	h := &holdReads{}
	b := heldNode(t, srv, h, maxLen10)
	live := b.subscribe(t, "topic=t", "")
	a.publish(t, "t", "e0")
	live.expect(t, "e0")
	h.hold()
	ids := a.publish(t, "t", seq("e", 1, 499)...)
	c := b.subscribe(t, "topic=t", ids[494]) // e495, still kept
	last := c.expect(t, "e496", "e497", "e498", "e499")[3]
	a.publish(t, "t", seq("e", 500, 999)...) // e499 is trimmed
	h.release()
	got, ended := c.consecutive(t, "e", 499, 999)
	if !ended {
		a.publish(t, "t", "after")
		c.expect(t, "after")
		return
	}
	if got.id != "" {
		last = got
	}
	resumesWithReset(t, b, a, last.id)
}
