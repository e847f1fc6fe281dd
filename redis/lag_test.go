package sseredis_test

import (
	"context"
	"errors"
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

// publishAfterRestart publishes data on topic t of n, each again until
// Redis takes it: the first command on each pooled connection finds it
// broken.
func publishAfterRestart(t *testing.T, n *node, data ...string) {
	t.Helper()
	for _, d := range data {
		for attempt := 0; ; attempt++ {
			_, err := n.hub.Publish(context.Background(), "t", sse.Message{Data: []byte(d)})
			if err == nil {
				break
			}
			if attempt == 100 {
				t.Fatalf("publish %s: %v", d, err)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

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

// lagPair is two nodes with MaxLen 10 on srv, a and b, whose b's reads h
// holds; live is a subscriber of topic t on b that has got e0, the event
// it returns.
func lagPair(t *testing.T, srv *redistest.Server) (a, b *node, h *holdReads, live *stream, e0 event) {
	t.Helper()
	a = newNode(t, srv, maxLen10)
	h = &holdReads{}
	b = heldNode(t, srv, h, maxLen10)
	live = b.subscribe(t, "topic=t", "")
	a.publish(t, "t", "e0")
	return a, b, h, live, live.expect(t, "e0")[0]
}

// noSkip checks that s, which has got event last ("e<from>"), gets the
// events up to "e<to>" one after the other, or is cut off and then resumes
// with the reset event, or gets later events.
func noSkip(t *testing.T, a, b *node, s *stream, last event, from, to int) {
	t.Helper()
	got, ended := s.consecutive(t, "e", from, to)
	if !ended {
		a.publish(t, "t", "after")
		s.expect(t, "after")
		return
	}
	if got.id != "" {
		last = got
	}
	resumesWithReset(t, b, a, last.id)
}

// A node whose reads are held back while another publishes more than
// MaxLen events: its feed finds what it had yet to read trimmed, and its
// subscribers are cut off, so that they resume and get the reset event;
// never a silent skip from e0 to e400.
func TestLaggingFeedPastMaxLen(t *testing.T) {
	t.Parallel()
	a, b, h, live, e0 := lagPair(t, redistest.Start(t, false))
	h.hold()
	a.publish(t, "t", seq("e", 1, 499)...)
	h.release()
	noSkip(t, a, b, live, e0, 0, 499)
}

// The same across a Redis restart (append-only file): a node reconnects
// and publishes more than MaxLen events while the other's reads are held
// (as in its backoff): its subscribers are cut off and get the reset
// event when they resume.
func TestLaggingFeedPastMaxLenAcrossRestart(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t, true)
	a, b, h, live, e0 := lagPair(t, srv)
	h.hold()
	srv.Stop(syscall.SIGKILL)
	srv.Restart(t)
	publishAfterRestart(t, a, seq("e", 1, 300)...)
	h.release()
	noSkip(t, a, b, live, e0, 0, 300)
}

// A client resumes on a node whose feed lags: its replay is right, and
// ends at a head the feed has yet to deliver; more events then trim that
// head before the feed reads it. The client must not wait for it forever:
// it gets the later events, or is cut off and resumes with a reset.
func TestResumeOnLaggingNodeNeverStalls(t *testing.T) {
	t.Parallel()
	a, b, h, _, _ := lagPair(t, redistest.Start(t, false))
	h.hold()
	ids := a.publish(t, "t", seq("e", 1, 499)...)
	c := b.subscribe(t, "topic=t", ids[494]) // e495, still kept
	last := c.expect(t, "e496", "e497", "e498", "e499")[3]
	a.publish(t, "t", seq("e", 500, 999)...) // e499 is trimmed
	h.release()
	noSkip(t, a, b, c, last, 499, 999)
}

// A Redis restart without persistence loses the events a held-back node
// had yet to read: its feed finds the stream made anew, and its
// subscribers are cut off and get the reset event, rather than skip from
// e4 to e8.
func TestLaggingFeedAcrossRestartWithoutPersistence(t *testing.T) {
	t.Parallel()
	b, last := lostLaggingEvents(t, 9)
	s := b.subscribe(t, "topic=t", last.id)
	if e := s.next(t); e.typ != "reset" {
		t.Fatalf("resuming after e4: got %+v, want the reset event", e)
	}
}

// As TestLaggingFeedAcrossRestartWithoutPersistence, but the stream made
// anew gains more entries than the feed had read before it reads again,
// so that no count of entries tells it was made anew: the feed still
// finds it new, and a replay after e4 still answers a gap.
func TestLaggingFeedAcrossRestartWithoutPersistenceCaughtUp(t *testing.T) {
	t.Parallel()
	b, last := lostLaggingEvents(t, 12)
	_, _, err := b.broker.Replay(context.Background(), []string{"t"}, last.id)
	var gap *sse.HistoryGapError
	if !errors.As(err, &gap) {
		t.Fatalf("Replay after e4 (%s) of the lost history: %v, want a *sse.HistoryGapError", last.id, err)
	}
}

// lostLaggingEvents delivers e1 to e4 on topic t to a live client of node
// b, holds b's reads while e5 to e7 are published, restarts Redis without
// persistence, publishes e8 to e<upTo>, and checks that the client gets no
// event after e4 but is cut off. It returns b and e4.
func lostLaggingEvents(t *testing.T, upTo int) (*node, event) {
	t.Helper()
	srv := redistest.Start(t, false)
	a, b, h, live, _ := lagPair(t, srv)
	a.publish(t, "t", seq("e", 1, 4)...)
	last := live.expect(t, seq("e", 1, 4)...)[3]
	h.hold()
	a.publish(t, "t", seq("e", 5, 7)...)
	srv.Stop(syscall.SIGKILL)
	srv.Restart(t)
	publishAfterRestart(t, a, seq("e", 8, upTo)...)
	h.release()
	got, ended := live.consecutive(t, "e", 4, upTo)
	if !ended {
		t.Fatalf("got %+v after e4, though e5 to e7 are gone", got)
	}
	return b, last
}
