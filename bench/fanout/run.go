// Package fanout is the loopback fan-out load tool: it starts one
// library's server at a time on 127.0.0.1 in this process, and a child
// process (this program re-executed) that opens N plain HTTP/1.1 clients
// to it. It measures the events delivered per second under back-to-back
// publishing, the latency of the slowest client for single broadcasts, and
// the server's memory per idle connection, and checks that no client
// misses an event.
package fanout

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/b2ce5911/sse/bench"
)

// Config bounds a run.
type Config struct {
	Libs       []string      // rows; nil means bench.Libs
	N          []int         // client counts
	Duration   time.Duration // of the back-to-back phase
	MaxEvents  int           // bound of the back-to-back phase, in events published
	Broadcasts int           // single broadcasts timed for latency
	Window     int           // events a publisher may be ahead of the slowest client (at most MaxInFlight/N)
	// MemProfile, when not empty, is the prefix of heap profiles written
	// with the connections idle: MemProfile-lib-N.pprof.
	MemProfile string
	// IdleOnly stops each run after the idle measure.
	IdleOnly bool
	// H2, when positive, serves over TLS and HTTP/2, H2 streams per
	// connection; the clients are streams.
	H2      int
	Options bench.Options // of every server
}

// Result is one library at one N.
type Result struct {
	Lib           string
	N             int
	Published     int64         // events of the back-to-back phase
	DeliveredPerS float64       // client events per second in that phase
	P50, P99      time.Duration // slowest client's latency, single broadcasts
	BytesPerConn  float64       // server HeapInuse+StackInuse per idle connection
	StackPerConn  float64       // the StackInuse part of BytesPerConn
	// GoroutinesPerConn is the server process's goroutines per idle
	// connection, above those before the server started.
	GoroutinesPerConn float64
	Lost, Dup         int64 // events missed / duplicated, all clients, all phases
	FailedClients     int64 // clients whose stream ended early
	LatencySamples    int
	Err               string // why the run stopped early; the numbers are then partial
}

// payloadPad fills an event to about 100 bytes of data, like the JSON event
// of the other benchmarks.
var payloadPad = strings.Repeat("x", 64)

// Run measures every library at every N, one at a time, and prints a line
// per result to log as it goes.
func Run(ctx context.Context, cfg Config, log io.Writer) ([]Result, error) {
	if _, err := raiseFileLimit(); err != nil {
		fmt.Fprintln(log, "RLIMIT_NOFILE:", err)
	}
	libs := cfg.Libs
	if libs == nil {
		libs = bench.Libs
	}
	var results []Result
	run := 0
	for _, n := range cfg.N {
		for _, lib := range libs {
			run++
			r, err := runOne(ctx, cfg, lib, n, run)
			if err != nil {
				r.Err = err.Error()
				fmt.Fprintf(log, "%-9s N=%-6d error: %v\n", lib, n, err)
			}
			if ctx.Err() != nil {
				return results, ctx.Err()
			}
			fmt.Fprintf(log, "%-9s N=%-6d %12.0f delivered/s  p50 %-10v p99 %-10v %7.0f B/conn (stacks %5.0f, goroutines %.3f)  lost %d dup %d failed %d\n",
				r.Lib, r.N, r.DeliveredPerS, r.P50, r.P99, r.BytesPerConn, r.StackPerConn, r.GoroutinesPerConn, r.Lost, r.Dup, r.FailedClients)
			results = append(results, r)
		}
	}
	return results, nil
}

// memInUse returns HeapInuse+StackInuse after GC, and StackInuse.
func memInUse() (total, stacks uint64) {
	runtime.GC()
	runtime.GC()
	debug.FreeOSMemory()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse + m.StackInuse, m.StackInuse
}

// settle waits (up to 10 s) until the goroutines of a previous run are gone.
func settle(goroutines int) {
	for deadline := time.Now().Add(10 * time.Second); runtime.NumGoroutine() > goroutines && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
}

// SourceOffset shifts the loopback source address of every run's clients,
// so that two tools running at once do not share ports.
var SourceOffset int

// child is the parent's end of the clients' process.
type child struct {
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	min     atomic.Int64 // lowest sequence number every client (not slow) has
	replies chan string
}

func startChild(ctx context.Context, addr string, n, run int, opts childOpts) (*child, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	// Each run dials from its own loopback address, so that no run waits
	// for the ports of the one before.
	run += SourceOffset
	local := fmt.Sprintf("127.0.%d.%d", 1+run/250, 1+run%250)
	cmd := exec.CommandContext(ctx, exe)
	cmd.Env = append(os.Environ(),
		childEnv+"="+strings.Join([]string{addr, bench.StreamPath, strconv.Itoa(n), local}, " "),
		optsEnv+"="+opts.String())
	cmd.Stderr = os.Stderr
	c := &child{cmd: cmd, replies: make(chan string, 16)}
	if c.stdin, err = cmd.StdinPipe(); err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		defer close(c.replies)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			if v, ok := strings.CutPrefix(line, "m "); ok {
				m, _ := strconv.ParseInt(v, 10, 64)
				c.min.Store(m)
				continue
			}
			c.replies <- line
		}
	}()
	return c, nil
}

