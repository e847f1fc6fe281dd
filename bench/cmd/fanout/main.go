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
//
// Other modes (-mode) measure one property each:
//
//	-mode idle -n 10000,19000        # memory and goroutines per idle connection only
//	-mode idle -h2 1000 -n 10000     # the same for HTTP/2 streams, 1,000 per TLS connection
//	-mode burst -n 1000 -events 10000 # 10,000 events back to back, no window
//	-mode nowindow -n 1000 -events 20000 # ours, default against Backpressure, resuming clients
//	-mode slow -n 1000 -rate 100 -duration 20s # one client reading at a tenth of the rate
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
	mode := flag.String("mode", "fanout", "fanout, idle, burst, nowindow or slow (see the package doc)")
	h2 := flag.Int("h2", 0, "serve HTTP/2 over TLS with this many streams per connection (fanout and idle modes)")
	events := flag.Int("events", 10000, "events of a burst (burst and nowindow modes)")
	rate := flag.Float64("rate", 100, "events per second of the slow mode's publisher")
	repeat := flag.Int("repeat", 1, "slow mode: runs without and with the slow client, alternated, per library")
	history := flag.Int("history", 0, "ours: Hub.History (0: its default; burst mode: at least -events)")
	hubBools := flag.String("hub", "", "ours: boolean Hub fields to set, as Name=true,Other=false")
	flag.IntVar(&fanout.SourceOffset, "source-offset", 0, "shift the clients' loopback source addresses, for two tools at once")
	flag.Parse()
	if *memprofilerate > 0 {
		runtime.MemProfileRate = *memprofilerate
	}

	opts := bench.Options{History: *history}
	if *hubBools != "" {
		opts.HubBools = map[string]bool{}
		for _, kv := range strings.Split(*hubBools, ",") {
			k, v, _ := strings.Cut(kv, "=")
			on, err := strconv.ParseBool(v)
			if err != nil {
				fmt.Fprintf(os.Stderr, "fanout: bad -hub %q\n", kv)
				return 2
			}
			opts.HubBools[k] = on
		}
	}
	cfg := fanout.Config{Libs: strings.Split(*libs, ","), Duration: *dur, Broadcasts: *broadcasts, Window: *window,
		MemProfile: *memprofile, IdleOnly: *mode == "idle", H2: *h2, Options: opts}
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
	fmt.Printf("<!-- %s -->\n", strings.Join(os.Args[1:], " "))
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
	switch *mode {
	case "fanout", "idle":
	case "burst", "nowindow":
		for _, n := range cfg.N {
			var rs []fanout.BurstResult
			if *mode == "burst" {
				rs = fanout.Burst(ctx, cfg.Libs, n, *events, opts, os.Stderr)
			} else {
				rs = fanout.NoWindow(ctx, n, *events, opts, os.Stderr)
			}
			printBurst(rs)
		}
		return 0
	case "slow":
		for _, n := range cfg.N {
			printSlow(fanout.Slow(ctx, cfg.Libs, n, *rate, *dur, *repeat, opts, os.Stderr))
		}
		return 0
	default:
		fmt.Fprintf(os.Stderr, "fanout: unknown -mode %q\n", *mode)
		return 2
	}
	code := 0
	for _, n := range cfg.N { // each N has its own bound on events
		c := cfg
		c.N, c.MaxEvents = []int{n}, max(1, *maxDeliveries/n)
		results, err := fanout.Run(ctx, c, os.Stderr)
		if cfg.IdleOnly {
			printIdle(results)
		} else {
			printTable(results)
		}
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

// printIdle prints the idle measure of one N.
func printIdle(results []fanout.Result) {
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 1, ' ', tabwriter.Debug)
	fmt.Fprintln(w, "| lib\t N\t B/idle conn\t of which stacks\t goroutines/conn\t lost\t failed\t")
	fmt.Fprintln(w, "|---\t---\t---\t---\t---\t---\t---\t")
	for _, r := range results {
		fmt.Fprintf(w, "| %s\t %d\t %.0f\t %.0f\t %.3f\t %d\t %d\t\n", r.Lib, r.N, r.BytesPerConn, r.StackPerConn, r.GoroutinesPerConn, r.Lost, r.FailedClients)
		if r.Err != "" {
			fmt.Fprintf(w, "| %s\t %d\t error: %s\t\n", r.Lib, r.N, r.Err)
		}
	}
	_ = w.Flush()
}

