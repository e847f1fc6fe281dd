package sse

import (
	"context"
	"time"
)

// Shutdown stops new subscribers and publishes, lets every subscriber send
// what is after its cursors until ctx ends, then closes every stream. It
// returns ctx.Err() when they did not finish in time. A detached stream
// (see DisableDetach) ends with the last chunk of its response and its
// connection closes: http.Server.Shutdown, which no longer knows it, does
// not end it, so a server calls both.
func (h *Hub) Shutdown(ctx context.Context) error {
	h.init()
	if !h.stop(h.drain) {
		return nil
	}
	h.mu.Lock()
	for s := range h.subs {
		s.poke() // its writer sees drain closed
	}
	h.mu.Unlock()
	h.logger().Info("sse: hub shutting down", "subscribers", h.Stats().Subscribers)
	drained := make(chan struct{})
	go func() {
		h.active.Wait()
		close(drained)
	}()
	var err error
	select {
	case <-drained:
	case <-ctx.Done():
		err = ctx.Err()
	}
	h.Close() // which waits for the writers as long as it may
	return err
}

// Close closes every stream at once and stops the Hub; it closes the
// Broker when the Hub made it. A detached stream gets the last chunk of its
// response if its client takes it at once, and its connection closes. It waits for the subscribers' writers to
// leave, which they do at once unless a write is stuck where its deadline
// cannot be cut short (see [Upgrader.WriteTimeout]): it then returns
// after the Upgrader's WriteTimeout (DefaultWriteTimeout when it is
// negative), and logs how many were left.
func (h *Hub) Close() error {
	h.init()
	h.stop(h.drain)
	if isClosed(h.done) {
		return nil
	}
	h.mu.Lock()
	select {
	case <-h.done:
	default:
		close(h.done)
	}
	stops := make([]func(), 0, len(h.subs))
	for s := range h.subs {
		stops = append(stops, s.stopper())
	}
	h.mu.Unlock()
	for _, stop := range stops {
		stop() // unblocks a writer stuck on a slow client
	}
	left := make(chan struct{})
	go func() {
		h.active.Wait()
		close(left)
	}()
	t := time.NewTimer(closeWait(h.Upgrader.WriteTimeout))
	defer t.Stop()
	select {
	case <-left:
	case <-t.C:
		h.logger().Warn("sse: hub closed with writers still blocked in a write that no deadline can cut short", "subscribers", h.Stats().Subscribers)
	}
	if h.owned {
		return h.broker.Close()
	}
	return nil
}

// stop marks the Hub closed and closes ch once; it reports whether this
// call did.
func (h *Hub) stop(ch chan struct{}) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	if isClosed(ch) {
		return false
	}
	close(ch)
	return true
}
