package sse

import (
	"sync"
	"time"
)

// wheelSlots is how many slots a heartbeat wheel turns through per
// interval: a detached stream stays silent at most about an eighth longer
// than its Heartbeat.
const wheelSlots = 8

// wheel sends the heartbeats of a Hub's detached streams that share one
// interval: one timer for all of them, not one per stream. Each stream is
// in the slot of the tick at which it will have been silent for the
// interval; a tick asks the writers of its slot's silent streams for a
// heartbeat and puts every stream of the slot where its next one falls.
type wheel struct {
	every, tick time.Duration

	mu    sync.Mutex // guards the fields below and the streams' slot
	slots [wheelSlots]map[*detached]struct{}
	cur   int // the slot of the last tick
	n     int // streams in the slots
	timer *time.Timer
	armed bool
}

// wheel returns the Hub's wheel for interval every, with h.mu held.
func (h *Hub) wheel(every time.Duration) *wheel {
	w := h.wheels[every]
	if w == nil {
		if h.wheels == nil {
			h.wheels = make(map[time.Duration]*wheel)
		}
		w = &wheel{every: every, tick: max(every/wheelSlots, time.Millisecond)}
		h.wheels[every] = w
	}
	return w
}

func (w *wheel) add(d *detached) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.place(d, wheelSlots)
	w.n++
	if !w.armed {
		w.armed = true
		if w.timer == nil {
			w.timer = time.AfterFunc(w.tick, w.turn)
		} else {
			w.timer.Reset(w.tick)
		}
	}
}

func (w *wheel) remove(d *detached) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if d.slot < 0 {
		return
	}
	delete(w.slots[d.slot], d)
	d.slot = -1
	if w.n--; w.n == 0 && w.armed {
		w.armed = false
		w.timer.Stop() // a turn already on its way finds the wheel empty
	}
}

// place puts d in the slot ticks ahead, with w.mu held.
func (w *wheel) place(d *detached, ticks int) {
	d.slot = (w.cur + min(max(ticks, 1), wheelSlots)) % wheelSlots
	if w.slots[d.slot] == nil {
		w.slots[d.slot] = make(map[*detached]struct{})
	}
	w.slots[d.slot][d] = struct{}{}
}

// turn is the timer's tick.
func (w *wheel) turn() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.armed {
		return
	}
	w.cur = (w.cur + 1) % wheelSlots
	due := w.slots[w.cur]
	w.slots[w.cur] = nil
	t := now()
	for d := range due {
		left := int64(w.every) - (t - d.lastWrite.Load())
		if left <= int64(w.tick)/2 {
			d.beat.Store(true)
			d.kick()
			left = int64(w.every)
		}
		w.place(d, int((left+int64(w.tick)-1)/int64(w.tick)))
	}
	w.timer.Reset(w.tick)
}
