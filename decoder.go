package sse

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math"
	"math/bits"
	"strconv"
	"time"
	"unsafe"
)

// DefaultMaxEventSize is the largest event a Decoder accepts unless told
// otherwise: room for the 10 MB events that real services send.
const DefaultMaxEventSize = 16 << 20

// ErrEventTooLarge is returned (wrapped, with the limit) when an event's data
// or a single line of the stream exceeds the decoder's maximum event size.
// The decoder stops there: the events before it were all returned.
var ErrEventTooLarge = errors.New("sse: event too large")

const (
	initialBufSize = 32 << 10
	// Payloads up to maxArenaItem share arenaSize blocks; larger ones get
	// their own allocation, which they amortise anyway.
	arenaSize    = 32 << 10
	maxArenaItem = 4 << 10
	eventBlock   = 16
	// lineSlack lets a line hold a field name and line ending on top of a
	// value of the maximum event size.
	lineSlack = 64
)

// Decoder reads events from a stream, following the WHATWG rules for
// interpreting an event stream: a byte order mark is dropped once; CR, LF
// and CRLF end lines, also when a CRLF is split between two reads; one space
// after the colon is dropped; comments and unknown fields are ignored; an id
// containing NUL is ignored and an empty id resets the last event ID; retry
// is taken only when it is all ASCII digits; a block without data is not
// dispatched; and an event cut off by the end of the stream is discarded
// together with its id.
//
// Bytes are passed through as they are: unlike a browser, the Decoder does
// not replace invalid UTF-8 with U+FFFD.
//
// A Decoder is not safe for concurrent use. Its zero value is not usable:
// create one with [NewDecoder].
type Decoder struct {
	r       io.Reader
	maxSize int
	comment func(string)

	buf      []byte
	pos, end int   // the unread bytes are buf[pos:end]
	err      error // sticky read or size error, returned once buf is drained
	skipLF   bool  // the last line ended in CR: an LF right after it belongs to it
	bomDone  bool
	empty    int // consecutive reads that returned nothing

	scan int // buf[pos:scan] holds no line ending: a partial line is not searched twice

	data  []byte // data buffer, each line followed by LF
	typ   []byte // event type buffer
	idBuf []byte // last event ID buffer

	lastID   string // last event ID string, updated at each dispatch
	lastType string
	retry    time.Duration
	hasRetry bool

	events []Event
	arena  []byte
}

// NewDecoder returns a Decoder that reads from r with its own buffering.
func NewDecoder(r io.Reader) *Decoder {
	return &Decoder{r: r, maxSize: DefaultMaxEventSize}
}

// SetMaxEventSize limits the data of one event, and the length of one line,
// to n bytes; n <= 0 restores [DefaultMaxEventSize]. Memory use stays within
// about three times the limit.
func (d *Decoder) SetMaxEventSize(n int) {
	if n <= 0 {
		n = DefaultMaxEventSize
	}
	d.maxSize = n
}

// SetLastEventID sets the last event ID that events carry until the stream
// sends an id of its own: a reconnecting client passes on the ID it had.
func (d *Decoder) SetLastEventID(id string) {
	d.lastID = id
	d.idBuf = append(d.idBuf[:0], id...)
}

// LastEventID returns the last event ID as of the last blank line: the value
// a client sends as Last-Event-ID when it reconnects. An id in an event that
// the stream did not finish is not included.
func (d *Decoder) LastEventID() string { return d.lastID }

// Retry returns the reconnection delay the stream asked for in its latest
// valid retry field, and whether it sent one. Values beyond what a
// time.Duration holds are clamped to its maximum.
func (d *Decoder) Retry() (time.Duration, bool) { return d.retry, d.hasRetry }

// OnComment makes the decoder call f with the text of every comment line,
// without the colon and one space after it. f runs inside Decode.
func (d *Decoder) OnComment(f func(text string)) { d.comment = f }

