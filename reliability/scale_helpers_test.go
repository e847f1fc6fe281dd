package reliability_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// The clients of TestScaleHTTP1 and TestScaleHTTP2 run in a child process:
// ten thousand client sockets and as many server sockets do not fit in one
// process's file limit.
//
// The child reads its arguments from the environment (scaleEnv*), opens
// the streams, and talks to the test on stdin and stdout, one line each way:
//
//	child: ready                 every stream has its response head
//	test:  check E               every stream must receive events 1..E
//	child: done OK BAD CONNS ERR streams that got 1..E once and in order,
//	                             those that did not, TCP connections
//	                             dialled, and the first error seen
//
// and it closes every stream and exits when its stdin ends.
const (
	scaleRole       = "scale-clients"
	scaleEnvAddr    = "SSE_SCALE_ADDR"
	scaleEnvStreams = "SSE_SCALE_STREAMS"
	scaleEnvProto   = "SSE_SCALE_PROTO" // "h1" or "h2"
)

func init() { children[scaleRole] = scaleChild }

// scaleStream is what one stream of the child received.
type scaleStream struct {
	last atomic.Int64 // seq of the newest event, in order from 1
	err  atomic.Pointer[error]
}

func (s *scaleStream) fail(err error) { s.err.CompareAndSwap(nil, &err) }

// scaleChild runs the clients' process.
func scaleChild() {
	fail := func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, "scale child: "+format+"\n", args...)
		os.Exit(1)
	}
	addr, proto := os.Getenv(scaleEnvAddr), os.Getenv(scaleEnvProto)
	n, err := strconv.Atoi(os.Getenv(scaleEnvStreams))
	if err != nil || addr == "" || (proto != "h1" && proto != "h2") {
		fail("bad arguments %q %q %q", addr, proto, os.Getenv(scaleEnvStreams))
	}
	if err := raiseNofile(); err != nil {
		fail("raising RLIMIT_NOFILE: %v", err)
	}
	// Whatever the test does, the child does not outlive it by much.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	streams := make([]scaleStream, n)
	var ready atomic.Int64
	var dials atomic.Int64
	var wg sync.WaitGroup
	var closers []func()
	var mu sync.Mutex
	addCloser := func(f func()) { mu.Lock(); closers = append(closers, f); mu.Unlock() }

	switch proto {
	case "h1":
		// A source address of this run's own: one address has about
		// 28,000 ports, and an earlier run's leave theirs in TIME_WAIT
		// for a minute.
		src := &net.TCPAddr{IP: net.IPv4(127, byte(1+rand.IntN(254)), byte(rand.IntN(256)), byte(2+rand.IntN(253)))}
		d := net.Dialer{Timeout: 10 * time.Second, LocalAddr: src}
		for i := range streams { // one dial at a time: the listen backlog is finite
			c, err := d.DialContext(ctx, "tcp", addr)
			if err == nil {
				_, err = c.Write(request(addr, "t", ""))
			}
			if err != nil {
				fail("dial %d from %v: %v", i, src.IP, err)
			}
			dials.Add(1)
			addCloser(func() { c.Close() })
			wg.Go(func() {
				resp, err := http.ReadResponse(bufio.NewReader(c), nil)
				if err == nil && resp.StatusCode != http.StatusOK {
					err = fmt.Errorf("status %s", resp.Status)
				}
				if err != nil {
					streams[i].fail(err)
					ready.Add(1)
					return
				}
				ready.Add(1)
				streams[i].read(resp.Body)
			})
		}
	case "h2":
		var p http.Protocols
		p.SetUnencryptedHTTP2(true) // h2c with prior knowledge
		tr := &http.Transport{Protocols: &p}
		base := tr.DialContext
		if base == nil {
			base = (&net.Dialer{Timeout: 10 * time.Second}).DialContext
		}
		tr.DialContext = func(ctx context.Context, network, a string) (net.Conn, error) {
			dials.Add(1)
			return base(ctx, network, a)
		}
		client := &http.Client{Transport: tr}
		sctx, stop := context.WithCancel(ctx)
		addCloser(stop) // ends every stream
		for i := range streams {
			opened := make(chan struct{})
			wg.Go(func() {
				req, _ := http.NewRequestWithContext(sctx, "GET", "http://"+addr+"/?topic=t", nil)
				req.Header.Set("Accept", "text/event-stream")
				resp, err := client.Do(req)
				if err == nil && resp.StatusCode != http.StatusOK {
					resp.Body.Close()
					err = fmt.Errorf("status %s", resp.Status)
				}
				ready.Add(1)
				close(opened)
				if err != nil {
					streams[i].fail(err)
					return
				}
				if resp.ProtoMajor != 2 {
					streams[i].fail(fmt.Errorf("protocol %s, want HTTP/2", resp.Proto))
				}
				defer resp.Body.Close()
				streams[i].read(resp.Body)
			})
			// One stream opens at a time, so that every request finds
			// the connections with the server's settings (1,000 streams
			// each) already read; requests sent together onto a
			// connection just dialled would each assume the 100 streams
			// of a connection whose settings have not come yet, and dial
			// hundreds more.
			<-opened
		}
	}

	out := bufio.NewWriter(os.Stdout)
	say := func(format string, args ...any) {
		fmt.Fprintf(out, format+"\n", args...)
		out.Flush()
	}
	for ready.Load() < int64(n) {
		if ctx.Err() != nil {
			fail("%d of %d streams ready", ready.Load(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	say("ready")

	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		var events int64
		if _, err := fmt.Sscanf(in.Text(), "check %d", &events); err != nil {
			fail("bad order %q", in.Text())
		}
		// Wait for every stream to have the last event, or to have failed.
		deadline := time.Now().Add(2 * time.Minute)
		for time.Now().Before(deadline) {
			pending := 0
			for i := range streams {
				if streams[i].last.Load() < events && streams[i].err.Load() == nil {
					pending++
				}
			}
			if pending == 0 {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		ok, bad, first := 0, 0, "none"
		for i := range streams {
			s := &streams[i]
			switch p := s.err.Load(); {
			case p != nil:
				bad++
				if first == "none" {
					first = strconv.Quote(fmt.Sprintf("stream %d: %v", i, *p))
				}
			case s.last.Load() != events:
				bad++
				if first == "none" {
					first = strconv.Quote(fmt.Sprintf("stream %d: last event %d of %d", i, s.last.Load(), events))
				}
			default:
				ok++
			}
		}
		say("done %d %d %d %s", ok, bad, dials.Load(), first)
	}
	// Stdin ended: the test is done with the streams.
	for _, f := range closers {
		f()
	}
	wg.Wait()
}

// read takes the events of body, which must be seq 1, 2, ..., until it
// ends. Any end is an error; the one the child causes when it closes the
// streams comes after its report.
func (s *scaleStream) read(body io.Reader) {
	err := readEvents(body, func(data []byte) error {
		seq, _, err := parseEventData(data)
		if err == nil && seq != s.last.Load()+1 {
			err = fmt.Errorf("received seq %d after %d", seq, s.last.Load())
		}
		s.last.Store(seq)
		return err
	})
	s.fail(fmt.Errorf("stream ended after event %d: %w", s.last.Load(), err))
}
