package sse

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
)

// catchUp prepares what s receives before the events after its cursors:
// its position, a reset, or the events it missed. The Broker is asked
// without the Hub's lock; meanwhile live events come after its cursors,
// and are then reconciled with the replay by id: an event is either
// replayed or live, never both.
func (h *Hub) catchUp(s *subscriber) error {
	for _, t := range s.feeds {
		select {
		case <-t.ready:
		case <-s.conn.done:
			return h.writeErr(s, nil) // it was closed while a feed was starting
		case <-s.conn.reqDone:
			return h.writeErr(s, nil) // it left, or was closed, while a feed was starting
		}
		if t.err != nil {
			return t.err
		}
	}
	after := s.conn.LastEventID()
	h.mu.Lock()
	for i, t := range s.feeds {
		if !s.base[i].known {
			s.base[i] = position{t.start, true}
		}
	}
	h.mu.Unlock()
	// From here on, s.base is fixed.
	ctx := s.conn.callContext()
	entries, heads, gap, err := h.history(ctx, s, after)
	if err != nil {
		return err
	}
	var reset, pos *PreparedMessage
	if gap != nil || after == "" {
		resume, err := h.newest(ctx, s, heads)
		if err != nil {
			return err
		}
		switch {
		case gap != nil:
			if reset, err = h.reset(s, after, gap, resume); err != nil {
				return err
			}
		case resume != "" && (len(entries) == 0 || entries[len(entries)-1].ID != resume):
			// The position, unless the newest event told it already.
			pos = &PreparedMessage{data: appendPosition(nil, resume)}
		}
	}

	h.mu.Lock()
	defer h.mu.Unlock()
	if s.gone {
		return h.writeErr(s, nil)
	}
	if reset != nil {
		s.backlog = append(s.backlog, reset)
	}
	for _, e := range entries {
		pm, err := NewPreparedMessage(e.Message)
		if err != nil {
			continue // it was valid when published; an odd Broker's fault, not the client's
		}
		s.backlog = append(s.backlog, pm)
	}
	if pos != nil {
		s.backlog = append(s.backlog, pos)
	}
	// Live events that came during the replay are after s's cursors; no
	// feed adds any while the lock is held.
	for i, t := range s.feeds {
		if i >= len(heads) || heads[i] == s.base[i].id {
			continue // the replay ends where the live events begin
		}
		// The head came after the subscriber registered: the live events
		// of the topic up to it are in the replay, or the client had them.
		// The cursor moves past those in the ring; if the head is not
		// among them, the feed lags behind the store and its events up to
		// the head are skipped as they come.
		t.mu.Lock()
		p := max(s.next[i], t.ring.start)
		for p < t.ring.end && t.ring.at(p).id != heads[i] {
			p++
		}
		if p < t.ring.end {
			s.next[i] = p + 1
		} else {
			s.next[i] = t.ring.end
			if s.skip == nil {
				s.skip = make(map[string]string)
			}
			s.skip[t.name] = heads[i]
		}
		t.mu.Unlock()
	}
	return nil
}

// newest is where s's live events start once its cursors are reconciled
// with heads: the position a new subscriber is told, and the id a reset
// event carries. nil heads means the feeds' own positions, s.base. With
// several topics, whose order only the Broker knows, it asks the Broker.
func (h *Hub) newest(ctx context.Context, s *subscriber, heads []string) (string, error) {
	if heads == nil {
		heads = make([]string, len(s.base))
		for i, b := range s.base {
			heads[i] = b.id
		}
	}
	if len(heads) == 1 {
		return heads[0], nil
	}
	return h.broker.Newest(ctx, s.topics, heads)
}

// ResetData is the data of the reset event, JSON-encoded (see [Hub]).
type ResetData struct {
	Reason      GapReason `json:"reason"`
	LastEventID string    `json:"lastEventId"` // the client's
	Resume      string    `json:"resume"`      // the reset event's id
}

// reset makes the reset event of s for gap, the error of a Replay after
// the id after; the client resumes from resume.
func (h *Hub) reset(s *subscriber, after string, gap error, resume string) (*PreparedMessage, error) {
	d := ResetData{Reason: GapUnknown, LastEventID: after, Resume: resume}
	var g *HistoryGapError
	if errors.As(gap, &g) && g.Reason != "" {
		d.Reason = g.Reason
	}
	data, err := json.Marshal(d)
	if err != nil {
		return nil, err
	}
	return NewPreparedMessage(Message{ID: resume, Type: cmp.Or(h.ResetType, DefaultResetType), Data: data})
}
