package fanout

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http/httputil"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// childEnv marks the re-executed process that runs the clients.
const childEnv = "SSEBENCH_FANOUT_CHILD"

// childLifetime bounds a child's life, whatever its parent does.
const childLifetime = 5 * time.Minute

// IsChild reports whether this process was started by Run to be the
// clients' process. A main (or TestMain) that runs Run must call Child and
// exit when it is.
func IsChild() bool { return os.Getenv(childEnv) != "" }

// target is the event the parent waits for, and reached counts the
// clients that have it: waiting costs one atomic load, not a scan of N.
var target, reached atomic.Int64

// client is one plain HTTP/1.1 connection and what it received.
type client struct {
	// last is the sequence number of the newest event, 0 before the first.
	// It lives in one array for all clients, which the flow control scans
	// every 200 µs: N cache misses per scan would cost a core at N=10,000.
	last *atomic.Int64
	lat  atomic.Int64 // latency of that event, in ns
	lost atomic.Int64 // events skipped between two received
	dup  atomic.Int64 // events received twice or out of order
	// counted is the target this client was last counted in reached for.
	counted atomic.Int64
	err     atomic.Pointer[error]
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
	if _, err := raiseFileLimit(); err != nil {
		fmt.Fprintln(os.Stderr, "fanout child: RLIMIT_NOFILE:", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), childLifetime)
	defer cancel()
	out := &syncWriter{w: bufio.NewWriter(os.Stdout)}
	clients, lasts, conns, err := dialAll(ctx, args[0], args[1], args[3], n)
	defer func() {
		for _, c := range conns {
			_ = c.Close()
		}
	}()
	if err != nil {
		out.printf("x %v", err)
		return 1
	}
	out.printf("c %d", n)
	go report(ctx, lasts, out)
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
		var seq int64
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
			var lost, dup, failed int64
			for _, c := range clients {
				lost += c.lost.Load() + max(0, seq-c.last.Load())
				dup += c.dup.Load()
				if c.err.Load() != nil {
					failed++
				}
			}
			out.printf("r %d %d %d", lost, dup, failed)
		}
	}
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

// dialAll opens n connections from localIP, 64 at a time, and starts a
// reader on each; it returns the clients and the array of their last fields.
func dialAll(ctx context.Context, addr, path, localIP string, n int) ([]*client, []atomic.Int64, []net.Conn, error) {
	clients := make([]*client, n)
	conns := make([]net.Conn, n)
	last := make([]atomic.Int64, n)
	d := net.Dialer{Timeout: 10 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(localIP)}}
	req := []byte("GET " + path + " HTTP/1.1\r\nHost: " + addr + "\r\nAccept: text/event-stream\r\n\r\n")
	var wg sync.WaitGroup
	var firstErr atomic.Pointer[error]
	sem := make(chan struct{}, 64)
	for i := range n {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			c, err := d.DialContext(ctx, "tcp", addr)
			if err == nil {
				if tc, ok := c.(*net.TCPConn); ok {
					_ = tc.SetLinger(0) // no TIME_WAIT: runs follow each other on the same ports
				}
				_, err = c.Write(req)
			}
			if err != nil {
				firstErr.CompareAndSwap(nil, &err)
				if c != nil {
					_ = c.Close()
				}
				return
			}
			conns[i] = c
			clients[i] = &client{last: &last[i]}
			go clients[i].read(c)
		}()
	}
	wg.Wait()
	if p := firstErr.Load(); p != nil {
		var open []net.Conn
		for _, c := range conns {
			if c != nil {
				open = append(open, c)
			}
		}
		return nil, nil, open, *p
	}
	return clients, last, conns, nil
}

// read is a minimal client: the response head, the chunked body, and the
// data lines of each event ("seq unixnano padding").
func (c *client) read(conn net.Conn) {
	err := c.readStream(conn)
	c.err.Store(&err)
}

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
	var seq, ts int64
	has := false
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
			if has {
				c.dispatch(seq, ts)
			}
			has = false
			continue
		}
		if data, ok := bytes.CutPrefix(line, []byte("data: ")); ok {
			seq, ts, has = parseData(data)
		}
	}
}

func (c *client) dispatch(seq, ts int64) {
	now := time.Now().UnixNano()
	last := c.last.Load()
	switch {
	case last == 0: // the first event: counting starts here
	case seq <= last:
		c.dup.Add(1)
		return
	case seq > last+1:
		c.lost.Add(seq - last - 1)
	}
	c.lat.Store(now - ts)
	c.last.Store(seq)
	if t := target.Load(); t != 0 && seq >= t && c.counted.Swap(t) != t {
		reached.Add(1)
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