// Decode returns the next event. It returns io.EOF when the stream ends
// cleanly (an unfinished last event is discarded, as the standard says), an
// error wrapping ErrEventTooLarge when an event is over the limit, and the
// reader's error when reading fails. After an error, Decode returns the same
// error again.
func (d *Decoder) Decode() (*Event, error) {
	for {
		line, err := d.readLine()
		if err != nil {
			d.data, d.typ = d.data[:0], d.typ[:0]
			d.idBuf = append(d.idBuf[:0], d.lastID...)
			return nil, err
		}
		if len(line) == 0 {
			if e := d.dispatch(); e != nil {
				return e, nil
			}
			continue
		}
		if line[0] == ':' {
			if d.comment != nil {
				d.comment(string(dropSpace(line[1:])))
			}
			continue
		}
		// Every field that means something has a name of at most five bytes,
		// so the colon is looked for there only: longer names are ignored.
		i := 0
		for i < len(line) && i <= 5 && line[i] != ':' {
			i++
		}
		name, value := line[:i], []byte(nil)
		if i < len(line) {
			if line[i] != ':' {
				continue
			}
			value = dropSpace(line[i+1:])
		}
		switch string(name) {
		case "data":
			if len(d.data)+len(value) > d.maxSize {
				d.err = tooLarge(d.maxSize)
				d.pos, d.end, d.scan = 0, 0, 0 // nothing after an oversized event is read
				continue                       // readLine now returns d.err
			}
			d.data = append(d.data, value...)
			d.data = append(d.data, '\n')
		case "event":
			d.typ = append(d.typ[:0], value...)
		case "id":
			if bytes.IndexByte(value, 0) < 0 {
				d.idBuf = append(d.idBuf[:0], value...)
			}
		case "retry":
			if ms, ok := parseDigits(value); ok {
				d.retry, d.hasRetry = ms, true
			}
		}
	}
}

func dropSpace(b []byte) []byte {
	if len(b) > 0 && b[0] == ' ' {
		return b[1:]
	}
	return b
}

// parseDigits parses a retry value: ASCII digits only, in milliseconds.
func parseDigits(b []byte) (time.Duration, bool) {
	if len(b) == 0 {
		return 0, false
	}
	var ms uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		if ms <= math.MaxInt64/uint64(time.Millisecond) {
			ms = ms*10 + uint64(c-'0')
		}
	}
	if ms > math.MaxInt64/uint64(time.Millisecond) {
		return time.Duration(math.MaxInt64), true
	}
	return time.Duration(ms) * time.Millisecond, true
}

func tooLarge(limit int) error {
	return &sizeError{limit}
}

type sizeError struct{ limit int }

func (e *sizeError) Error() string {
	return "sse: event too large: over " + strconv.Itoa(e.limit) + " bytes"
}

func (e *sizeError) Unwrap() error { return ErrEventTooLarge }

// dispatch runs at a blank line and returns the event, or nil when the
// block had no data.
func (d *Decoder) dispatch() *Event {
	if string(d.idBuf) != d.lastID {
		d.lastID = d.intern(d.idBuf)
	}
	if len(d.data) == 0 {
		d.typ = d.typ[:0]
		return nil
	}
	if len(d.events) == 0 {
		d.events = make([]Event, eventBlock)
	}
	e := &d.events[0]
	d.events = d.events[1:]
	e.ID = d.lastID
	switch {
	case len(d.typ) == 0:
		e.Type = "message"
	case string(d.typ) == d.lastType:
		e.Type = d.lastType
	default:
		d.lastType = d.intern(d.typ)
		e.Type = d.lastType
	}
	e.setData(d.carve(d.data[:len(d.data)-1]))
	d.typ = d.typ[:0]
	if cap(d.data) > 1<<20 {
		d.data = nil // don't keep a huge event's buffer for the small ones after it
	} else {
		d.data = d.data[:0]
	}
	return e
}

// carve copies b into memory that is never written again, shared with
// neighbouring events when b is small.
func (d *Decoder) carve(b []byte) []byte {
	if len(b) > maxArenaItem {
		return bytes.Clone(b)
	}
	if len(b) > cap(d.arena)-len(d.arena) {
		d.arena = make([]byte, 0, arenaSize)
	}
	n := len(d.arena)
	d.arena = append(d.arena, b...)
	return d.arena[n:len(d.arena):len(d.arena)]
}