// ask sends an order and returns the reply, within timeout.
func (c *child) ask(order string, timeout time.Duration) (string, error) {
	if order != "" {
		if _, err := io.WriteString(c.stdin, order+"\n"); err != nil {
			return "", err
		}
	}
	select {
	case r, ok := <-c.replies:
		if !ok {
			return "", errors.New("the clients' process ended")
		}
		if strings.HasPrefix(r, "x ") {
			return "", errors.New("clients: " + r[2:])
		}
		return r, nil
	case <-time.After(timeout):
		return "", fmt.Errorf("no answer to %q in %v", order, timeout)
	}
}

// stop ends the child: stdin closes, then a kill after 5 s.
func (c *child) stop() {
	_ = c.stdin.Close()
	done := make(chan struct{})
	go func() { _ = c.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = c.cmd.Process.Kill()
		<-done
	}
}

// session is one library's server with n clients in a child process.
type session struct {
	srv        bench.Server
	hs         *http.Server
	c          *child
	n          int
	seq        int64 // the last event published
	goroutines int   // before the server started
	before     uint64
	stacks     uint64          // StackInuse in before
	ctx        context.Context // ends with the session
	cancel     context.CancelFunc
}

// open starts lib's server (over TLS and HTTP/2 when co.H2 is set) and a
// child with n clients, and waits until every one is connected. sndbuf,
// when positive, fixes the send buffer of the server's sockets, so that a
// slow client's lag reaches the server's memory instead of the kernel's.
// The session lasts at most 3 min, 8 min when co.long is set.
func open(ctx context.Context, lib string, n, run int, o bench.Options, co childOpts, sndbuf int) (*session, error) {
	s := &session{n: n, goroutines: runtime.NumGoroutine()}
	s.before, s.stacks = memInUse()
	srv, err := bench.NewServerWith(lib, o)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		srv.Close()
		return nil, err
	}
	if sndbuf > 0 {
		ln = sendBufferListener{ln.(*net.TCPListener), sndbuf}
	}
	s.srv = srv
	s.hs = &http.Server{Handler: srv, ReadHeaderTimeout: 10 * time.Second, ErrorLog: quietLog}
	if co.H2 > 0 {
		cert, err := selfSigned()
		if err != nil {
			_ = ln.Close()
			srv.Close()
			return nil, err
		}
		s.hs.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}}
		s.hs.HTTP2 = &http.HTTP2Config{MaxConcurrentStreams: co.H2}
		go func() { _ = s.hs.ServeTLS(ln, "", "") }()
	} else {
		go func() { _ = s.hs.Serve(ln) }()
	}
	limit := 3 * time.Minute
	if co.long {
		limit = 8 * time.Minute
	}
	s.ctx, s.cancel = context.WithTimeout(ctx, limit)
	ctx = s.ctx
	if s.c, err = startChild(ctx, ln.Addr().String(), n, run, co); err != nil {
		_ = s.hs.Close()
		srv.Close()
		s.cancel()
		return nil, err
	}
	if _, err := s.c.ask("", time.Minute); err != nil { // "c n": all connected
		s.close()
		return nil, err
	}
	return s, nil
}

// close ends the clients, then the server, and waits for their goroutines.
func (s *session) close() {
	s.c.stop()
	settle(s.goroutines + 8) // the handlers see their clients leave
	s.srv.Close()
	_ = s.hs.Close()
	settle(s.goroutines + 8)
	s.cancel()
}

// publishAt publishes the next event, stamped with t.
func (s *session) publishAt(t time.Time) error {
	s.seq++
	return s.srv.Publish([]byte(strconv.FormatInt(s.seq, 10) + " " + strconv.FormatInt(t.UnixNano(), 10) + " " + payloadPad))
}

func (s *session) publish() error { return s.publishAt(time.Now()) }

// probe publishes until every client has an event, then waits until all
// have the last one. Subscribers register asynchronously: the probes come
// ever less often, so as not to bury a slow library.
func (s *session) probe() error {
	wait := 20 * time.Millisecond
	for deadline := time.Now().Add(2 * time.Minute); s.c.min.Load() == 0; {
		if time.Now().After(deadline) {
			return errors.New("not every client got an event in 2 min")
		}
		if err := s.publish(); err != nil {
			return err
		}
		for end := time.Now().Add(wait); s.c.min.Load() == 0 && time.Now().Before(end); {
			time.Sleep(time.Millisecond)
		}
		wait = min(2*wait, time.Second)
	}
	return waitMin(s.c, s.seq)
}

// idle measures the server with every client connected and idle, after
// GC: HeapInuse+StackInuse, its StackInuse part, and goroutines, each per
// client, above what the process had before the server started.
func (s *session) idle() (bytes, stacks, goroutines float64) {
	time.Sleep(100 * time.Millisecond)
	after, stacksAfter := memInUse()
	g := runtime.NumGoroutine()
	n := float64(s.n)
	return (float64(after) - float64(s.before)) / n, (float64(stacksAfter) - float64(s.stacks)) / n, float64(g-s.goroutines) / n
}

