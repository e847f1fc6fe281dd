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
	// initialBufSize is the size of a read block, just under 32 KiB so that
	// the runtime allocates it as a small object (32 KiB itself is a large
	// one, which costs more). Payloads are not copied out of the block they
	// were read into, so an event kept alive keeps its block alive.
	initialBufSize = 32<<10 - 8
	// maxShareBlock is the largest block that payloads are left in; a block
	// grown beyond it for a long line has its payloads copied out, so that
	// a small event never keeps a huge block alive.
	maxShareBlock = initialBufSize
	// minRead is the room a read is given before the block is moved on.
	minRead = 4 << 10
	// inlineMax bounds a payload of several lines built inside the read
	// block, which has to move along with the unread bytes to the next
	// block; a larger one is built in the decoder's own buffer.
	inlineMax = 16 << 10
	// Interned ids and types up to maxStrItem share strBlock blocks.
	strBlock   = 2 << 10
	maxStrItem = 256
	eventBlock = 16
	// shortLine is how far a line end is looked for a word at a time.
	shortLine = 128
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

	// buf is the read block. The unread bytes are buf[pos:end]; the payload
	// of the event being read may be buf[pstart:pend], before pos; payloads
	// of dispatched events may alias buf[:pos] when shared is set, so then
	// nothing before pos is written again: fill moves on to a new block.
	buf      []byte
	pos, end int
	shared   bool
	scan     int    // buf[pos:scan] holds no line ending: a partial line is not searched twice
	lf, cr   finder // the next LF and CR at or after scan, on long lines
	err      error  // sticky read or size error, returned once buf is drained
	skipLF   bool   // the last line ended in CR: an LF right after it belongs to it
	bomDone  bool
	empty    int // consecutive reads that returned nothing

	hasData      bool // the event being read has a data field
	inBuf        bool // its payload is buf[pstart:pend], otherwise data
	pstart, pend int
	data         []byte // payload buffer for large events, lines joined by LF
	typ          []byte // event type buffer
	idBuf        []byte // last event ID buffer

	lastID   string // last event ID string, updated at each dispatch
	lastType string
	retry    time.Duration
	hasRetry bool

	events []Event
	strs   []byte // block the interned ids and types are carved from
}

