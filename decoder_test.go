package sse_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/b2ce5911/sse"
)

// ev is what a test expects of one dispatched event.
type ev struct{ id, typ, data string }

type decoded struct {
	events   []ev
	lastID   string
	retry    time.Duration
	hasRetry bool
	comments []string
	err      error // the error that ended the stream; io.EOF when clean
}

func decodeAll(r io.Reader, max int) decoded {
	var out decoded
	d := sse.NewDecoder(r)
	d.SetMaxEventSize(max)
	d.OnComment(func(c string) { out.comments = append(out.comments, c) })
	var kept []*sse.Event
	for {
		e, err := d.Decode()
		if err != nil {
			out.err = err
			break
		}
		kept = append(kept, e)
	}
	// The events are read only now, so that one changed by the decoding of
	// those after it is caught.
	for _, e := range kept {
		out.events = append(out.events, ev{e.ID, e.Type, string(e.Bytes())})
	}
	out.lastID = d.LastEventID()
	out.retry, out.hasRetry = d.Retry()
	return out
}

// readers feed every case whole and split at every possible point.
var readers = []struct {
	name string
	wrap func(io.Reader) io.Reader
}{
	{"whole", func(r io.Reader) io.Reader { return r }},
	{"one-byte", iotest.OneByteReader},
	{"half", iotest.HalfReader},
	{"data-err", iotest.DataErrReader},
}