// printBurst prints bursts of one N.
func printBurst(rs []fanout.BurstResult) {
	var ref time.Duration
	for _, r := range rs {
		if r.Lib == bench.Reference {
			ref = r.AllHave
		}
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 1, ' ', tabwriter.Debug)
	fmt.Fprintln(w, "| lib\t settings\t N\t events\t publish took\t last client has last event\t ×ref\t evicted\t lost\t dup\t clients lossy\t clients failed\t reconnects\t resets\t")
	fmt.Fprintln(w, "|---\t---\t---\t---\t---\t---\t---\t---\t---\t---\t---\t---\t---\t---\t")
	for _, r := range rs {
		all, x := "never", "–"
		if r.AllHave > 0 {
			all = r.AllHave.Round(time.Millisecond).String()
			if ref > 0 {
				x = fmt.Sprintf("%.2f", float64(r.AllHave)/float64(ref))
			}
		}
		ev := "–"
		if r.Evicted >= 0 {
			ev = strconv.FormatInt(r.Evicted, 10)
		}
		fmt.Fprintf(w, "| %s\t %s\t %d\t %d\t %v\t %s\t %s\t %s\t %d\t %d\t %d\t %d\t %d\t %d\t\n",
			r.Lib, r.Settings, r.N, r.Events, r.Publish.Round(time.Millisecond), all, x, ev, r.End.Lost, r.End.Dup, r.End.Lossy, r.End.Failed, r.End.Reconnects, r.End.Resets)
		if r.Err != "" {
			fmt.Fprintf(w, "| %s\t error: %s\t\n", r.Lib, r.Err)
		}
	}
	_ = w.Flush()
}

// printSlow prints the slow-client runs of one N.
func printSlow(rs []fanout.SlowResult) {
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 1, ' ', tabwriter.Debug)
	fmt.Fprintln(w, "| lib\t N\t slow client\t rate/s\t events due\t published\t others' slowest p50\t p99\t p99 × without\t max\t server heap+stack\t × without\t slow behind at end\t evicted\t reconnects\t resets\t lost (others)\t dup\t")
	fmt.Fprintln(w, "|---\t---\t---\t---\t---\t---\t---\t---\t---\t---\t---\t---\t---\t---\t---\t---\t---\t---\t")
	var base fanout.SlowResult
	for _, r := range rs {
		if !r.Slow {
			base = r
		}
		ratio := func(a, b float64) string {
			if b == 0 || base.Lib != r.Lib {
				return "–"
			}
			return fmt.Sprintf("%.2f", a/b)
		}
		ev := "–"
		if r.Evicted >= 0 {
			ev = strconv.FormatInt(r.Evicted, 10)
		}
		fmt.Fprintf(w, "| %s\t %d\t %t\t %.0f\t %d\t %d\t %v\t %v\t %s\t %v\t %.0f\t %s\t %d\t %s\t %d\t %d\t %d\t %d\t\n",
			r.Lib, r.N, r.Slow, r.Rate, r.Events, r.Published, r.P50.Round(time.Microsecond), r.P99.Round(time.Microsecond), ratio(float64(r.P99), float64(base.P99)),
			r.Max.Round(time.Microsecond), r.HeapTotal, ratio(r.HeapTotal, base.HeapTotal), r.SlowBehind, ev, r.End.Reconnects, r.End.Resets, r.End.Lost, r.End.Dup)
		if r.Err != "" {
			fmt.Fprintf(w, "| %s\t error: %s\t\n", r.Lib, r.Err)
		}
	}
	_ = w.Flush()
}
