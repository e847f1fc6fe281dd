package sse

import (
	"bytes"
	"errors"
	"io"
	"strconv"
	"sync"
	"time"
	"unsafe"
)

// ErrInvalidField is returned (wrapped) when an id, event type or comment
// would change the meaning of the stream: a CR or LF in any of them would
// start a new field or a new event, and a NUL makes clients ignore an id.
// Nothing is written when it is returned.
var ErrInvalidField = errors.New("sse: invalid field")

// Event is one event as a client receives it.
//
// The zero value is an event with no data. Events returned by a [Decoder]
// (and so by [Notify] and [Client]) are read-only: they may be handed to
// any number of goroutines, which may all call Bytes, ReadJson and ReadXml
// at once, but must not be modified. Data is the exception: it is a reader,
// with one read position for everyone holding the event, so at most one
// goroutine may read it. To keep allocations below one per event, a Decoder
// hands out events from shared blocks and leaves their payloads in the
// block of the stream they were read into; an Event kept alive keeps at
// most about 36 KiB of its neighbours' memory alive with it (a block of 16
// events, the 32 KiB read block and 2 KiB of ids and types).
//
// An Event must not be copied: the Data of a decoded event reads the
// payload of the original.
type Event struct {
	// URI is the URL of the stream the event came from, set by Notify and Client.
	URI string
	// ID is the stream's last event ID when the event was dispatched: the
	// value of the most recent id field, which persists across events (and
	// across reconnections of a Client) until the server sets another.
	ID string
	// Type is the event type; "message" when the stream named none.
	Type string
	// Data reads the payload: the data lines of the event joined by LF. It
	// suits one consumer that streams the payload (io.Copy, json.Decoder),
	// and it is not safe for concurrent use: goroutines that share an event
	// use Bytes, ReadJson or ReadXml, which never move Data's position. One
	// goroutine may read Data while others call those.
	Data io.Reader

	data    []byte
	off     int        // read position of Data when it is the event's own payload reader
	decoded bool       // set by the Decoder, never written after: data is final
	mu      sync.Mutex // serialises the first Bytes of a hand-built event
}

// payload is the reader of an Event's own data: Data points back into the
// Event, so a decoded event costs no allocation for its reader.
type payload Event

func (p *payload) Read(b []byte) (int, error) {
	if p.off >= len(p.data) {
		return 0, io.EOF
	}
	n := copy(b, p.data[p.off:])
	p.off += n
	return n, nil
}

// WriteTo lets io.Copy move the payload without an intermediate buffer.
func (p *payload) WriteTo(w io.Writer) (int64, error) {
	n, err := w.Write(p.data[p.off:])
	p.off += n
	return int64(n), err
}

func (e *Event) setData(b []byte) {
	e.data, e.off = b, 0
	e.Data = (*payload)(e)
}

