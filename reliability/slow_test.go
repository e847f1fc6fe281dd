package reliability_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/b2ce5911/sse"
)

// fanoutRun is one run of TestFrozenClients.
type fanoutRun struct {
	healthy, frozen int
	events          int64         // published at a steady rate
	interval        time.Duration // between two events
	size            int           // bytes of an event's data
	seqA            int64         // without frozen ones: when to measure the heap
}

// fanoutResult is what a run measured.
type fanoutResult struct {
	p50, p99     time.Duration // healthy subscribers' delivery latency, after the first tenth
	heapA, heapB uint64        // live heap once the frozen ones were evicted, and at the end
	seqA         int64         // events published at heapA
}

// TestFrozenClients runs a Hub with many subscribers of which a few stop
// reading: they must be evicted, the others must receive every event once
// and in order, server memory must not grow with the events published,
// and the frozen ones, once they read again, must drain what they had and
// resume by replay with every missed event once and in order. The healthy
// subscribers' latency is compared with a run without frozen ones and
// reported.
func TestFrozenClients(t *testing.T) {
	n, frozen := pick(50, 1000), pick(5, 10)
	cfg := fanoutRun{
		healthy:  n - frozen,
		events:   int64(pick(800, 2000)),
		interval: pick(10*time.Millisecond, 20*time.Millisecond), // a healthy subscriber may lag by History intervals: 2.5 s, on a loaded machine
		size:     4096,
	}
	// The run with frozen subscribers goes first: it finds the event by
	// which they are evicted, where the run without them then measures
	// the heap too. A second run with frozen subscribers comes after the
	// one without, and its latency is the one compared: the first run of
	// the process also pays for the runtime's warm-up (heap growth, stacks,
	// page faults), which would count against the frozen subscribers.
	cfg.frozen = frozen
	first := runFanout(t, cfg)
	cfg.frozen, cfg.seqA = 0, first.seqA
	base := runFanout(t, cfg)
	cfg.frozen = frozen
	got := runFanout(t, cfg)
	if t.Failed() {
		return
	}
	ratio := float64(got.p99) / float64(base.p99)
	t.Logf("frozen: subscribers=%d frozen=%d events=%d rate=%.0f/s size=%dB history=%d: p99 base=%v frozen=%v ratio=%.2f (first run %v, ratio %.2f; p50 %v / %v); all evicted by event %d, live heap then %s, at event %d %s",
		n, frozen, cfg.events, float64(time.Second)/float64(cfg.interval), cfg.size, sse.DefaultHubHistory,
		base.p99.Round(time.Microsecond), got.p99.Round(time.Microsecond), ratio,
		first.p99.Round(time.Microsecond), float64(first.p99)/float64(base.p99),
		base.p50.Round(time.Microsecond), got.p50.Round(time.Microsecond),
		got.seqA, mib(got.heapA), cfg.events, mib(got.heapB))
}

