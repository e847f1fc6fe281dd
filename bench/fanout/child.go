package fanout

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// childEnv marks the re-executed process that runs the clients, and
// carries "addr path n localIP"; optsEnv carries its childOpts.
const (
	childEnv = "SSEBENCH_FANOUT_CHILD"
	optsEnv  = "SSEBENCH_FANOUT_OPTS"
)

// childLifetime bounds a child's life, whatever its parent does.
const childLifetime = 10 * time.Minute

// childOpts are the ways the clients of a mode differ from plain ones.
type childOpts struct {
	// H2 is the number of streams per HTTP/2 connection (over TLS); 0
	// means one plain HTTP/1.1 connection per client.
	H2 int
	// Resume makes a client whose stream ends reconnect with the
	// Last-Event-ID of the last event it had (HTTP/1.1 only).
	Resume bool
	// Slow clients, the first ones, dispatch at most SlowRate events per
	// second, with a 4 KiB receive buffer, so that their lag reaches the
	// server; the flow control and the latency record leave them out.
	Slow     int
	SlowRate float64
	long     bool // the parent's alone: the session may last 8 min
}

func (o childOpts) String() string {
	return fmt.Sprintf("%d %t %d %g", o.H2, o.Resume, o.Slow, o.SlowRate)
}

func parseChildOpts(s string) (o childOpts, err error) {
	if s == "" {
		return o, nil
	}
	_, err = fmt.Sscanf(s, "%d %t %d %g", &o.H2, &o.Resume, &o.Slow, &o.SlowRate)
	return o, err
}

// IsChild reports whether this process was started by Run to be the
// clients' process. A main (or TestMain) that runs Run must call Child and
// exit when it is.
func IsChild() bool { return os.Getenv(childEnv) != "" }

// target is the event the parent waits for, and reached counts the
// clients that have it: waiting costs one atomic load, not a scan of N.
var target, reached atomic.Int64

// latencies records, per event from latBase on, the latency of the
// slowest (not slow) client to receive it, in ns; nil when off.
var (
	latencies atomic.Pointer[[]atomic.Int64]
	latBase   atomic.Int64
)

// client is one stream and what it received.
type client struct {
	// last is the sequence number of the newest event, 0 before the first.
	// It lives in one array for all clients, which the flow control scans
	// every 200 µs: N cache misses per scan would cost a core at N=10,000.
	last *atomic.Int64
	lat  atomic.Int64 // latency of that event, in ns
	lost atomic.Int64 // events skipped between two received
	dup  atomic.Int64 // events received twice or out of order
	// counted is the target this client was last counted in reached for.
	counted    atomic.Int64
	err        atomic.Pointer[error]
	reconnects atomic.Int64 // streams opened again after one ended
	resets     atomic.Int64 // reset events: the server had not kept what it missed

	// Owned by the client's goroutine.
	id   string // of the last event with an id
	slow bool   // dispatches at most gap apart
	gap  time.Duration
	next time.Time // when a slow client may dispatch again
}