func TestDecoderConformance(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", 1<<20)
	tests := []struct {
		name     string
		in       string
		want     []ev
		lastID   string
		retry    time.Duration
		hasRetry bool
		comments []string
	}{
		{name: "empty stream", in: ""},
		{name: "simple", in: "data: hello\n\n", want: []ev{{"", "message", "hello"}}},
		{name: "no space after colon", in: "data:hello\n\n", want: []ev{{"", "message", "hello"}}},
		{name: "only one space dropped", in: "data:  two\n\n", want: []ev{{"", "message", " two"}}},
		{name: "tab is not a space", in: "data:\tx\n\n", want: []ev{{"", "message", "\tx"}}},
		{name: "data without colon", in: "data\n\n", want: []ev{{"", "message", ""}}},
		{name: "data without colon twice", in: "data\ndata\n\n", want: []ev{{"", "message", "\n"}}},
		{name: "empty data then text", in: "data:\ndata: b\n\n", want: []ev{{"", "message", "\nb"}}},
		{name: "multi-line data", in: "data: a\ndata: b\ndata: c\n\n", want: []ev{{"", "message", "a\nb\nc"}}},
		{name: "CRLF endings", in: "data: a\r\ndata: b\r\n\r\n", want: []ev{{"", "message", "a\nb"}}},
		{name: "CR endings", in: "data: a\rdata: b\r\r", want: []ev{{"", "message", "a\nb"}}},
		{name: "mixed endings", in: "data: a\rdata: b\r\ndata: c\n\r\ndata: d\r\r\n", want: []ev{{"", "message", "a\nb\nc"}, {"", "message", "d"}}},
		{name: "CR LF is one ending not two", in: "data: a\r\n\r\ndata: b\n\n", want: []ev{{"", "message", "a"}, {"", "message", "b"}}},
		{name: "LF CR is two endings", in: "data: a\n\rdata: b\n\n", want: []ev{{"", "message", "a"}, {"", "message", "b"}}},
		{name: "BOM dropped", in: "\xEF\xBB\xBFdata: a\n\n", want: []ev{{"", "message", "a"}}},
		{name: "BOM only once", in: "\xEF\xBB\xBF\xEF\xBB\xBFdata: a\n\ndata: b\n\n", want: []ev{{"", "message", "b"}}},
		{name: "BOM prefix is data", in: "\xEF\xBBdata: a\n\ndata: b\n\n", want: []ev{{"", "message", "b"}}},
		{name: "BOM later is kept", in: "data: \xEF\xBB\xBFa\n\n", want: []ev{{"", "message", "\xEF\xBB\xBFa"}}},
		{name: "event type", in: "event: add\ndata: 1\n\n", want: []ev{{"", "add", "1"}}},
		{name: "type resets after dispatch", in: "event: add\ndata: 1\n\ndata: 2\n\n", want: []ev{{"", "add", "1"}, {"", "message", "2"}}},
		{name: "empty type is message", in: "event:\ndata: 1\n\n", want: []ev{{"", "message", "1"}}},
		{name: "last type wins", in: "event: a\nevent: b\ndata: 1\n\n", want: []ev{{"", "b", "1"}}},
		{name: "type alone dispatches nothing", in: "event: add\n\ndata: 1\n\n", want: []ev{{"", "message", "1"}}},
		{name: "id", in: "id: 1\ndata: a\n\n", want: []ev{{"1", "message", "a"}}, lastID: "1"},
		{name: "id persists", in: "id: 1\ndata: a\n\ndata: b\n\n", want: []ev{{"1", "message", "a"}, {"1", "message", "b"}}, lastID: "1"},
		{name: "id after data in block", in: "data: a\nid: 7\n\n", want: []ev{{"7", "message", "a"}}, lastID: "7"},
		{name: "empty id resets", in: "id: 1\ndata: a\n\nid\ndata: b\n\n", want: []ev{{"1", "message", "a"}, {"", "message", "b"}}},
		{name: "empty id with colon resets", in: "id: 1\ndata: a\n\nid:\ndata: b\n\n", want: []ev{{"1", "message", "a"}, {"", "message", "b"}}},
		{name: "id with NUL ignored", in: "id: 1\ndata: a\n\nid: 2\x003\ndata: b\n\n", want: []ev{{"1", "message", "a"}, {"1", "message", "b"}}, lastID: "1"},
		{name: "id only block sets last id", in: "id: 5\n\n", lastID: "5"},
		{name: "id only block applies to next", in: "id: 5\n\ndata: a\n\n", want: []ev{{"5", "message", "a"}}, lastID: "5"},
		{name: "id keeps spaces", in: "id:  x y \ndata: a\n\n", want: []ev{{" x y ", "message", "a"}}, lastID: " x y "},
		{name: "comment ignored", in: ": hi\ndata: a\n: there\ndata: b\n\n", want: []ev{{"", "message", "a\nb"}}, comments: []string{"hi", "there"}},
		{name: "comment only", in: ":\n:\n\n", comments: []string{"", ""}},
		{name: "comment keeps extra spaces", in: ":  two\n", comments: []string{" two"}},
		{name: "unknown fields ignored", in: "foo: bar\nData: x\ndata : y\ndata: a\n\n", want: []ev{{"", "message", "a"}}},
		{name: "field named by empty string", in: ": c\n:\ndata: a\n\n", want: []ev{{"", "message", "a"}}, comments: []string{"c", ""}},
		{name: "colon in value kept", in: "data: a:b: c\n\n", want: []ev{{"", "message", "a:b: c"}}},
		{name: "retry", in: "retry: 1500\n", retry: 1500 * time.Millisecond, hasRetry: true},
		{name: "retry zero", in: "retry: 0\n", retry: 0, hasRetry: true},
		{name: "retry non digits ignored", in: "retry: 1000\nretry: 12a\nretry: -1\nretry: 1.5\nretry:  5\n", retry: time.Second, hasRetry: true},
		{name: "retry empty ignored", in: "retry:\nretry\n"},
		{name: "retry huge clamped", in: "retry: 1000000000000000000000000\n", retry: time.Duration(1<<63 - 1), hasRetry: true},
		{name: "retry 10^12", in: "retry: 1000000000000\n", retry: 1e12 * time.Millisecond, hasRetry: true},
		{name: "retry not dispatched", in: "retry: 10\n\ndata: a\n\n", want: []ev{{"", "message", "a"}}, retry: 10 * time.Millisecond, hasRetry: true},
		{name: "unterminated event discarded", in: "data: a\n\ndata: b\n", want: []ev{{"", "message", "a"}}},
		{name: "unterminated line discarded", in: "data: a\n\ndata: b", want: []ev{{"", "message", "a"}}},
		{name: "unterminated id discarded", in: "id: 1\ndata: a\n\nid: 2\ndata: b\n", want: []ev{{"1", "message", "a"}}, lastID: "1"},
		{name: "NUL in data kept", in: "data: a\x00b\n\n", want: []ev{{"", "message", "a\x00b"}}},
		{name: "UTF-8 kept", in: "data: héllo, 世界 🙂\n\n", want: []ev{{"", "message", "héllo, 世界 🙂"}}},
		{name: "invalid UTF-8 passed through", in: "data: \xff\xfe\n\n", want: []ev{{"", "message", "\xff\xfe"}}},
		{name: "blank lines between events", in: "\n\n\ndata: a\n\n\n\n", want: []ev{{"", "message", "a"}}},
		{name: "very long line", in: "data: " + long + "\n\n", want: []ev{{"", "message", long}}},
	}
	for _, tt := range tests {
		for _, rd := range readers {
			t.Run(tt.name+"/"+rd.name, func(t *testing.T) {
				t.Parallel()
				got := decodeAll(rd.wrap(strings.NewReader(tt.in)), 0)
				if got.err != io.EOF {
					t.Fatalf("stream ended with %v, want io.EOF", got.err)
				}
				if !equalEvents(got.events, tt.want) {
					t.Errorf("events\n got %q\nwant %q", clip(got.events), clip(tt.want))
				}
				if got.lastID != tt.lastID {
					t.Errorf("LastEventID() = %q, want %q", got.lastID, tt.lastID)
				}
				if got.retry != tt.retry || got.hasRetry != tt.hasRetry {
					t.Errorf("Retry() = %v, %v, want %v, %v", got.retry, got.hasRetry, tt.retry, tt.hasRetry)
				}
				if strings.Join(got.comments, "|") != strings.Join(tt.comments, "|") || len(got.comments) != len(tt.comments) {
					t.Errorf("comments = %q, want %q", got.comments, tt.comments)
				}
			})
		}
	}
}

