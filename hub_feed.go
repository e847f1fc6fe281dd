package sse

import "context"

// startFeed subscribes the Hub to t's events on the Broker.
func (h *Hub) startFeed(t *hubTopic) {
	ctx, stop := context.WithCancel(context.Background())
	start, err := h.broker.Subscribe(ctx, t.name, func(e Entry) { h.deliver(t, e) })
	h.mu.Lock()
	defer h.mu.Unlock()
	t.start, t.stop, t.err = start, stop, err
	if !t.fed {
		t.cursor = start
	}
	if err != nil || len(t.subs) == 0 {
		// A feed that failed, or that no one waits for any more, stops;
		// the next subscriber of the topic starts a new one.
		stop()
		if h.topics[t.name] == t {
			delete(h.topics, t.name)
		}
	}
	close(t.ready)
}

// deliver is the feed of topic t: it encodes e once, stamps it with the
// Hub's next sequence number and puts it in t's ring, from which every
// subscriber's writer sends it. A subscriber whose cursor the ring's
// bounds leave behind is evicted here, at once, so that it reconnects and
// replays what it missed; the others are poked.
func (h *Hub) deliver(t *hubTopic, e Entry) {
	if e.Gap != nil {
		h.lost(t, e.Gap)
		return
	}
	pm, err := NewPreparedMessage(e.Message)
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.topics[t.name] != t {
		return // the topic's last subscriber left
	}
	t.cursor, t.fed = e.ID, true
	if err != nil {
		// Not ours to lose silently: a Broker handed over an event that
		// cannot be encoded. Cut the subscribers off so they resync.
		h.logger().Error("sse: hub cannot encode an event from the broker", "topic", t.name, "id", e.ID, "err", err)
	}
	t.mu.Lock()
	cut := t.ring.end + 1 // beyond every cursor: all are evicted
	if err == nil {
		pm.id, pm.topic, pm.seq = e.ID, t.name, h.seq.Add(1)
		t.ring.push(pm)
		cut = t.ring.cut(h.bounds())
	}
	delivered, low := int64(0), t.ring.end
	evict := t.evict[:0]
	for s, i := range t.subs {
		if id, ok := s.skip[t.name]; ok {
			// catchUp found that the live events up to id came by replay.
			if id == e.ID {
				delete(s.skip, t.name)
			}
			s.next[i] = t.ring.end
			continue
		}
		if s.next[i] < cut {
			// Marked before t.mu is let go, with the ring cut below: a
			// writer that takes before evictLocked runs must not send the
			// events after the hole.
			s.evicted.Store(true)
			evict = append(evict, s)
			continue
		}
		low = min(low, s.next[i])
		delivered++
		s.poke()
	}
	// What every cursor has passed, or what the bounds cut, goes.
	t.ring.dropTo(min(low, t.ring.end))
	h.delivered.Add(delivered)
	t.mu.Unlock()
	for j, s := range evict {
		h.logger().Warn("sse: subscriber evicted: the events it had still to send fell out of the hub's history", "topics", s.topics, "history", h.ringSize())
		h.evictLocked(s) // which takes t.mu
		evict[j] = nil
	}
	t.evict = evict[:0]
}

// lost is the Gap of t's feed: events of t will never reach the ring, so
// every subscriber of t is evicted, those still catching up included (one
// that waits for the feed to reach its replay's head would wait forever).
// Each reconnects and replays, or gets the reset event. The last one's
// leaving stops the feed; the next subscriber of t starts a new one.
func (h *Hub) lost(t *hubTopic, gap error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.topics[t.name] != t {
		return
	}
	h.logger().Warn("sse: the broker's feed lost events: evicting the topic's subscribers so that they replay", "topic", t.name, "subscribers", len(t.subs), "err", gap)
	delete(h.topics, t.name) // no one subscribes to this feed any more
	for s := range t.subs {
		h.evictLocked(s)
	}
	if t.stop != nil {
		t.stop()
	} // else startFeed stops it
}