// end asks the clients what they missed of 1..seq.
func (s *session) end() (endReport, error) {
	reply, err := s.c.ask(fmt.Sprint("e ", s.seq), 15*time.Second)
	if err != nil {
		return endReport{}, err
	}
	e, err := parseEndReport(reply)
	if err != nil {
		return e, fmt.Errorf("bad reply %q", reply)
	}
	return e, nil
}

// evicted is the server's count of subscribers cut off, or -1 when the
// library keeps none.
func (s *session) evicted() int64 {
	if e, ok := s.srv.(bench.Evicter); ok {
		return e.Evicted()
	}
	return -1
}

func runOne(ctx context.Context, cfg Config, lib string, n, run int) (Result, error) {
	r := Result{Lib: lib, N: n}
	s, err := open(ctx, lib, n, run, cfg.Options, childOpts{H2: cfg.H2}, 0)
	if err != nil {
		return r, err
	}
	defer s.close()
	if err := s.probe(); err != nil {
		return r, err
	}

	// Idle connections: the server's memory, everything delivered.
	r.BytesPerConn, r.StackPerConn, r.GoroutinesPerConn = s.idle()
	if cfg.MemProfile != "" {
		if err := writeHeapProfile(fmt.Sprintf("%s-%s-%d.pprof", cfg.MemProfile, lib, n)); err != nil {
			return r, err
		}
	}
	if cfg.IdleOnly {
		return r, r.end(s)
	}

	// Single broadcasts: the slowest client's latency.
	lats := make([]time.Duration, 0, cfg.Broadcasts)
	for range cfg.Broadcasts {
		if err := s.publish(); err != nil {
			return r, err
		}
		reply, err := s.c.ask(fmt.Sprint("w ", s.seq), 15*time.Second)
		if err != nil {
			return r, err
		}
		var got, worst int64
		var reached int
		if _, err := fmt.Sscanf(reply, "l %d %d %d", &got, &worst, &reached); err != nil || got != s.seq {
			return r, fmt.Errorf("bad reply %q", reply)
		}
		if reached != n {
			return r, fmt.Errorf("broadcast %d reached %d of %d clients in 10 s", s.seq, reached, n)
		}
		lats = append(lats, time.Duration(worst))
	}
	slices.Sort(lats)
	r.LatencySamples = len(lats)
	if len(lats) > 0 {
		r.P50 = lats[len(lats)/2]
		r.P99 = lats[min(len(lats)-1, len(lats)*99/100)]
	}

	// Back to back: publish as fast as the library takes it, never more
	// than the window ahead of the slowest client.
	window := int64(max(1, min(cfg.Window, MaxInFlight/n)))
	first := s.seq + 1
	start := time.Now()
	for time.Since(start) < cfg.Duration && s.seq-first+1 < int64(cfg.MaxEvents) {
		for s.seq-s.c.min.Load() >= window {
			if time.Since(start) > cfg.Duration+30*time.Second {
				return r, fmt.Errorf("the slowest client is stuck at %d of %d", s.c.min.Load(), s.seq)
			}
			time.Sleep(20 * time.Microsecond)
		}
		if err := s.publish(); err != nil {
			return r, err
		}
	}
	if err := waitMin(s.c, s.seq); err != nil {
		return r, err
	}
	elapsed := time.Since(start)
	r.Published = s.seq - first + 1
	r.DeliveredPerS = float64(r.Published) * float64(n) / elapsed.Seconds()
	return r, r.end(s)
}

// end fills in the loss check.
func (r *Result) end(s *session) error {
	e, err := s.end()
	r.Lost, r.Dup, r.FailedClients = e.Lost, e.Dup, e.Failed
	return err
}

// sendBufferListener sets the send buffer of every connection it accepts.
type sendBufferListener struct {
	*net.TCPListener
	size int
}

func (l sendBufferListener) Accept() (net.Conn, error) {
	c, err := l.AcceptTCP()
	if err != nil {
		return nil, err
	}
	_ = c.SetWriteBuffer(l.size)
	return c, nil
}

func writeHeapProfile(name string) error {
	f, err := os.Create(name)
	if err != nil {
		return err
	}
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

// MaxInFlight bounds the back-to-back window in deliveries: at large N
// the window is MaxInFlight/N events, for every library alike.
const MaxInFlight = 256 << 10

// waitMin waits (up to 1 min) until every client has event seq.
func waitMin(c *child, seq int64) error {
	for deadline := time.Now().Add(time.Minute); c.min.Load() < seq; {
		if time.Now().After(deadline) {
			return fmt.Errorf("the slowest client is at %d of %d after 1 min", c.min.Load(), seq)
		}
		time.Sleep(50 * time.Microsecond)
	}
	return nil
}