// Child runs the clients: it reads its orders on stdin and answers on
// stdout (see Run), and returns the process's exit code.
func Child() int {
	args := strings.Fields(os.Getenv(childEnv)) // addr path n localIP
	if len(args) != 4 {
		fmt.Fprintln(os.Stderr, "fanout child: bad arguments", args)
		return 2
	}
	n, err := strconv.Atoi(args[2])
	if err != nil {
		fmt.Fprintln(os.Stderr, "fanout child:", err)
		return 2
	}
	opts, err := parseChildOpts(os.Getenv(optsEnv))
	if err != nil {
		fmt.Fprintln(os.Stderr, "fanout child: options:", err)
		return 2
	}
	if _, err := raiseFileLimit(); err != nil {
		fmt.Fprintln(os.Stderr, "fanout child: RLIMIT_NOFILE:", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), childLifetime)
	defer cancel()
	out := &syncWriter{w: bufio.NewWriter(os.Stdout)}
	d := &dialer{addr: args[0], path: args[1], opts: opts,
		d: net.Dialer{Timeout: 10 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(args[3])}}}
	clients, lasts, closers, err := d.all(ctx, n)
	defer func() {
		for _, c := range closers {
			_ = c.Close()
		}
	}()
	if err != nil {
		out.printf("x %v", err)
		return 1
	}
	out.printf("c %d", n)
	go report(ctx, lasts[min(opts.Slow, n-1):], out)
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	for {
		var line string
		var ok bool
		select {
		case line, ok = <-lines:
		case <-ctx.Done():
			return 1
		}
		if !ok {
			return 0 // the parent is done
		}
		var cmd string
		var seq, size int64
		if _, err := fmt.Sscan(line, &cmd, &seq); err != nil {
			out.printf("x bad order %q", line)
			continue
		}
		switch cmd {
		case "w": // wait until all have seq; answer the slowest latency
			reached.Store(0)
			target.Store(seq)
			for _, c := range clients { // those that had it before target was set
				if c.last.Load() >= seq && c.counted.Swap(seq) != seq {
					reached.Add(1)
				}
			}
			deadline := time.Now().Add(10 * time.Second)
			for reached.Load() < int64(len(clients)) && time.Now().Before(deadline) {
				time.Sleep(50 * time.Microsecond)
			}
			target.Store(0)
			worst, reached := int64(0), 0
			for _, c := range clients {
				if c.last.Load() >= seq {
					reached++
					worst = max(worst, c.lat.Load())
				}
			}
			out.printf("l %d %d %d", seq, worst, reached)
		case "e": // the end: count what each client missed of 1..seq
			var e endReport
			for _, c := range clients {
				if c.err.Load() != nil {
					e.Failed++
				}
				e.Reconnects += c.reconnects.Load()
				e.Resets += c.resets.Load()
				if c.slow { // behind, not lost
					e.SlowLost += c.lost.Load()
					e.SlowLast = c.last.Load()
					continue
				}
				lost := c.lost.Load() + max(0, seq-c.last.Load())
				e.Lost += lost
				e.Dup += c.dup.Load()
				if lost > 0 || c.dup.Load() > 0 {
					e.Lossy++
				}
			}
			out.printf("r %s", e)
		case "t": // record the slowest latency of each event from seq on
			if _, err := fmt.Sscan(line, &cmd, &seq, &size); err != nil || size <= 0 {
				out.printf("x bad order %q", line)
				continue
			}
			l := make([]atomic.Int64, size)
			latBase.Store(seq)
			latencies.Store(&l)
			out.printf("ok")
		case "q": // the record's quantiles, in ns: events p50 p99 max
			p := latencies.Swap(nil)
			var ls []int64
			if p != nil {
				for i := range *p {
					if v := (*p)[i].Load(); v > 0 {
						ls = append(ls, v)
					}
				}
			}
			slices.Sort(ls)
			if len(ls) == 0 {
				out.printf("q 0 0 0 0")
				continue
			}
			out.printf("q %d %d %d %d", len(ls), ls[len(ls)/2], ls[min(len(ls)-1, len(ls)*99/100)], ls[len(ls)-1])
		}
	}
}

// endReport is the child's count at the end of a run, over all clients.
type endReport struct {
	Lost, Dup  int64 // events missed / duplicated or out of order, by the clients not slow
	Lossy      int64 // clients (not slow) that missed or duplicated any
	Failed     int64 // clients whose stream ended (and, resuming, could not reopen)
	Reconnects int64 // streams reopened with Last-Event-ID
	Resets     int64 // reset events received
	SlowLast   int64 // newest event of the (last) slow client
	SlowLost   int64 // events the slow clients skipped (not those they have yet to read)
}

func (e endReport) String() string {
	return fmt.Sprintf("%d %d %d %d %d %d %d %d", e.Lost, e.Dup, e.Lossy, e.Failed, e.Reconnects, e.Resets, e.SlowLast, e.SlowLost)
}

func parseEndReport(s string) (e endReport, err error) {
	_, err = fmt.Sscanf(s, "r %d %d %d %d %d %d %d %d", &e.Lost, &e.Dup, &e.Lossy, &e.Failed, &e.Reconnects, &e.Resets, &e.SlowLast, &e.SlowLost)
	return e, err
}

// report prints the lowest sequence number all clients have whenever it
// grows: the publisher's flow control.
func report(ctx context.Context, lasts []atomic.Int64, out *syncWriter) {
	t := time.NewTicker(200 * time.Microsecond)
	defer t.Stop()
	last := int64(-1)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		m := int64(1<<63 - 1)
		for i := range lasts {
			m = min(m, lasts[i].Load())
		}
		if m != last {
			last = m
			out.printf("m %d", m)
		}
	}
}

// dialer opens the clients' streams.
type dialer struct {
	addr, path string
	opts       childOpts
	d          net.Dialer
}