// runFanout serves cfg.healthy + cfg.frozen subscribers from one Hub,
// publishes cfg.events at a steady rate, and checks what each received.
func runFanout(t *testing.T, cfg fanoutRun) *fanoutResult {
	t.Helper()
	res := new(fanoutResult)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	// The history holds every event of the run, and is full before the
	// run starts: its size then stays the same while the heap is measured,
	// and the frozen subscribers can still replay all they missed.
	history := int(cfg.events) + 100
	broker := &sse.MemoryBroker{History: history, HistoryAge: -1}
	hub := &sse.Hub{Broker: broker, Logger: quietLogger, Upgrader: sse.Upgrader{Heartbeat: -1}}
	for range history {
		if _, err := hub.Publish(ctx, "t", sse.Message{Data: eventData(0, time.Now(), cfg.size)}); err != nil {
			t.Fatal(err)
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	// Frozen subscribers come in through a listener of their own, whose
	// sockets keep a small send buffer (see smallSendBuffer).
	lnFrozen, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var frozenClosed atomic.Int64 // by the server
	srv := &http.Server{Handler: hub}
	var served sync.WaitGroup
	for _, l := range []net.Listener{ln, smallSendBuffer{lnFrozen, 8 << 10, &frozenClosed}} {
		served.Go(func() { srv.Serve(l) })
	}
	defer func() {
		hub.Close()
		srv.Close()
		served.Wait()
		broker.Close()
	}()
	addr, addrFrozen := ln.Addr().String(), lnFrozen.Addr().String()

	type healthy struct {
		conn net.Conn
		last atomic.Int64
		err  error // why reading stopped, before the test closed conn
		hist histogram
	}
	hs := make([]*healthy, cfg.healthy)
	var readers sync.WaitGroup
	var closing atomic.Bool
	var ended atomic.Int32 // readers that stopped before the test closed them
	defer func() {
		closing.Store(true)
		for _, h := range hs {
			if h != nil {
				h.conn.Close()
			}
		}
		readers.Wait()
	}()
	for i := range hs {
		c, err := dialStream(ctx, addr, "t", "", 0)
		if err != nil {
			t.Fatal(err)
		}
		h := &healthy{conn: c}
		hs[i] = h
		readers.Go(func() {
			// A light reader of fixed buffers, not a Decoder: a thousand
			// Decoders whose arenas turn over in step would make the live
			// heap jump by megabytes from one measurement to the next.
			body, err := streamBody(c)
			if err == nil {
				err = readEvents(body, func(data []byte) error {
					now := time.Now()
					seq, at, err := parseEventData(data)
					if err != nil {
						return err
					}
					if want := h.last.Load() + 1; seq != want {
						return fmt.Errorf("received seq %d, want %d", seq, want)
					}
					if seq > cfg.events/10 { // past the start-up of the run
						h.hist.add(now.Sub(time.Unix(0, at)))
					}
					h.last.Store(seq)
					return nil
				})
			}
			if !closing.Load() {
				h.err = err
				ended.Add(1)
			}
		})
	}
	frozen := make([]net.Conn, cfg.frozen)
	defer func() {
		for _, c := range frozen {
			if c != nil {
				c.Close()
			}
		}
	}()
	for i := range frozen {
		// A small receive buffer, so that the window closes fast; not the
		// smallest (about 2 KiB), whose window updates are so small that
		// the server waits for its persist timer, seconds, once the client
		// reads again.
		if frozen[i], err = dialStream(ctx, addrFrozen, "t", "", 32768); err != nil {
			t.Fatal(err)
		}
	}
	total := cfg.healthy + cfg.frozen
	waitFor(t, 30*time.Second, func() bool { return hub.Stats().Subscribers == total }, "all subscribers to be served")

	// The publisher keeps a steady rate: event i leaves at start + i×interval.
	var published atomic.Int64
	pubErr := make(chan error, 1)
	go func() {
		start := time.Now()
		for seq := int64(1); seq <= cfg.events; seq++ {
			time.Sleep(time.Until(start.Add(time.Duration(seq-1) * cfg.interval)))
			if _, err := hub.Publish(ctx, "t", sse.Message{Data: eventData(seq, time.Now(), cfg.size)}); err != nil {
				pubErr <- err
				return
			}
			published.Store(seq)
		}
		pubErr <- nil
	}()

	// Once the frozen ones are evicted, the live heap is measured; the
	// run without them measures at the same event, so that both have the
	// pause of the collections.
	if cfg.frozen > 0 {
		waitFor(t, time.Minute, func() bool { return hub.Stats().Evicted >= int64(cfg.frozen) }, "the frozen subscribers to be evicted")
		res.seqA = published.Load()
		if res.seqA > cfg.events*3/4 {
			t.Errorf("the frozen subscribers were evicted only after event %d of %d: too late to measure memory", res.seqA, cfg.events)
		}
	} else {
		res.seqA = cfg.seqA
		waitFor(t, time.Minute, func() bool { return published.Load() >= res.seqA }, "the frozen run's eviction point")
	}
	res.heapA = liveHeap()
	if err := <-pubErr; err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Minute, func() bool {
		if ended.Load() > 0 {
			return true // reported below
		}
		for _, h := range hs {
			if h.last.Load() != cfg.events {
				return false
			}
		}
		return true
	}, "every healthy subscriber to receive the last event")
	res.heapB = liveHeap()

	if got := hub.Stats().Evicted; got != int64(cfg.frozen) {
		t.Errorf("Stats().Evicted = %d, want the %d frozen subscribers", got, cfg.frozen)
	}
	closing.Store(true)
	var all histogram
	for _, h := range hs {
		h.conn.Close()
	}
	readers.Wait()
	for i, h := range hs {
		if h.err != nil {
			t.Errorf("healthy subscriber %d: %v", i, h.err)
		}
		all.merge(&h.hist)
	}
	hs = nil
	res.p50, res.p99 = all.quantile(0.50), all.quantile(0.99)

	if cfg.frozen == 0 {
		return res
	}
	// Memory: the heap must not grow with the events published once the
	// frozen subscribers are stuck. Between A and B the history keeps its
	// size (full from the start), the healthy clients in this process keep
	// buffers of a fixed size, and what the server holds is per connection
	// and bounded: a Conn keeps a write buffer of up to 16 KiB, depending on
	// the batches it has written, so the heap may grow by that much per
	// connection as they settle, and by noise. Had the server kept, for each
	// frozen subscriber, the events it missed, it would have grown by
	// frozen×(events after A)×size: the run must make that at least twice
	// the bound, so that the check could tell.
	missedBytes := uint64(cfg.frozen) * uint64(cfg.events-res.seqA) * uint64(cfg.size)
	bound := uint64(cfg.healthy+cfg.frozen)*(16<<10) + 256<<10
	if missedBytes < 2*bound {
		t.Fatalf("the run is too small to tell: keeping the missed events would add %s, the bound is %s", mib(missedBytes), mib(bound))
	}
	if res.heapB > res.heapA+bound {
		t.Errorf("live heap grew from %s at event %d to %s at event %d, more than %s: server memory is not bounded",
			mib(res.heapA), res.seqA, mib(res.heapB), cfg.events, mib(bound))
	}

	// Evicted, their connections are closed by the server: the write in
	// progress is cut short, or the end of the response times out.
	waitFor(t, 30*time.Second, func() bool { return frozenClosed.Load() == int64(cfg.frozen) }, "the server to close the frozen connections")

	// The frozen ones read again: each drains what it had, sees its stream
	// end, and resumes with Last-Event-ID by replay.
	var resumed sync.WaitGroup
	errs := make([]error, len(frozen))
	for i, c := range frozen {
		resumed.Go(func() {
			errs[i] = resume(ctx, c, addr, cfg.events)
		})
	}
	resumed.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("frozen subscriber %d: %v", i, err)
		}
	}
	return res
}

