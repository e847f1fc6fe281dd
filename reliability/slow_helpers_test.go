package reliability_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"runtime"
	"runtime/metrics"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/b2ce5911/sse"
)

// quietLogger drops the Hub's eviction warnings, which these tests cause
// on purpose.
var quietLogger = slog.New(slog.DiscardHandler)

// eventData is the data of event seq: "seq unixnano" then padding up to
// size bytes, so that a reader can tell order and latency.
func eventData(seq int64, at time.Time, size int) []byte {
	b := strconv.AppendInt(nil, seq, 10)
	b = append(b, ' ')
	b = strconv.AppendInt(b, at.UnixNano(), 10)
	b = append(b, ' ')
	for len(b) < size {
		b = append(b, 'x')
	}
	return b
}

// parseEventData reads what eventData wrote; it looks at the two numbers
// only, not at the padding.
func parseEventData(b []byte) (seq, at int64, err error) {
	f1, rest, _ := bytes.Cut(b, []byte(" "))
	f2, _, _ := bytes.Cut(rest, []byte(" "))
	if seq, err = strconv.ParseInt(string(f1), 10, 64); err == nil {
		at, err = strconv.ParseInt(string(f2), 10, 64)
	}
	if err != nil {
		return 0, 0, fmt.Errorf("event data %.40q: want \"seq unixnano ...\"", b)
	}
	return seq, at, nil
}

// request is the raw HTTP/1.1 request of a stream of topic, resuming
// after lastID when it is not empty.
func request(addr, topic, lastID string) []byte {
	r := "GET /?topic=" + topic + " HTTP/1.1\r\nHost: " + addr + "\r\nAccept: text/event-stream\r\n"
	if lastID != "" {
		r += "Last-Event-ID: " + lastID + "\r\n"
	}
	return []byte(r + "\r\n")
}

// dialStream opens a TCP connection to addr and sends the request of a
// stream; it does not read. rcvbuf > 0 sets SO_RCVBUF before the
// connection is made, so that the receive window is small from the start.
func dialStream(ctx context.Context, addr, topic, lastID string, rcvbuf int) (net.Conn, error) {
	d := net.Dialer{Timeout: 10 * time.Second}
	if rcvbuf > 0 {
		d.Control = func(_, _ string, rc syscall.RawConn) error {
			var serr error
			if err := rc.Control(func(fd uintptr) {
				serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, rcvbuf)
			}); err != nil {
				return err
			}
			return serr
		}
	}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if _, err := c.Write(request(addr, topic, lastID)); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// streamBody reads the response head of a stream sent by dialStream and
// returns its body.
func streamBody(c net.Conn) (io.ReadCloser, error) {
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, fmt.Errorf("status %s", resp.Status)
	}
	return resp.Body, nil
}

// streamDecoder returns a Decoder of the body of a stream sent by
// dialStream.
func streamDecoder(c net.Conn) (*sse.Decoder, error) {
	body, err := streamBody(c)
	if err != nil {
		return nil, err
	}
	return sse.NewDecoder(body), nil
}

// smallSendBuffer is a listener whose connections have a send buffer of
// the given size. Linux grows a socket's send buffer up to tcp_wmem's
// maximum (4 MiB here) while the peer's window is closed, so a client that
// stops reading would otherwise absorb megabytes before the server's
// writes block.
type smallSendBuffer struct {
	net.Listener
	size   int
	closed *atomic.Int64 // when set, counts the connections the server closed
}

func (l smallSendBuffer) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		if err := tc.SetWriteBuffer(l.size); err != nil {
			c.Close()
			return nil, err
		}
		if l.closed != nil {
			return &countedConn{TCPConn: tc, closed: l.closed}, nil
		}
	}
	return c, err
}

// countedConn counts, once, that the server closed it: a Hub that detached
// the stream closes it itself, where http.Server's ConnState does not see
// it. The embedded TCPConn keeps writev and the descriptor for the Hub.
type countedConn struct {
	*net.TCPConn
	once   sync.Once
	closed *atomic.Int64
}

func (c *countedConn) Close() error {
	c.once.Do(func() { c.closed.Add(1) })
	return c.TCPConn.Close()
}

// histogram counts latencies in buckets 2% wide; one reader owns it.
type histogram [1200]uint32

const histBase = 1.02

func (h *histogram) add(d time.Duration) {
	i := 0
	if d > 1 {
		i = min(int(math.Log(float64(d))/math.Log(histBase)), len(h)-1)
	}
	h[i]++
}

func (h *histogram) merge(o *histogram) {
	for i := range h {
		h[i] += o[i]
	}
}

// quantile returns the latency below which a fraction q of the samples
// lie, to within a bucket (2%).
func (h *histogram) quantile(q float64) time.Duration {
	var total uint64
	for _, n := range h {
		total += uint64(n)
	}
	want := uint64(math.Ceil(q * float64(total)))
	var sum uint64
	for i, n := range h {
		sum += uint64(n)
		if sum >= want && n > 0 {
			return time.Duration(math.Pow(histBase, float64(i)+0.5))
		}
	}
	return 0
}

// liveHeap collects garbage (twice, so that sync.Pools are emptied too)
// and returns the bytes of heap objects the collection found alive.
func liveHeap() uint64 {
	runtime.GC()
	runtime.GC()
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// mib formats bytes in MiB.
func mib(b uint64) string { return strconv.FormatFloat(float64(b)/(1<<20), 'f', 1, 64) + "MiB" }

// checkSeqs reports the first place where seqs is not from, from+1, ...
func checkSeqs(seqs []int64, from int64) error {
	for i, s := range seqs {
		if s != from+int64(i) {
			return fmt.Errorf("event %d is seq %d, want %d (got %v...)", i, s, from+int64(i), seqs[max(0, i-3):min(len(seqs), i+3)])
		}
	}
	return nil
}

// readAll decodes events until the stream ends or one has seq until; it
// returns their seqs and the decoder's last event ID, and the error that
// ended the stream (nil when until was reached).
func readAll(d *sse.Decoder, until int64) (seqs []int64, lastID string, err error) {
	for {
		e, err := d.Decode()
		if err != nil {
			return seqs, d.LastEventID(), err
		}
		seq, _, perr := parseEventData(e.Bytes())
		if perr != nil {
			return seqs, d.LastEventID(), perr
		}
		seqs = append(seqs, seq)
		if seq == until {
			return seqs, d.LastEventID(), nil
		}
	}
}

// readEvents is a light event-stream reader for the many clients of a
// test, with fixed buffers (for events up to 8 KiB): it calls event with the data of every event
// that has some (the slice is reused), and returns why it stopped: the
// reader's error, or the first error of event.
func readEvents(body io.Reader, event func(data []byte) error) error {
	br := bufio.NewReaderSize(body, 8<<10)
	data := make([]byte, 0, 8<<10)
	has := false
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return err // a long line (bufio.ErrBufferFull) is not one of ours
		}
		line = bytes.TrimRight(line, "\r\n")
		switch {
		case len(line) == 0:
			if has {
				if err := event(data); err != nil {
					return err
				}
			}
			has, data = false, data[:0]
		case bytes.HasPrefix(line, []byte("data: ")):
			data, has = append(data, line[len("data: "):]...), true
		}
	}
}
