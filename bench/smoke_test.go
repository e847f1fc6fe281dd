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
