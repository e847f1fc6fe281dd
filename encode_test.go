package sse_test

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/b2ce5911/sse"
)

// captureWriter keeps what a Conn writes; it can set write deadlines.
type captureWriter struct {
	header http.Header
	buf    bytes.Buffer
}

func (w *captureWriter) Header() http.Header              { return w.header }
func (w *captureWriter) WriteHeader(int)                  {}
func (w *captureWriter) Flush()                           {}
func (w *captureWriter) SetWriteDeadline(time.Time) error { return nil }
func (w *captureWriter) Write(b []byte) (int, error)      { return w.buf.Write(b) }
func (w *captureWriter) take() string                     { s := w.buf.String(); w.buf.Reset(); return s }
func captureConn(t *testing.T) (*sse.Conn, *captureWriter) {
	t.Helper()
	w := &captureWriter{header: http.Header{}}
	c, err := (&sse.Upgrader{Heartbeat: -1}).Upgrade(w, httptest.NewRequest(http.MethodGet, "/", nil))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	w.take() // the opening comment
	return c, w
}

// unencodable fails half way through encoding: XML writes the fields
// before Ch, then gives up.
type unencodable struct {
	Name string
	Ch   chan int
}

// TestFailedEncodeLeavesNoTrace: a marshal error writes nothing, and
// leaves nothing behind for the next event either.
func TestFailedEncodeLeavesNoTrace(t *testing.T) {
	t.Parallel()
	c, w := captureConn(t)
	good := point{X: 1, Label: "ok"}
	wantXML, _ := xml.Marshal(good)
	wantJSON, _ := json.Marshal(good)
	for _, f := range []struct {
		name  string
		write func(v any) error
		want  []byte
	}{
		{"WriteXml", c.WriteXml, wantXML},
		{"WriteJson", c.WriteJson, wantJSON},
	} {
		if err := f.write(unencodable{Name: "half", Ch: make(chan int)}); err == nil {
			t.Fatalf("%s of a chan field: no error", f.name)
		}
		if got := w.take(); got != "" {
			t.Fatalf("%s failed and wrote %q", f.name, got)
		}
		if err := f.write(good); err != nil {
			t.Fatal(err)
		}
		if got, want := w.take(), "data: "+string(f.want)+"\n\n"; got != want {
			t.Fatalf("%s after a failed one wrote %q, want %q", f.name, got, want)
		}
	}
}

// TestEncodedMessagesMatchConnWrites: JsonMessage and XmlMessage build the
// very bytes that the Conn's own JSON and XML writes send, the data being
// what json.Marshal and xml.Marshal return.
func TestEncodedMessagesMatchConnWrites(t *testing.T) {
	t.Parallel()
	values := []any{
		point{X: 3, Label: "line one\nline two\r\nthree\rend", Note: "a\nb"},
		map[string]string{"html": "<b>&amp;</b>"},
		json.RawMessage("{\n  \"spaced\": [1, 2]\n}"),
		"plain",
		nil,
	}
	c, w := captureConn(t)
	for _, f := range []struct {
		name    string
		write   func(id, typ string, v any) error
		message func(id, typ string, v any) (sse.Message, error)
		marshal func(v any) ([]byte, error)
	}{
		{"JSON", c.WriteJsonEventWithID, sse.JsonMessage, json.Marshal},
		{"XML", c.WriteXmlEventWithID, sse.XmlMessage, xml.Marshal},
	} {
		for _, v := range values {
			want, err := f.marshal(v)
			if err != nil {
				continue // a value of the other format
			}
			m, err := f.message("id-1", "thing", v)
			if err != nil {
				t.Fatalf("%s message of %#v: %v", f.name, v, err)
			}
			if m.ID != "id-1" || m.Type != "thing" || !bytes.Equal(m.Data, want) {
				t.Fatalf("%s message of %#v: %+v, want data %q", f.name, v, m, want)
			}
			fromMessage, _ := m.AppendTo(nil)
			if err := f.write("id-1", "thing", v); err != nil {
				t.Fatal(err)
			}
			if got := w.take(); got != string(fromMessage) {
				t.Fatalf("%s of %#v: Conn wrote %q, the Message encodes to %q", f.name, v, got, fromMessage)
			}
		}
		if _, err := f.message("a\nb", "thing", "v"); !errors.Is(err, sse.ErrInvalidField) {
			t.Fatalf("%s message with a line break in its id: %v, want ErrInvalidField", f.name, err)
		}
		if err := f.write("id", "a\nb", "v"); !errors.Is(err, sse.ErrInvalidField) {
			t.Fatalf("%s write with a line break in its type: %v, want ErrInvalidField", f.name, err)
		}
		if got := w.take(); got != "" {
			t.Fatalf("%s write of an invalid type wrote %q", f.name, got)
		}
		if _, err := f.message("id", "t", unencodable{Ch: make(chan int)}); err == nil {
			t.Fatalf("%s message of a chan field: no error", f.name)
		}
	}
}
