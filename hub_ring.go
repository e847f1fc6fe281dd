package sse

import (
	"context"
	"slices"
	"sync"
)

// ring is a topic's recent events, each encoded once and shared by all of
// its subscribers, at absolute positions start (the oldest kept) to end
// (one past the newest). Its buffer grows by doubling as events wait in it,
// so that an idle topic holds a few slots.
type ring struct {
	buf        []*PreparedMessage // len is a power of two
	start, end uint64
	bytes      int // of the events kept
}

func (r *ring) len() int { return int(r.end - r.start) }

func (r *ring) at(p uint64) *PreparedMessage { return r.buf[p&uint64(len(r.buf)-1)] }

func (r *ring) push(pm *PreparedMessage) {
	if r.len() == len(r.buf) {
		buf := make([]*PreparedMessage, max(8, 2*len(r.buf)))
		for p := r.start; p < r.end; p++ {
			buf[p&uint64(len(buf)-1)] = r.at(p)
		}
		r.buf = buf
	}
	r.buf[r.end&uint64(len(r.buf)-1)] = pm
	r.end++
	r.bytes += len(pm.data)
}

// dropTo lets go of the events before position p.
func (r *ring) dropTo(p uint64) {
	for ; r.start < p; r.start++ {
		i := r.start & uint64(len(r.buf)-1)
		r.bytes -= len(r.buf[i].data)
		r.buf[i] = nil
	}
}

// cut is the oldest position the ring may keep within count events and
// size bytes; it always keeps the newest event.
func (r *ring) cut(count, size int) uint64 {
	p, bytes := r.start, r.bytes
	for r.end-p > 1 && (int(r.end-p) > count || bytes > size) {
		bytes -= len(r.at(p).data)
		p++
	}
	return p
}

// hubTopic is a topic with subscribers in this Hub: its feed from the
// Broker and its ring. subs is written under both Hub.mu and mu, and read
// under either.
type hubTopic struct {
	name   string
	subs   map[*subscriber]int // subscriber → index of this topic in its feeds
	cursor string              // id of the newest event the feed delivered, or where it started
	fed    bool                // the feed has delivered an event
	start  string              // where the feed started, once ready
	ready  chan struct{}       // closed when Broker.Subscribe has returned
	err    error               // why the feed could not start
	stop   context.CancelFunc

	mu       sync.Mutex // guards the fields below and the subscribers' next[i] of this topic
	ring     ring
	reserved int           // events Publish has made room for, not yet delivered
	room     chan struct{} // closed when a writer or a leaving subscriber makes room; nil when no one waits
	evict    []*subscriber // deliver's scratch
}

// makeRoom wakes the publishers that wait for room in t, with t.mu held.
func (t *hubTopic) makeRoom() {
	if t.room != nil {
		close(t.room)
		t.room = nil
	}
}

// trim lets go of the events every subscriber has taken, with t.mu held.
func (t *hubTopic) trim() {
	low := t.ring.end
	for s, i := range t.subs {
		low = min(low, s.next[i])
	}
	t.ring.dropTo(low)
}

// take appends to b what s has to send, from its cursors to the heads of
// its topics, in publish order, and moves its cursors past them.
func (h *Hub) take(s *subscriber, b []*PreparedMessage) []*PreparedMessage {
	// Of several topics only events stamped up to limit are taken: each
	// event's stamp and its place in its ring are set together under
	// h.mu, so that every event stamped before limit is in its ring
	// already, and none taken from one topic can pass an event of another
	// that is still on its way.
	limit := h.seq.Load()
	n := len(b)
	for i, t := range s.feeds {
		t.mu.Lock()
		if _, ok := t.subs[s]; !ok {
			// s was evicted or left: its cursor is no one's business, and
			// must not move the ring's start for those who stay.
			t.mu.Unlock()
			continue
		}
		p := s.next[i]
		if s.evicted.Load() || p < t.ring.start {
			// Events s has not sent are gone: it is being evicted, and
			// sends nothing more, of any topic, so that its client's last
			// id stays before the hole and its replay fills it.
			t.mu.Unlock()
			clear(b[n:])
			return b[:n]
		}
		for ; p < t.ring.end; p++ {
			pm := t.ring.at(p)
			if len(s.feeds) > 1 && pm.seq > limit {
				break
			}
			b = append(b, pm)
		}
		if p != s.next[i] {
			s.next[i] = p
			if len(t.subs) == 1 {
				t.ring.dropTo(p) // cheap here, and an idle topic then holds nothing
			}
			t.makeRoom()
		}
		t.mu.Unlock()
	}
	if len(s.feeds) > 1 {
		slices.SortFunc(b, func(x, y *PreparedMessage) int {
			if x.seq < y.seq {
				return -1
			}
			return 1
		})
	}
	return b
}

// pending reports whether s has events after its cursors. With the
// subscriber's wake channel it is all that a writer needs to know: it
// sleeps until poked, and sends while pending.
func (s *subscriber) pending() bool {
	for i, t := range s.feeds {
		t.mu.Lock()
		_, ok := t.subs[s]
		more := ok && s.next[i] < t.ring.end
		t.mu.Unlock()
		if more {
			return true
		}
	}
	return false
}

// bounds are the ring's count and byte bounds in force: twice the fields'
// in backpressure mode, whose publishers wait at the fields' bounds, so
// that events that Publish did not wait for (another node's, or one a
// Broker delivers after Publish returns) do not cut a subscriber off at
// once.
func (h *Hub) bounds() (count, size int) {
	count, size = h.ringSize(), h.ringBytes()
	if h.Backpressure {
		count, size = 2*count, 2*size
	}
	return count, size
}

// waitRoom is Publish's wait in backpressure mode: until topic's ring has
// room for an event of size bytes after every subscriber's cursor, or
// ctx ends. It returns the topic whose room it reserved, to give back with
// unreserve once the Broker has the event; nil when topic has no
// subscriber here.
func (h *Hub) waitRoom(ctx context.Context, topic string, size int) (*hubTopic, error) {
	count, bytes := h.ringSize(), h.ringBytes()
	for {
		h.mu.Lock()
		t, closed := h.topics[topic], h.closed
		h.mu.Unlock()
		if closed {
			return nil, ErrHubClosed
		}
		if t == nil {
			return nil, nil
		}
		t.mu.Lock()
		t.trim()
		n := t.ring.len() + t.reserved
		if n == 0 || n < count && t.ring.bytes+size <= bytes {
			t.reserved++
			t.mu.Unlock()
			return t, nil
		}
		if t.room == nil {
			t.room = make(chan struct{})
		}
		room := t.room
		t.mu.Unlock()
		select {
		case <-room:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-h.done:
			return nil, ErrHubClosed
		}
	}
}

func (t *hubTopic) unreserve() {
	t.mu.Lock()
	t.reserved--
	t.makeRoom() // another publisher may fit now
	t.mu.Unlock()
}
