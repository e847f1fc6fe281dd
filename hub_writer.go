package sse

// write is the subscriber's writer: the backlog, then whatever is after
// its cursors, coalesced into one write per wake-up (of at most maxBatch
// events each).
func (h *Hub) write(s *subscriber) error {
	if s.backlog != nil {
		if err := h.writeAll(s, s.backlog); err != nil {
			return err
		}
		s.backlog = nil
	}
	// Each channel an idle writer waits on holds a runtime record (a
	// sudog, about 100 bytes) for as long as it waits, so it waits on
	// three: the Hub's drain comes through s.wake (Shutdown sends to it),
	// and Close closes every Conn.
	for {
		select {
		case <-s.wake:
			if isClosed(h.drain) { // Shutdown: write what is pending, then leave
				for s.pending() {
					if err := h.writeAll(s, nil); err != nil {
						return err
					}
				}
				return ErrHubClosed
			}
			if err := h.writeAll(s, nil); err != nil {
				return err
			}
		case <-s.conn.done:
			return h.writeErr(s, nil)
		case <-s.conn.reqDone: // the client left; the Conn is closed on return
			return h.writeErr(s, nil)
		}
	}
}

// maxKeptBatch is the most slots a writer keeps between takes.
const maxKeptBatch = 512

// writeAll writes pms, maxBatch events per write; nil pms means what is
// after s's cursors. One function for both keeps the writer's stack
// shallow (see serve).
func (h *Hub) writeAll(s *subscriber, pms []*PreparedMessage) error {
	live := pms == nil
	if live {
		pms = h.take(s, s.batch)
	}
	var err error
	for i := 0; i < len(pms) && err == nil; i += maxBatch {
		err = s.conn.writePrepared(pms[i:min(i+maxBatch, len(pms))])
	}
	if live {
		// The batch is kept for the next take unless a burst made it
		// larger than the two queue slices a subscriber used to keep.
		clear(pms)
		s.batch = nil
		if cap(pms) <= maxKeptBatch {
			s.batch = pms[:0]
		}
	}
	if err != nil {
		return h.writeErr(s, err)
	}
	return nil
}

// writeErr tells why a writer stopped; err is nil when the client left.
func (h *Hub) writeErr(s *subscriber, err error) error {
	switch {
	case s.evicted.Load():
		return ErrEvicted
	case isClosed(h.done):
		return ErrHubClosed
	}
	return err
}

func isClosed(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}