func equalEvents(a, b []ev) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func clip(evs []ev) []ev {
	out := make([]ev, len(evs))
	for i, e := range evs {
		if len(e.data) > 40 {
			e.data = e.data[:40] + "…"
		}
		out[i] = e
	}
	return out
}

// stepReader returns its chunks one per Read, then fails: a decoder that
// reads past a chunk before returning the event in it would wait on a live
// stream.
type stepReader struct{ chunks []string }

var errWouldBlock = errors.New("read past the available input")

func (r *stepReader) Read(p []byte) (int, error) {
	if len(r.chunks) == 0 {
		return 0, errWouldBlock
	}
	n := copy(p, r.chunks[0])
	if r.chunks[0] = r.chunks[0][n:]; r.chunks[0] == "" {
		r.chunks = r.chunks[1:]
	}
	return n, nil
}

func TestDecoderDispatchesWithoutReadingAhead(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ name, first, second, want2 string }{
		{"CR", "data: a\r\r", "\ndata: b\r\r", "b"},
		{"LF", "data: a\n\n", "data: b\n\n", "b"},
		{"CRLF split", "data: a\r\n\r", "\ndata: b\r\n\r\n", "b"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := &stepReader{chunks: []string{tt.first}}
			d := sse.NewDecoder(r)
			e, err := d.Decode()
			if err != nil || string(e.Bytes()) != "a" {
				t.Fatalf("Decode() = %v, %v; want the event of the first read", e, err)
			}
			r.chunks = append(r.chunks, tt.second)
			e, err = d.Decode()
			if err != nil || string(e.Bytes()) != tt.want2 {
				t.Fatalf("second Decode() = %v, %v; want %q", e, err, tt.want2)
			}
			if _, err := d.Decode(); !errors.Is(err, errWouldBlock) {
				t.Fatalf("third Decode() error = %v, want the reader's error", err)
			}
		})
	}
}

