// Command fanout is the loopback fan-out load tool of the benchmarks: for
// each library and each N it starts the library's server on 127.0.0.1, a
// child process (itself, re-executed) with N plain HTTP/1.1 clients, and
// prints the events delivered per second under back-to-back publishing,
// the slowest client's p50/p99 latency for single broadcasts, the server's
// memory per idle connection, and the events lost. Each run is bounded in
// time and traffic.
//
//	go run ./cmd/fanout -n 100,1000,5000,10000
//	go run ./cmd/fanout -short   # the CI smoke: N=50, about a second a library
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/b2ce5911/sse/bench"
	"github.com/b2ce5911/sse/bench/fanout"
)

func main() {
	if fanout.IsChild() {
		os.Exit(fanout.Child())
	}
	os.Exit(run())
}

// run is main without os.Exit, so that its defers run.
func run() int {
	ns := flag.String("n", "100,1000,5000,10000", "client counts, comma-separated")
	libs := flag.String("libs", strings.Join(bench.Libs, ","), "libraries, comma-separated")
	dur := flag.Duration("duration", 5*time.Second, "length of the back-to-back phase of each run")
	maxDeliveries := flag.Int("max-deliveries", 20_000_000, "bound of the back-to-back phase in client deliveries (events × N)")
	broadcasts := flag.Int("broadcasts", 100, "single broadcasts timed for latency")
	window := flag.Int("window", 128, "events the publisher may be ahead of the slowest client")
	memprofile := flag.String("memprofile", "", "write heap profiles of the idle server to `prefix`-lib-N.pprof")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the servers' process to `file`")
	memprofilerate := flag.Int("memprofilerate", 0, "runtime.MemProfileRate for -memprofile: 1 records every allocation (slow); 0 keeps Go's default")
	short := flag.Bool("short", false, "CI smoke: N=50, 1 s, 10 broadcasts")
	flag.Parse()
	if *memprofilerate > 0 {
		runtime.MemProfileRate = *memprofilerate
	}

	cfg := fanout.Config{Libs: strings.Split(*libs, ","), Duration: *dur, Broadcasts: *broadcasts, Window: *window, MemProfile: *memprofile}
	if *short {
		*ns, cfg.Duration, cfg.Broadcasts = "50", time.Second, 10
	}
	for _, s := range strings.Split(*ns, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n <= 0 {
			fmt.Fprintf(os.Stderr, "fanout: bad -n %q\n", s)
			return 2
		}
		cfg.N = append(cfg.N, n)
	}
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "fanout:", err)
			return 2
		}
		defer pprof.StopCPUProfile()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	code := 0
	for _, n := range cfg.N { // each N has its own bound on events
		c := cfg
		c.N, c.MaxEvents = []int{n}, max(1, *maxDeliveries/n)
		results, err := fanout.Run(ctx, c, os.Stderr)
		printTable(results)
		if err != nil { // interrupted
			fmt.Fprintln(os.Stderr, "fanout:", err)
			return 1
		}
		for _, r := range results {
			if r.Err != "" || r.Lost != 0 || r.Dup != 0 || r.FailedClients != 0 {
				code = 1
			}
		}
	}
	return code
}

// printTable prints the results of one N with ratios to ours and to the
// reference, as Markdown.
func printTable(results []fanout.Result) {
	find := func(lib string) *fanout.Result {
		for i := range results {
			if results[i].Lib == lib {
				return &results[i]
			}
		}
		return nil
	}
	ours, ref := find(bench.Ours), find(bench.Reference)
	ratio := func(a, b float64) string {
		if b == 0 {
			return "–"
		}
		return fmt.Sprintf("%.2f", a/b)
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 1, ' ', tabwriter.Debug)
	fmt.Fprintln(w, "| lib\t N\t delivered/s\t ×ours\t ×ref\t p50\t p99\t p99 ×ref\t B/idle conn\t lost\t dup\t events\t")
	fmt.Fprintln(w, "|---\t---\t---\t---\t---\t---\t---\t---\t---\t---\t---\t---\t")
	for _, r := range results {
		var o, f fanout.Result
		if ours != nil {
			o = *ours
		}
		if ref != nil {
			f = *ref
		}
		fmt.Fprintf(w, "| %s\t %d\t %.0f\t %s\t %s\t %v\t %v\t %s\t %.0f\t %d\t %d\t %d\t\n",
			r.Lib, r.N, r.DeliveredPerS, ratio(r.DeliveredPerS, o.DeliveredPerS), ratio(r.DeliveredPerS, f.DeliveredPerS),
			r.P50.Round(time.Microsecond), r.P99.Round(time.Microsecond), ratio(float64(r.P99), float64(f.P99)),
			r.BytesPerConn, r.Lost, r.Dup, r.Published)
		if r.Err != "" {
			fmt.Fprintf(w, "| %s\t %d\t error: %s\t\n", r.Lib, r.N, r.Err)
		}
	}
	_ = w.Flush()
}
