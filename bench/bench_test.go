package bench

import (
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"
)

// BenchmarkEncode writes and flushes one event per op to a ResponseWriter
// that does no I/O; see Encoder for the path of each library.
func BenchmarkEncode(b *testing.B) {
	for _, size := range []struct {
		name string
		data []byte
	}{{"json100B", JSONEvent}, {"4KiB64lines", BigEvent}} {
		for _, lib := range Libs {
			b.Run(size.name+"/"+lib, func(b *testing.B) {
				e, err := NewEncoder(lib, "1732368000-42", "update", size.data)
				if err != nil {
					b.Fatal(err)
				}
				defer e.Close()
				if err := e.Send(); err != nil { // warm up buffers
					b.Fatal(err)
				}
				e.Wait(1)
				b.SetBytes(int64(len(size.data)))
				b.ReportAllocs()
				b.ResetTimer()
				for range b.N {
					if err := e.Send(); err != nil {
						b.Fatal(err)
					}
				}
				e.Wait(int64(b.N) + 1)
			})
		}
	}
}

// ParseStreamSize is the size of the stream of BenchmarkParse.
const ParseStreamSize = 64 << 20

// parseStream is the 64 MiB stream (seed 1, a 4 KiB event in about 8) and
// its event count by the spec, as our Decoder counts it, cross-checked
// with the reference parser and the generator.
var parseStream = sync.OnceValues(func() ([]byte, int) {
	s, _ := MixedStream(ParseStreamSize, 1, 8)
	n, _, _ := Parse(Ours, s)
	return s, n
})

// BenchmarkParse reads the stream through each library's client path. It
// reports MB/s, allocs/event, the events dispatched, and deviations: the
// difference from the spec count (0 is exact).
func BenchmarkParse(b *testing.B) {
	stream, want := parseStream()
	if ref, _, _ := Parse(Reference, stream); ref != want {
		b.Fatalf("spec count disagrees: our Decoder %d, reference %d", want, ref)
	}
	for _, lib := range Libs {
		b.Run(lib, func(b *testing.B) {
			b.SetBytes(int64(len(stream)))
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			b.ResetTimer()
			got := 0
			for range b.N {
				n, _, err := Parse(lib, stream)
				if err != nil {
					b.Fatal(err)
				}
				got = n
			}
			b.StopTimer()
			runtime.ReadMemStats(&after)
			b.ReportMetric(float64(after.Mallocs-before.Mallocs)/float64(b.N*max(got, 1)), "allocs/event")
			b.ReportMetric(float64(got), "events")
			b.ReportMetric(float64(got-want), "deviation")
		})
	}
}

// BenchmarkPublish publishes the ~100 B event through each library's
// broadcast path to n in-process subscribers and, every window events,
// waits until all of them have written everything: ns/op is a publish
// delivered to every subscriber; allocs/op must not grow with n.
func BenchmarkPublish(b *testing.B) {
	const window = 128 // below every library's queue, so no one drops or blocks for it
	for _, n := range []int{1, 100} {
		for _, lib := range Libs {
			b.Run(fmt.Sprintf("subscribers=%d/%s", n, lib), func(b *testing.B) {
				p, err := NewInProc(lib, n)
				if err != nil {
					b.Fatal(err)
				}
				defer p.Close()
				base := p.Delivered()
				b.ReportAllocs()
				b.ResetTimer()
				for i := 1; i <= b.N; i++ {
					if err := p.Server.Publish(JSONEvent); err != nil {
						b.Fatal(err)
					}
					if i%window == 0 || i == b.N {
						if err := p.WaitDelivered(base+int64(i*n), time.Minute); err != nil {
							b.Fatal(err)
						}
					}
				}
				b.StopTimer()
				if d := p.Delivered() - base; d != int64(b.N*n) {
					b.Fatalf("delivered %d events, want %d", d, b.N*n)
				}
			})
		}
	}
}