// Bytes returns the payload without copying it. The caller must not modify
// the result. Bytes is safe for concurrent use, and on a decoded event it
// reads nothing but the payload the Decoder left.
//
// For an Event built by hand, the first call reads Data to its end, keeps
// the bytes, and resets Data to read them again from the start; a read
// error is dropped, and Bytes returns what was read before it. Concurrent
// calls wait for that first one, so Data must not be read by anyone else
// until it returns.
func (e *Event) Bytes() []byte {
	if e.decoded {
		return e.data
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	// Data may be another event's payload reader, which is read like any.
	if p, _ := e.Data.(*payload); p != (*payload)(e) && e.Data != nil {
		b, _ := io.ReadAll(e.Data)
		e.setData(b)
	}
	return e.data
}

// Message is an event as a server writes it. Every writer of this package
// (Conn, Hub, the JSON and XML helpers) encodes through Message, so the
// rules below hold for all of them.
//
// The zero value is an event of type "message" with empty data.
type Message struct {
	// ID, when not empty, is sent as the event's id. It must not contain CR,
	// LF or NUL.
	ID string
	// Type, when not empty, is sent as the event type. It must not contain CR
	// or LF.
	Type string
	// Data is the payload. It is split on every CR, LF and CRLF into data
	// lines, so no payload can inject fields or events; clients join the
	// lines with LF, so a CR or CRLF in Data is received as LF. Empty data
	// is sent as one empty data line and still dispatches an event.
	Data []byte
	// Retry, when positive, tells the client its reconnection delay. It is
	// sent in whole milliseconds, rounded up.
	Retry time.Duration
	// Comment, when not empty, is sent as a comment line before the event.
	// It must not contain CR or LF.
	Comment string
}

// AppendTo appends the wire form of m to dst and returns the extended
// buffer. It does not allocate when dst has room. When a field is invalid it
// returns dst unchanged and an error wrapping [ErrInvalidField].
func (m *Message) AppendTo(dst []byte) ([]byte, error) {
	return appendEvent(dst, m.ID, m.Type, m.Data, m.Retry, m.Comment)
}

// AppendComment appends a comment line to dst. Clients ignore comments, which
// makes them the keep-alive of choice. An empty text appends ":\n". A text
// with CR or LF returns dst unchanged and an error wrapping [ErrInvalidField].
func AppendComment(dst []byte, text string) ([]byte, error) {
	if err := checkField("comment", text); err != nil {
		return dst, err
	}
	return appendComment(dst, text), nil
}

// AppendRetry appends a retry line that sets the client's reconnection delay
// to d, in whole milliseconds rounded up. A d of zero or less appends nothing.
func AppendRetry(dst []byte, d time.Duration) []byte {
	if d <= 0 {
		return dst
	}
	ms := (d + time.Millisecond - 1) / time.Millisecond
	dst = append(dst, "retry: "...)
	dst = strconv.AppendInt(dst, int64(ms), 10)
	return append(dst, '\n')
}

// appendEvent is the one encoder: every writer in the package ends here.
func appendEvent(dst []byte, id, typ string, data []byte, retry time.Duration, comment string) ([]byte, error) {
	if err := checkFields(id, typ, comment); err != nil {
		return dst, err
	}
	if comment != "" {
		dst = appendComment(dst, comment)
	}
	dst = AppendRetry(dst, retry)
	if id != "" {
		dst = appendID(dst, id)
	}
	if typ != "" {
		dst = append(dst, "event: "...)
		dst = append(dst, typ...)
		dst = append(dst, '\n')
	}
	dst = appendData(dst, data)
	return append(dst, '\n'), nil
}

// appendPosition appends an id without an event: clients take it as their
// last event ID, and dispatch nothing. The id must be valid.
func appendPosition(dst []byte, id string) []byte {
	return append(appendID(dst, id), '\n')
}

func appendID(dst []byte, id string) []byte {
	dst = append(dst, "id: "...)
	dst = append(dst, id...)
	return append(dst, '\n')
}

func appendComment(dst []byte, text string) []byte {
	dst = append(dst, ':')
	if text != "" {
		dst = append(dst, ' ')
		dst = append(dst, text...)
	}
	return append(dst, '\n')
}

// appendData writes data as data lines, breaking on CR, LF and CRLF. The next
// CR and LF positions are remembered across lines, so input that has only one
// kind of line break is still scanned once.
func appendData(dst, data []byte) []byte {
	lf, cr := -2, -2 // -2: not searched yet, -1: none left
	for start := 0; ; {
		if lf != -1 && lf < start {
			lf = indexFrom(data, start, '\n')
		}
		if cr != -1 && cr < start {
			cr = indexFrom(data, start, '\r')
		}
		end, next := len(data), -1
		switch {
		case cr >= 0 && (lf < 0 || cr < lf):
			end, next = cr, cr+1
			if lf == cr+1 {
				next = lf + 1
			}
		case lf >= 0:
			end, next = lf, lf+1
		}
		dst = append(dst, "data: "...)
		dst = append(dst, data[start:end]...)
		dst = append(dst, '\n')
		if next < 0 {
			return dst
		}
		start = next
	}
}

func indexFrom(b []byte, from int, c byte) int {
	if i := bytes.IndexByte(b[from:], c); i >= 0 {
		return from + i
	}
	return -1
}

// validate reports whether m can be encoded, without encoding it.
func (m *Message) validate() error { return checkFields(m.ID, m.Type, m.Comment) }

func checkFields(id, typ, comment string) error {
	if err := checkField("id", id); err != nil {
		return err
	}
	if err := checkField("event", typ); err != nil {
		return err
	}
	return checkField("comment", comment)
}

// checkField is the one validation of the single-line fields.
func checkField(name, v string) error {
	for i := 0; i < len(v); i++ {
		if v[i] > '\r' { // one comparison for almost every byte: CR, LF and NUL are below
			continue
		}
		switch v[i] {
		case '\r', '\n':
			return &fieldError{name, "a line break"}
		case 0:
			if name == "id" {
				return &fieldError{name, "a NUL byte"}
			}
		}
	}
	return nil
}

type fieldError struct{ field, what string }

func (e *fieldError) Error() string {
	return "sse: invalid field: " + e.field + " contains " + e.what
}

func (e *fieldError) Unwrap() error { return ErrInvalidField }

// bytesOf views s as bytes without copying; the result must not be modified.
func bytesOf(s string) []byte {
	return unsafe.Slice(unsafe.StringData(s), len(s))
}