func TestDecoderMaxEventSize(t *testing.T) {
	t.Parallel()
	ten := strings.Repeat("0123456789", 1<<20) // 10 MiB
	tests := []struct {
		name   string
		in     string
		max    int
		want   int // events before the error
		tooBig bool
	}{
		{"10 MiB line passes by default", "data: " + ten + "\n\n", 0, 1, false},
		{"10 MiB in many lines passes by default", strings.Repeat("data: "+ten[:1<<16]+"\n", 160) + "\n", 0, 1, false},
		{"data over the limit", "data: ok\n\ndata: 0123456789\n\n", 8, 1, true},
		{"data over the limit across lines", "data: ok\n\ndata: 01234\ndata: 56789\n\n", 8, 1, true},
		{"line over the limit", "data: ok\n\n:" + strings.Repeat("c", 10000) + "\n", 100, 1, true},
		{"line over the limit without ending", "data: ok\n\n" + strings.Repeat("c", 10000), 100, 1, true},
		{"exactly the limit", "data: 01234567\n\n", 8, 1, false},
		{"limit counts joined lines", "data: 0123\ndata: 456\n\n", 8, 1, false},
	}
	for _, tt := range tests {
		for _, rd := range readers[:2] {
			t.Run(tt.name+"/"+rd.name, func(t *testing.T) {
				t.Parallel()
				if rd.name == "one-byte" && len(tt.in) > 1<<16 {
					t.Skip("covered whole; one byte at a time is slow for 10 MiB")
				}
				got := decodeAll(rd.wrap(strings.NewReader(tt.in)), tt.max)
				if len(got.events) != tt.want {
					t.Fatalf("%d events before %v, want %d", len(got.events), got.err, tt.want)
				}
				if tt.tooBig != errors.Is(got.err, sse.ErrEventTooLarge) || (!tt.tooBig && got.err != io.EOF) {
					t.Fatalf("err = %v, want too large: %v", got.err, tt.tooBig)
				}
			})
		}
	}
}

func TestDecoderErrorIsSticky(t *testing.T) {
	t.Parallel()
	boom := errors.New("boom")
	r := io.MultiReader(strings.NewReader("data: a\n\ndata: b\n"), iotest.ErrReader(boom))
	d := sse.NewDecoder(r)
	if e, err := d.Decode(); err != nil || string(e.Bytes()) != "a" {
		t.Fatalf("Decode() = %v, %v", e, err)
	}
	for range 2 {
		if _, err := d.Decode(); err != boom {
			t.Fatalf("Decode() error = %v, want %v", err, boom)
		}
	}
}

func TestDecoderNoProgress(t *testing.T) {
	t.Parallel()
	d := sse.NewDecoder(zeroReader{})
	if _, err := d.Decode(); err != io.ErrNoProgress {
		t.Fatalf("Decode() error = %v, want io.ErrNoProgress", err)
	}
}

type zeroReader struct{}

func (zeroReader) Read([]byte) (int, error) { return 0, nil }

func TestDecoderSetLastEventID(t *testing.T) {
	t.Parallel()
	d := sse.NewDecoder(strings.NewReader("data: a\n\nid: 9\ndata: b\n\nid: 10\ndata: cut"))
	d.SetLastEventID("8")
	var ids []string
	for {
		e, err := d.Decode()
		if err != nil {
			break
		}
		ids = append(ids, e.ID)
	}
	if strings.Join(ids, ",") != "8,9" || d.LastEventID() != "9" {
		t.Fatalf("ids %v, last %q; want [8 9], 9", ids, d.LastEventID())
	}
}