// all opens n streams, 64 connections at a time, and starts a reader on
// each; it returns the clients, the array of their last fields, and what
// to close at the end.
func (d *dialer) all(ctx context.Context, n int) ([]*client, []atomic.Int64, []io.Closer, error) {
	clients := make([]*client, n)
	last := make([]atomic.Int64, n)
	for i := range clients {
		clients[i] = &client{last: &last[i], slow: i < d.opts.Slow}
		if clients[i].slow {
			clients[i].gap = time.Duration(float64(time.Second) / max(d.opts.SlowRate, 0.1))
		}
	}
	conns := n
	if d.opts.H2 > 0 {
		conns = (n + d.opts.H2 - 1) / d.opts.H2
	}
	closers := make([]io.Closer, conns)
	var wg sync.WaitGroup
	var firstErr atomic.Pointer[error]
	sem := make(chan struct{}, 64)
	for i := range conns {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			var err error
			if d.opts.H2 > 0 {
				var cc *http.ClientConn
				if cc, err = d.h2(ctx); err == nil {
					closers[i] = cc
					for _, c := range clients[i*d.opts.H2 : min(n, (i+1)*d.opts.H2)] {
						go c.readH2(ctx, cc, d)
					}
				}
			} else {
				var conn net.Conn
				if conn, err = d.h1(ctx, clients[i]); err == nil {
					closers[i] = conn
					go clients[i].readH1(ctx, conn, d)
				}
			}
			if err != nil {
				firstErr.CompareAndSwap(nil, &err)
			}
		}()
	}
	wg.Wait()
	closers = slices.DeleteFunc(closers, func(c io.Closer) bool { return c == nil })
	if p := firstErr.Load(); p != nil {
		return nil, nil, closers, *p
	}
	return clients, last, closers, nil
}

// h1 dials one HTTP/1.1 connection for c and sends its request, with c's
// Last-Event-ID when it has one.
func (d *dialer) h1(ctx context.Context, c *client) (net.Conn, error) {
	dd := d.d
	if c.slow {
		dd.Control = smallReceiveBuffer
	}
	conn, err := dd.DialContext(ctx, "tcp", d.addr)
	if err != nil {
		return nil, err
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0) // no TIME_WAIT: runs follow each other on the same ports
	}
	req := "GET " + d.path + " HTTP/1.1\r\nHost: " + d.addr + "\r\nAccept: text/event-stream\r\n"
	if c.id != "" {
		req += "Last-Event-ID: " + c.id + "\r\n"
	}
	if _, err := io.WriteString(conn, req+"\r\n"); err != nil {
		_ = conn.Close()
		return nil, err
	}
	return conn, nil
}

// h2 opens one HTTP/2 connection over TLS.
func (d *dialer) h2(ctx context.Context) (*http.ClientConn, error) {
	var p http.Protocols
	p.SetHTTP2(true)
	t := &http.Transport{
		Protocols:       &p,
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, // the parent's own certificate, on loopback
		DialContext:     d.d.DialContext,
	}
	return t.NewClientConn(ctx, "https", d.addr)
}

// readH1 reads c's HTTP/1.1 stream, and opens it again while resuming.
func (c *client) readH1(ctx context.Context, conn net.Conn, d *dialer) {
	for {
		err := c.readStream(conn)
		_ = conn.Close()
		if logGaps && !errors.Is(err, net.ErrClosed) { // not the child's own end
			fmt.Fprintf(os.Stderr, "stream ended at %d, id %q: %v\n", c.last.Load(), c.id, err)
		}
		if !d.opts.Resume || ctx.Err() != nil {
			c.err.Store(&err)
			return
		}
		if conn, err = d.h1(ctx, c); err != nil {
			c.err.Store(&err)
			return
		}
		c.reconnects.Add(1)
	}
}