// intern returns b as a string in carved memory, which is immutable.
func (d *Decoder) intern(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	c := d.carve(b)
	return unsafe.String(&c[0], len(c))
}

// readLine returns the next line without its ending; it is valid until the
// next call. It returns an error only when no complete line is left.
func (d *Decoder) readLine() ([]byte, error) {
	for {
		if d.pos < d.end {
			if !d.bomDone && !d.dropBOM() {
				d.fill()
				continue
			}
			if d.skipLF {
				d.skipLF = false
				if d.buf[d.pos] == '\n' {
					d.pos++
					d.scan = max(d.scan, d.pos)
					continue
				}
			}
			if i := indexLineEnd(d.buf[d.scan:d.end]); i < 0 {
				d.scan = d.end
			} else {
				i += d.scan
				line := d.buf[d.pos:i]
				d.pos = i + 1
				d.scan = d.pos
				if d.buf[i] == '\r' {
					if d.pos == d.end {
						d.skipLF = true // decide when the next byte arrives, without waiting for it
					} else if d.buf[d.pos] == '\n' {
						d.pos++
						d.scan++
					}
				}
				return line, nil
			}
		}
		if d.err != nil {
			return nil, d.err
		}
		d.fill()
	}
}

// dropBOM reports whether the byte order mark question is settled, dropping
// the mark if it is there. It needs more input only while the bytes read so
// far are a proper prefix of the mark.
func (d *Decoder) dropBOM() bool {
	const bom = "\xEF\xBB\xBF"
	b := d.buf[d.pos:d.end]
	if len(b) < len(bom) && d.err == nil && string(b) == bom[:len(b)] {
		return false
	}
	if bytes.HasPrefix(b, []byte(bom)) {
		d.pos += len(bom)
		d.scan = d.pos
	}
	d.bomDone = true
	return true
}

// indexLineEnd returns the index of the first CR or LF in b, or -1. Lines
// are short, so one pass over eight bytes at a time beats two IndexByte calls.
func indexLineEnd(b []byte) int {
	n := len(b)
	for len(b) >= 16 {
		if m := lineEndMask(binary.LittleEndian.Uint64(b)); m != 0 {
			return n - len(b) + bits.TrailingZeros64(m)/8
		}
		if m := lineEndMask(binary.LittleEndian.Uint64(b[8:])); m != 0 {
			return n - len(b) + 8 + bits.TrailingZeros64(m)/8
		}
		b = b[16:]
	}
	for i, c := range b {
		if c == '\n' || c == '\r' {
			return n - len(b) + i
		}
	}
	return -1
}

// lineEndMask has the high bit set in the lowest byte of x that is CR or LF
// (higher bits may be set spuriously by borrows, the lowest never is).
func lineEndMask(x uint64) uint64 {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	lf, cr := x^(ones*'\n'), x^(ones*'\r')
	return ((lf - ones) &^ lf & highs) | ((cr - ones) &^ cr & highs)
}

// fill makes room and reads once, recording errors in d.err.
func (d *Decoder) fill() {
	if d.pos > 0 {
		n := copy(d.buf, d.buf[d.pos:d.end])
		d.scan -= d.pos
		d.pos, d.end = 0, n
		if len(d.buf) > 1<<20 && n <= initialBufSize {
			d.buf = append(make([]byte, 0, initialBufSize), d.buf[:n]...)[:initialBufSize]
		}
	}
	if d.end == len(d.buf) {
		limit := d.maxSize + lineSlack
		if len(d.buf) >= limit {
			d.err = tooLarge(d.maxSize)
			return
		}
		size := min(max(2*len(d.buf), initialBufSize), limit)
		d.buf = append(d.buf[:d.end], make([]byte, size-d.end)...)
	}
	n, err := d.r.Read(d.buf[d.end:])
	if n < 0 || n > len(d.buf)-d.end {
		d.err = errors.New("sse: reader returned an invalid count")
		return
	}
	d.end += n
	switch {
	case err != nil:
		d.err = err
	case n > 0:
		d.empty = 0
	default:
		if d.empty++; d.empty >= 100 {
			d.err = io.ErrNoProgress
		}
	}
}
