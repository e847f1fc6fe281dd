package bench_test

import (
	"context"
	"io"
	"os"
	"testing"
	"time"

	"github.com/b2ce5911/sse/bench"
	"github.com/b2ce5911/sse/bench/fanout"
)

// TestMain lets the fan-out smoke re-execute this test binary as the
// clients' process.
func TestMain(m *testing.M) {
	if fanout.IsChild() {
		os.Exit(fanout.Child())
	}
	os.Exit(m.Run())
}

// TestSmoke runs every library once through encode, parse, publish and the
// fan-out tool (N=50, 1 s), and checks that each path really delivered
// its events, and none was lost. It asserts nothing about speed.
func TestSmoke(t *testing.T) {
	stream, generated := bench.MixedStream(1<<20, 1, 8)
	want, _, err := bench.Parse(bench.Ours, stream)
	if err != nil || want != generated {
		t.Fatalf("our Decoder: %d events (%v), the generator wrote %d", want, err, generated)
	}
	for _, lib := range bench.Libs {
		t.Run(lib, func(t *testing.T) {
			for _, data := range [][]byte{bench.JSONEvent, bench.BigEvent} {
				e, err := bench.NewEncoder(lib, "7", "update", data)
				if err != nil {
					t.Fatal(err)
				}
				for range 3 {
					if err := e.Send(); err != nil {
						t.Fatal(err)
					}
				}
				e.Wait(3)
				e.Close()
			}

			n, dataBytes, err := bench.Parse(lib, stream)
			if err != nil {
				t.Fatal(err)
			}
			if n == 0 || dataBytes == 0 {
				t.Fatalf("parse dispatched %d events with %d data bytes", n, dataBytes)
			}
			if n != want {
				t.Logf("parse deviates from the spec: %d events, want %d", n, want)
				if lib == bench.Ours || lib == bench.Reference {
					t.Fail()
				}
			}

			p, err := bench.NewInProc(lib, 3)
			if err != nil {
				t.Fatal(err)
			}
			base := p.Delivered()
			for range 100 {
				if err := p.Server.Publish(bench.JSONEvent); err != nil {
					t.Fatal(err)
				}
			}
			err = p.WaitDelivered(base+300, 10*time.Second)
			p.Close()
			if err != nil {
				t.Fatal(err)
			}
			if d := p.Delivered() - base; d != 300 {
				t.Fatalf("publish delivered %d events, want 300", d)
			}
		})
	}

	cfg := fanout.Config{N: []int{50}, Duration: time.Second, MaxEvents: 2000, Broadcasts: 5, Window: 64}
	results, err := fanout.Run(context.Background(), cfg, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if len(results) != len(bench.Libs) {
		t.Fatalf("%d fan-out results, want %d", len(results), len(bench.Libs))
	}
	for _, r := range results {
		if r.Err != "" {
			t.Errorf("%s: fan-out: %s", r.Lib, r.Err)
		}
		if r.Published == 0 || r.DeliveredPerS <= 0 || r.LatencySamples != 5 {
			t.Errorf("%s: fan-out published %d events, %.0f delivered/s, %d latency samples", r.Lib, r.Published, r.DeliveredPerS, r.LatencySamples)
		}
		if r.Lost != 0 || r.Dup != 0 || r.FailedClients != 0 {
			t.Errorf("%s: fan-out lost %d, duplicated %d events; %d clients failed", r.Lib, r.Lost, r.Dup, r.FailedClients)
		}
	}
}

// TestSmokeModes runs each mode of the load tool once, tiny: HTTP/2 idle,
// a burst, a publisher with no window, a slow client. It checks that
// each ran and, where a mode promises it, that nothing was lost.
func TestSmokeModes(t *testing.T) {
	ctx := context.Background()
	results, err := fanout.Run(ctx, fanout.Config{Libs: []string{bench.Ours}, N: []int{20}, IdleOnly: true, H2: 8}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range results {
		if r.Err != "" || r.Lost != 0 || r.FailedClients != 0 || r.GoroutinesPerConn <= 0 {
			t.Errorf("%s: HTTP/2 idle: %+v", r.Lib, r)
		}
	}

	for _, r := range fanout.Burst(ctx, []string{bench.Ours}, 20, 300, bench.Options{}, io.Discard) {
		if r.Err != "" || r.AllHave == 0 || r.End.Lost != 0 || r.End.Dup != 0 || r.End.Failed != 0 || r.Evicted > 0 {
			t.Errorf("%s: burst within the history: %+v", r.Lib, r)
		}
	}

	// With Backpressure no event is lost; without, the small history
	// may cut clients off, which resume.
	rs := fanout.NoWindow(ctx, 10, 300, bench.Options{History: 16}, io.Discard)
	if len(rs) != 2 {
		t.Fatalf("no-window: %d results, want 2", len(rs))
	}
	for _, r := range rs {
		if r.Err != "" {
			t.Errorf("no-window %s: %s", r.Settings, r.Err)
		}
	}
	if r := rs[1]; r.End.Lost != 0 || r.End.Dup != 0 || r.Evicted != 0 || r.AllHave == 0 {
		t.Errorf("no-window %s: %+v", r.Settings, r)
	}

	for _, r := range fanout.Slow(ctx, []string{bench.Ours}, 10, 200, 500*time.Millisecond, 1, bench.Options{}, io.Discard) {
		if r.Err != "" || r.Recorded != r.Events || r.End.Lost != 0 || r.End.Dup != 0 {
			t.Errorf("slow=%t: %+v", r.Slow, r)
		}
	}
}