// NewDecoder returns a Decoder that reads from r with its own buffering.
func NewDecoder(r io.Reader) *Decoder {
	return &Decoder{r: r, maxSize: DefaultMaxEventSize, lf: finder{pos: -1}, cr: finder{pos: -1}}
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
		ls, le, err := d.readLine()
		if err != nil {
			d.hasData, d.typ = false, d.typ[:0]
			d.idBuf = append(d.idBuf[:0], d.lastID...)
			return nil, err
		}
		line := d.buf[ls:le]
		if len(line) == 0 {
			if e := d.dispatch(); e != nil {
				return e, nil
			}
			continue
		}
		if len(line) >= 5 && string(line[:5]) == "data:" { // most lines
			vs := ls + 5
			if vs < le && d.buf[vs] == ' ' {
				vs++
			}
			if !d.hasData && le-vs <= d.maxSize {
				d.hasData, d.inBuf = true, true // the payload is the line's value, where it is
				d.pstart, d.pend = vs, le
			} else {
				d.addData(vs, le)
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
		name, vs := line[:i], le
		if i < len(line) {
			if line[i] != ':' {
				continue
			}
			vs = ls + i + 1
			if vs < le && d.buf[vs] == ' ' {
				vs++
			}
		}
		value := d.buf[vs:le]
		switch string(name) {
		case "data":
			d.addData(vs, le)
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

// addData adds the data line buf[vs:ve] to the payload. The first line stays
// where it is; later ones are moved down to follow it, over lines already
// read, so the payload of an event in one block is never copied elsewhere.
func (d *Decoder) addData(vs, ve int) {
	size := ve - vs
	if d.hasData {
		size += d.payloadLen() + 1
	}
	if size > d.maxSize {
		d.err = tooLarge(d.maxSize)
		d.pos = d.end // nothing after an oversized event is read: readLine now returns d.err
		return
	}
	switch {
	case !d.hasData:
		d.hasData, d.inBuf = true, true
		d.pstart, d.pend = vs, ve
		return
	case d.inBuf && size <= inlineMax:
		// pend < vs: the payload ends before the line holding the value.
		d.buf[d.pend] = '\n'
		d.pend += 1 + copy(d.buf[d.pend+1:], d.buf[vs:ve])
		return
	case d.inBuf:
		d.toData()
	}
	d.data = append(d.data, '\n')
	d.data = append(d.data, d.buf[vs:ve]...)
}

func (d *Decoder) payloadLen() int {
	if d.inBuf {
		return d.pend - d.pstart
	}
	return len(d.data)
}

// toData moves the payload from the read block to the data buffer.
func (d *Decoder) toData() {
	d.data = append(d.data[:0], d.buf[d.pstart:d.pend]...)
	d.inBuf = false
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
	if !d.hasData {
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
	switch {
	case !d.inBuf:
		e.setData(bytes.Clone(d.data))
		if cap(d.data) > 1<<20 {
			d.data = nil // don't keep a huge event's buffer for the small ones after it
		}
		d.data = d.data[:0]
	case len(d.buf) > maxShareBlock:
		e.setData(bytes.Clone(d.buf[d.pstart:d.pend]))
	default:
		e.setData(d.buf[d.pstart:d.pend:d.pend])
		d.shared = true
	}
	e.decoded = true
	d.hasData, d.typ = false, d.typ[:0]
	return e
}

// intern returns b as a string in memory that is never written again,
// shared with neighbouring strings when b is small.
func (d *Decoder) intern(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	if len(b) > maxStrItem {
		return string(b)
	}
	if len(b) > cap(d.strs)-len(d.strs) {
		d.strs = make([]byte, 0, strBlock)
	}
	n := len(d.strs)
	d.strs = append(d.strs, b...)
	return unsafe.String(&d.strs[n], len(b))
}

// readLine returns the bounds in buf of the next line without its ending;
// they are valid until the next call. It returns an error only when no
// complete line is left.
func (d *Decoder) readLine() (start, end int, err error) {
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
			if i := d.lineEnd(); i >= 0 {
				start = d.pos
				d.pos = i + 1
				if d.buf[i] == '\r' {
					if d.pos == d.end {
						d.skipLF = true // decide when the next byte arrives, without waiting for it
					} else if d.buf[d.pos] == '\n' {
						d.pos++
					}
				}
				d.scan = d.pos
				return start, i, nil
			}
		}
		if d.err != nil {
			return 0, 0, d.err
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

// lineEnd returns the index of the first CR or LF in buf[scan:end], or -1
// after moving scan to end. Most lines are short: for them one pass over
// eight bytes at a time beats setting up two IndexByte calls. Beyond
// shortLine, the next LF and the next CR are found with bytes.IndexByte and
// remembered, so that no byte is searched twice for either, whatever the
// mix of line endings.
func (d *Decoder) lineEnd() int {
	buf := d.buf[:d.end]
	i := d.scan
	s := min(d.end, i+shortLine)
	for i+8 <= s {
		// Flag the bytes below 14, which CR and LF are; the first one
		// flagged is exact. Other control bytes are rare in a stream and
		// are passed over one by one.
		m := lowMask(binary.LittleEndian.Uint64(buf[i : i+8]))
		if m == 0 {
			i += 8
			continue
		}
		i += bits.TrailingZeros64(m) / 8
		if c := buf[i]; c == '\n' || c == '\r' {
			return i
		}
		i++
	}
	for ; i < s; i++ {
		if c := buf[i]; c == '\n' || c == '\r' {
			return i
		}
	}
	lf := d.lf.next(d.buf, s, d.end, '\n')
	cr := d.cr.next(d.buf, s, d.end, '\r')
	if cr >= 0 && (lf < 0 || cr < lf) {
		return cr
	}
	if lf < 0 {
		d.scan = d.end
	}
	return lf
}

// lowMask has the high bit set in the lowest byte of x that is below 14
// (higher bits may be set spuriously by borrows, the lowest never is).
func lowMask(x uint64) uint64 {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	return (x - ones*14) &^ x & highs
}

// finder remembers where the next occurrence of a byte is, so that every
// byte is searched once (with bytes.IndexByte, which is fast on long lines)
// even when a line is cut by a read or ends at the other kind of byte.
type finder struct {
	pos     int // index of the byte found last, or -1
	scanned int // no occurrence in [start, scanned), except at pos
}

func (f *finder) next(buf []byte, start, end int, c byte) int {
	if f.pos >= start {
		return f.pos
	}
	from := max(start, f.scanned)
	if i := bytes.IndexByte(buf[from:end], c); i >= 0 {
		f.pos, f.scanned = from+i, from+i
		return f.pos
	}
	f.pos, f.scanned = -1, end
	return -1
}

// moved follows the bytes from index from onwards moving delta bytes down.
func (f *finder) moved(from, delta int) {
	if f.scanned < from {
		f.pos, f.scanned = -1, 0 // nothing known about the bytes kept
		return
	}
	f.scanned -= delta
	if f.pos >= from {
		f.pos -= delta
	} else {
		f.pos = -1
	}
}

// fill makes room and reads once, recording errors in d.err.
func (d *Decoder) fill() {
	if d.hasData && d.inBuf && d.pend-d.pstart > inlineMax {
		d.toData() // a large payload is not carried from block to block
	}
	minRoom := max(1, min(minRead, len(d.buf)/2))
	if len(d.buf)-d.end < minRoom {
		if !d.relocate(minRoom) {
			return
		}
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

// relocate moves the payload being built and the unread bytes to the front
// of the block, or of a new one when the block is shared or too small, so
// that at least minRoom bytes are free. It reports false, setting d.err,
// when the unread line is already over the limit.
func (d *Decoder) relocate(minRoom int) bool {
	unread := d.end - d.pos
	if unread >= d.maxSize+lineSlack {
		d.err = tooLarge(d.maxSize)
		return false
	}
	keep := 0
	if d.hasData && d.inBuf {
		keep = d.pend - d.pstart
	}
	need := keep + unread
	size := len(d.buf)
	switch {
	case need+minRoom > size:
		size = min(max(2*size, initialBufSize, need+minRoom), keep+d.maxSize+lineSlack)
	case size > maxShareBlock && need+minRead <= initialBufSize:
		size = initialBufSize // back to blocks that payloads are left in
	}
	dst := d.buf
	if d.shared || size != len(d.buf) {
		dst = make([]byte, size)
		d.shared = false
	}
	copy(dst, d.buf[d.pstart:d.pstart+keep])
	copy(dst[keep:], d.buf[d.pos:d.end])
	delta := d.pos - keep
	d.lf.moved(d.pos, delta)
	d.cr.moved(d.pos, delta)
	d.scan -= delta
	d.buf = dst
	d.pstart, d.pend = 0, keep
	d.pos, d.end = keep, need
	return true
}
