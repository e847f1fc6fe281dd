package fanout

import (
	"context"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/b2ce5911/sse/bench"
)

// The modes below measure one property each, with their own server
// settings and clients: a burst with no window, a publisher with no window
// against a small history, and one slow client among many.

// BurstResult is a burst of events published back to back, with no window,
// to clients that all stay connected.
type BurstResult struct {
	Lib      string
	N        int
	Events   int           // published in the burst
	Publish  time.Duration // until the last Publish returned
	AllHave  time.Duration // from the first publish until every client had the last event; 0: never
	Evicted  int64         // subscribers the server cut off; -1: it keeps no count
	Reached  int64         // the newest event every client has, counted from the burst's first
	End      endReport
	Err      string
	Settings string // what the server ran with
}

// Burst publishes events events back to back to n clients of each library,
// with a history (ours) or queue (reference) of at least events, and
// reports when the last client had the last event and what was lost.
// Clients do not reconnect: a client cut off counts as failed, and its
// missing events as lost.
func Burst(ctx context.Context, libs []string, n, events int, o bench.Options, log io.Writer) []BurstResult {
	o.History = max(o.History, events)
	o.BrokerHistory = max(o.BrokerHistory, events+1024)
	var rs []BurstResult
	for i, lib := range libs {
		r := BurstResult{Lib: lib, N: n, Events: events, Settings: fmt.Sprintf("history %d", o.History)}
		if err := burst(ctx, &r, lib, n, 400+i, o, childOpts{long: true}, 5*time.Second, log); err != nil {
			r.Err = err.Error()
		}
		fmt.Fprintf(log, "burst %-9s N=%d events=%d publish %v all-have %v evicted %d reached %d lost %d dup %d lossy %d failed %d reconnects %d resets %d %s\n",
			r.Lib, n, events, r.Publish, r.AllHave, r.Evicted, r.Reached, r.End.Lost, r.End.Dup, r.End.Lossy, r.End.Failed, r.End.Reconnects, r.End.Resets, r.Err)
		rs = append(rs, r)
		if ctx.Err() != nil {
			break
		}
	}
	return rs
}

func burst(ctx context.Context, r *BurstResult, lib string, n, run int, o bench.Options, co childOpts, stall time.Duration, log io.Writer) error {
	s, err := open(ctx, lib, n, run, o, co, 0)
	if err != nil {
		return err
	}
	defer s.close()
	if err := s.probe(); err != nil {
		return err
	}
	base := s.seq
	start := time.Now()
	for range r.Events {
		if err := s.publish(); err != nil {
			return err
		}
	}
	r.Publish = time.Since(start)
	// Every client has the last event, or the slowest has not moved for
	// stall: a library that dropped events may never deliver it.
	last, moved, told := s.c.min.Load(), time.Now(), time.Now()
	for s.c.min.Load() < s.seq && time.Since(moved) < stall && s.ctx.Err() == nil {
		time.Sleep(100 * time.Microsecond)
		if m := s.c.min.Load(); m != last {
			last, moved = m, time.Now()
		}
		if time.Since(told) > 5*time.Second {
			told = time.Now()
			fmt.Fprintf(log, "  %s %v after the first publish: the slowest client has %d of %d\n", lib, time.Since(start).Round(time.Second), s.c.min.Load()-base, r.Events)
		}
	}
	if s.c.min.Load() >= s.seq {
		r.AllHave = time.Since(start)
	}
	r.Reached = s.c.min.Load() - base
	r.Evicted = s.evicted()
	r.End, err = s.end()
	return err
}

// NoWindow publishes events back to back to n resuming clients of ours,
// with the Hub's defaults and then with Backpressure, and reports the
// evictions, reconnections, resets and losses of each. The MemoryBroker
// keeps every event of the run, so that a client cut off can resume by
// replay. The wait for the last event ends when the slowest client has
// not moved for 30 s (a burst's, for 5 s).
func NoWindow(ctx context.Context, n, events int, o bench.Options, log io.Writer) []BurstResult {
	var rs []BurstResult
	for i, bp := range []bool{false, true} {
		oo := o
		oo.Backpressure = bp
		oo.BrokerHistory = max(o.BrokerHistory, events+1024)
		r := BurstResult{Lib: bench.Ours, N: n, Events: events, Settings: fmt.Sprintf("history %d, backpressure %t", max(oo.History, 0), bp)}
		if err := burst(ctx, &r, bench.Ours, n, 420+i, oo, childOpts{Resume: true, long: true}, 30*time.Second, log); err != nil {
			r.Err = err.Error()
		}
		fmt.Fprintf(log, "no-window backpressure=%-5t N=%d events=%d publish %v all-have %v evicted %d reached %d lost %d dup %d lossy %d failed %d reconnects %d resets %d %s\n",
			bp, n, events, r.Publish, r.AllHave, r.Evicted, r.Reached, r.End.Lost, r.End.Dup, r.End.Lossy, r.End.Failed, r.End.Reconnects, r.End.Resets, r.Err)
		rs = append(rs, r)
		if ctx.Err() != nil {
			break
		}
	}
	return rs
}