// resume reads a frozen subscriber's stream to its end, then reconnects
// with its last event ID and reads up to event last: together they must
// hold events 1 to last, each once and in order.
func resume(ctx context.Context, c net.Conn, addr string, last int64) error {
	c.SetReadDeadline(time.Now().Add(15 * time.Second))
	d, err := streamDecoder(c)
	if err != nil {
		return err
	}
	before, lastID, err := readAll(d, last)
	if err == nil {
		return fmt.Errorf("received all %d events on the connection it stopped reading: it was never cut off", last)
	}
	if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
		// EOF, or an unfinished chunk when the server cut a write short:
		// anything else is not the server closing the stream.
		return fmt.Errorf("its stream did not end cleanly after %d events: %w", len(before), err)
	}
	c.Close()
	if err := checkSeqs(before, 1); err != nil {
		return fmt.Errorf("before eviction: %w", err)
	}
	if lastID == "" {
		return errors.New("no last event ID to resume from")
	}
	c2, err := dialStream(ctx, addr, "t", lastID, 0)
	if err != nil {
		return err
	}
	defer c2.Close()
	c2.SetReadDeadline(time.Now().Add(15 * time.Second))
	d2, err := streamDecoder(c2)
	if err != nil {
		return err
	}
	after, _, err := readAll(d2, last)
	if err != nil {
		return fmt.Errorf("after %d events, resuming after %q: %w", len(before), lastID, err)
	}
	if err := checkSeqs(after, int64(len(before))+1); err != nil {
		return fmt.Errorf("replay after %d events: %w", len(before), err)
	}
	return nil
}

// waitFor polls cond until it holds, failing the test after limit.
func waitFor(t *testing.T, limit time.Duration, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", limit, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