func TestEventData(t *testing.T) {
	t.Parallel()
	d := sse.NewDecoder(strings.NewReader("data: one\ndata: two\n\n"))
	e, err := d.Decode()
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(e.Data)
	if err != nil || string(b) != "one\ntwo" || string(e.Bytes()) != "one\ntwo" {
		t.Fatalf("Data read %q, %v; Bytes %q", b, err, e.Bytes())
	}

	hand := &sse.Event{Data: strings.NewReader("by hand")}
	if string(hand.Bytes()) != "by hand" || string(hand.Bytes()) != "by hand" {
		t.Fatalf("Bytes of a hand-built event = %q", hand.Bytes())
	}
	if b, _ := io.ReadAll(hand.Data); !bytes.Equal(b, []byte("by hand")) {
		t.Fatalf("Data after Bytes reads %q", b)
	}
	if (&sse.Event{}).Bytes() != nil {
		t.Fatal("Bytes of the zero Event is not nil")
	}
}

// TestDecoderEventsStayValid keeps every event until the stream has ended:
// payloads share read blocks, and the lines of later events are moved
// around in blocks of their own, so an event's bytes must never change
// once it has been returned, whatever the reads look like.
func TestDecoderEventsStayValid(t *testing.T) {
	t.Parallel()
	var b strings.Builder
	var want []ev
	for i := range 800 {
		nl := []string{"\n", "\r\n", "\r"}[i%3]
		id := strings.Repeat("i", i%7)
		b.WriteString("id: " + id + nl)
		if i%5 == 0 {
			b.WriteString(": comment " + strings.Repeat("c", i%300) + nl)
		}
		var data []string
		for l := range 1 + i%4 {
			data = append(data, strings.Repeat(string(rune('a'+(i+l)%26)), (i*37+l*101)%(1<<(i%13))))
		}
		if i%61 == 0 {
			data = append(data, strings.Repeat("L", 20000)) // over a block, and over the in-block payload limit
		}
		for _, l := range data {
			b.WriteString("data: " + l + nl)
		}
		b.WriteString(nl)
		want = append(want, ev{id, "message", strings.Join(data, "\n")})
	}
	in := b.String()
	for _, rd := range readers {
		t.Run(rd.name, func(t *testing.T) {
			t.Parallel()
			d := sse.NewDecoder(rd.wrap(strings.NewReader(in)))
			var kept []*sse.Event
			for {
				e, err := d.Decode()
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				kept = append(kept, e)
			}
			got := make([]ev, len(kept))
			for i, e := range kept {
				got[i] = ev{e.ID, e.Type, string(e.Bytes())}
			}
			if !equalEvents(got, want) {
				for i := range min(len(got), len(want)) {
					if got[i] != want[i] {
						t.Fatalf("%d events, want %d; event %d is %q, want %q", len(got), len(want), i, clip(got[i:i+1]), clip(want[i:i+1]))
					}
				}
				t.Fatalf("%d events, want %d", len(got), len(want))
			}
		})
	}
}

// TestDecoderAllocations holds the Decoder to at most one allocation per
// event, for small events, 4 KiB ones, several data lines and an id that
// changes with every event.
func TestDecoderAllocations(t *testing.T) {
	var b strings.Builder
	const events = 2000
	for i := range events {
		fmt.Fprintf(&b, "id: %d\n", i)
		switch i % 8 {
		case 0:
			b.WriteString("data: " + strings.Repeat("y", 4096) + "\r\n\r\n")
		case 1:
			for range 64 {
				b.WriteString("data: " + strings.Repeat("z", 58) + "\r")
			}
			b.WriteString("\r")
		default:
			b.WriteString("event: update\ndata: {\"n\":1}\ndata: {\"n\":2}\n\n")
		}
	}
	in := b.String()
	allocs := testing.AllocsPerRun(3, func() {
		d := sse.NewDecoder(strings.NewReader(in))
		n := 0
		for {
			if _, err := d.Decode(); err != nil {
				break
			}
			n++
		}
		if n != events {
			t.Fatalf("decoded %d events, want %d", n, events)
		}
	})
	if allocs > events {
		t.Fatalf("%.0f allocations for %d events", allocs, events)
	}
	t.Logf("%.3f allocations per event", allocs/events)
}