// slowSendBuffer is the send buffer of the server's sockets in the slow
// mode: Linux grows a loopback socket's up to 4 MiB, which would hold a
// minute of a slow client's lag before the server sees any.
const slowSendBuffer = 16 << 10

// SlowResult is a paced run with or without one slow client.
type SlowResult struct {
	Lib        string
	N          int
	Slow       bool
	Rate       float64       // events per second published
	Events     int           // due in the paced phase
	Published  int           // of those, published before the phase's time was up
	P50, P99   time.Duration // over the events, of the slowest (not slow) client's latency from the event's scheduled time
	Max        time.Duration
	Recorded   int     // events whose latency was recorded
	HeapAfter  float64 // server HeapInuse+StackInuse at the end of the phase, above the process's before the server, per client
	HeapTotal  float64 // the same, in all
	SlowBehind int64   // events the slow client lacked at the end of the phase
	Evicted    int64
	End        endReport
	Err        string
}

// Slow publishes at rate events per second for d to n resuming clients of
// lib, first with all reading at full speed, then with one reading at a
// tenth of the rate, and reports the others' slowest-client latency and
// the server's memory in each, repeat times over. Each event is stamped with the time it was
// due, so that a publisher held up by a library shows as latency.
func Slow(ctx context.Context, libs []string, n int, rate float64, d time.Duration, repeat int, o bench.Options, log io.Writer) []SlowResult {
	var rs []SlowResult
	run := 440
	for _, lib := range libs {
		for _, slow := range slices.Repeat([]bool{false, true}, max(1, repeat)) {
			run++
			r := SlowResult{Lib: lib, N: n, Slow: slow, Rate: rate}
			if err := slowRun(ctx, &r, lib, n, run, rate, d, o); err != nil {
				r.Err = err.Error()
			}
			fmt.Fprintf(log, "slow %-9s N=%d slow=%-5t rate %.0f/s events %d published %d p50 %v p99 %v max %v recorded %d heap %.0f B (%.0f/client) slow-behind %d evicted %d lost %d dup %d reconnects %d resets %d failed %d %s\n",
				lib, n, slow, rate, r.Events, r.Published, r.P50, r.P99, r.Max, r.Recorded, r.HeapTotal, r.HeapAfter, r.SlowBehind, r.Evicted, r.End.Lost, r.End.Dup, r.End.Reconnects, r.End.Resets, r.End.Failed, r.Err)
			rs = append(rs, r)
			if ctx.Err() != nil {
				return rs
			}
		}
	}
	return rs
}

func slowRun(ctx context.Context, r *SlowResult, lib string, n, run int, rate float64, d time.Duration, o bench.Options) error {
	co := childOpts{Resume: true}
	if r.Slow {
		co.Slow, co.SlowRate = 1, rate/10
	}
	s, err := open(ctx, lib, n, run, o, co, slowSendBuffer)
	if err != nil {
		return err
	}
	defer s.close()
	if err := s.probe(); err != nil {
		return err
	}
	r.Events = int(rate * d.Seconds())
	if _, err := s.c.ask(fmt.Sprintf("t %d %d", s.seq+1, r.Events), 15*time.Second); err != nil {
		return err
	}
	gap := time.Duration(float64(time.Second) / rate)
	start := time.Now()
	// A library whose Publish waits for the slow client would take a
	// tenth of the rate: the phase stops at twice its length, with fewer
	// events published.
	for i := 0; i < r.Events && time.Since(start) < 2*d; i++ {
		due := start.Add(time.Duration(i) * gap)
		if w := time.Until(due); w > 0 {
			time.Sleep(w)
		}
		if err := s.publishAt(due); err != nil {
			return err
		}
		r.Published++
	}
	if err := waitMin(s.c, s.seq); err != nil {
		return err
	}
	after, _ := memInUse()
	r.HeapTotal = float64(after) - float64(s.before)
	r.HeapAfter = r.HeapTotal / float64(n)
	reply, err := s.c.ask("q 0", 15*time.Second)
	if err != nil {
		return err
	}
	var p50, p99, mx int64
	if _, err := fmt.Sscanf(reply, "q %d %d %d %d", &r.Recorded, &p50, &p99, &mx); err != nil {
		return fmt.Errorf("bad reply %q", reply)
	}
	r.P50, r.P99, r.Max = time.Duration(p50), time.Duration(p99), time.Duration(mx)
	r.Evicted = s.evicted()
	r.End, err = s.end()
	if r.Slow {
		r.SlowBehind = s.seq - r.End.SlowLast
	}
	return err
}