// readH2 opens c's stream on cc and reads it.
func (c *client) readH2(ctx context.Context, cc *http.ClientConn, d *dialer) {
	err := func() error {
		req, err := http.NewRequestWithContext(ctx, "GET", "https://"+d.addr+d.path, nil)
		if err != nil {
			return err
		}
		req.Header.Set("Accept", "text/event-stream")
		resp, err := cc.RoundTrip(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.ProtoMajor != 2 {
			return fmt.Errorf("status %s over %s", resp.Status, resp.Proto)
		}
		return c.readEvents(bufio.NewReaderSize(resp.Body, 2048))
	}()
	c.err.Store(&err)
}

// readStream is a minimal HTTP/1.1 client: the response head, then the
// (chunked) body.
func (c *client) readStream(conn net.Conn) error {
	br := bufio.NewReaderSize(conn, 2048)
	status, err := br.ReadSlice('\n')
	if err != nil {
		return err
	}
	if !bytes.Contains(status, []byte(" 200 ")) {
		return fmt.Errorf("status %q", status)
	}
	chunked := false
	for {
		h, err := br.ReadSlice('\n')
		if err != nil {
			return err
		}
		if len(bytes.TrimSpace(h)) == 0 {
			break
		}
		if bytes.HasPrefix(bytes.ToLower(h), []byte("transfer-encoding:")) && bytes.Contains(h, []byte("chunked")) {
			chunked = true
		}
	}
	body := br
	if chunked {
		body = bufio.NewReaderSize(httputil.NewChunkedReader(br), 2048)
	}
	return c.readEvents(body)
}

// readEvents reads the events of a body: their id and type, and the data
// line of each ("seq unixnano padding").
func (c *client) readEvents(body *bufio.Reader) error {
	var seq, ts int64
	var id []byte // of the event being read: it counts once the event ends
	has, reset, hasID := false, false, false
	for {
		line, err := body.ReadSlice('\n')
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 {
			if hasID && string(id) != c.id {
				c.id = string(id)
			}
			if has {
				c.dispatch(seq, ts)
			}
			if reset {
				c.resets.Add(1)
			}
			has, reset, hasID = false, false, false
			continue
		}
		if data, ok := bytes.CutPrefix(line, []byte("data: ")); ok {
			seq, ts, has = parseData(data)
		} else if v, ok := bytes.CutPrefix(line, []byte("id: ")); ok {
			id, hasID = append(id[:0], v...), true
		} else if bytes.Equal(line, []byte("event: reset")) {
			reset = true
		}
	}
}

func (c *client) dispatch(seq, ts int64) {
	now := time.Now()
	if c.slow {
		if wait := c.next.Sub(now); wait > 0 {
			time.Sleep(wait)
			now = time.Now()
		}
		c.next = now.Add(c.gap)
	}
	last := c.last.Load()
	switch {
	case last == 0: // the first event: counting starts here
	case seq <= last:
		c.dup.Add(1)
		return
	case seq > last+1:
		c.lost.Add(seq - last - 1)
		if logGaps {
			fmt.Fprintf(os.Stderr, "gap %d..%d id %q reconnects %d\n", last+1, seq-1, c.id, c.reconnects.Load())
		}
	}
	lat := now.UnixNano() - ts
	c.lat.Store(lat)
	c.last.Store(seq)
	if t := target.Load(); t != 0 && seq >= t && c.counted.Swap(t) != t {
		reached.Add(1)
	}
	if p := latencies.Load(); p != nil && !c.slow {
		if i := seq - latBase.Load(); i >= 0 && i < int64(len(*p)) {
			for v := &(*p)[i]; ; {
				old := v.Load()
				if lat <= old || v.CompareAndSwap(old, lat) {
					break
				}
			}
		}
	}
}

// parseData reads "seq unixnano ..." without allocating.
func parseData(b []byte) (seq, ts int64, ok bool) {
	seq, b, ok1 := parseInt(b)
	ts, _, ok2 := parseInt(b)
	return seq, ts, ok1 && ok2
}

// parseInt reads the decimal number that b starts with, and skips the
// space after it.
func parseInt(b []byte) (int64, []byte, bool) {
	n, i := int64(0), 0
	for ; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
		n = n*10 + int64(b[i]-'0')
	}
	if i == 0 {
		return 0, b, false
	}
	if i < len(b) && b[i] == ' ' {
		i++
	}
	return n, b[i:], true
}

// syncWriter prints whole lines from many goroutines.
type syncWriter struct {
	mu sync.Mutex
	w  *bufio.Writer
}

func (s *syncWriter) printf(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fmt.Fprintf(s.w, format+"\n", args...)
	_ = s.w.Flush()
}

// logGaps, set by SSEBENCH_FANOUT_GAPS=1, makes the child print every gap
// a client sees, with the client's id and reconnections, and every end of
// an HTTP/1.1 stream, to stderr.
var logGaps = os.Getenv("SSEBENCH_FANOUT_GAPS") != ""
