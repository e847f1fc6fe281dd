package sse_test

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/b2ce5911/sse"
)

func TestMessageAppendTo(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		msg  sse.Message
		want string
	}{
		{"zero value", sse.Message{}, "data: \n\n"},
		{"data", sse.Message{Data: []byte("hi")}, "data: hi\n\n"},
		{"all fields", sse.Message{ID: "7", Type: "add", Data: []byte("x"), Retry: 1500 * time.Millisecond, Comment: "c"},
			": c\nretry: 1500\nid: 7\nevent: add\ndata: x\n\n"},
		{"LF split", sse.Message{Data: []byte("a\nb")}, "data: a\ndata: b\n\n"},
		{"CR split", sse.Message{Data: []byte("a\rb")}, "data: a\ndata: b\n\n"},
		{"CRLF split once", sse.Message{Data: []byte("a\r\nb")}, "data: a\ndata: b\n\n"},
		{"LFCR split twice", sse.Message{Data: []byte("a\n\rb")}, "data: a\ndata: \ndata: b\n\n"},
		{"trailing break", sse.Message{Data: []byte("a\n")}, "data: a\ndata: \n\n"},
		{"only breaks", sse.Message{Data: []byte("\r\r\n\n")}, "data: \ndata: \ndata: \ndata: \n\n"},
		{"injection stays data", sse.Message{Data: []byte("x\n\nid: 666\nevent: evil\ndata: y")},
			"data: x\ndata: \ndata: id: 666\ndata: event: evil\ndata: data: y\n\n"},
		{"leading space kept", sse.Message{Data: []byte(" a")}, "data:  a\n\n"},
		{"retry rounds up", sse.Message{Retry: 1500 * time.Microsecond}, "retry: 2\ndata: \n\n"},
		{"sub-millisecond retry is 1", sse.Message{Retry: time.Nanosecond}, "retry: 1\ndata: \n\n"},
		{"negative retry omitted", sse.Message{Retry: -time.Second}, "data: \n\n"},
		{"NUL allowed in type", sse.Message{Type: "a\x00b"}, "event: a\x00b\ndata: \n\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := tt.msg.AppendTo([]byte("prefix|"))
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != "prefix|"+tt.want {
				t.Fatalf("AppendTo = %q, want %q", got, "prefix|"+tt.want)
			}
		})
	}
}

func TestMessageRejectsInvalidFields(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		msg  sse.Message
	}{
		{"LF in id", sse.Message{ID: "1\ndata: x"}},
		{"CR in id", sse.Message{ID: "1\r"}},
		{"NUL in id", sse.Message{ID: "1\x002"}},
		{"LF in type", sse.Message{Type: "a\n"}},
		{"CR in type", sse.Message{Type: "a\rb"}},
		{"LF in comment", sse.Message{Comment: "a\n\ndata: x"}},
		{"CR in comment", sse.Message{Comment: "\r"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dst := []byte("kept")
			got, err := tt.msg.AppendTo(dst)
			if !errors.Is(err, sse.ErrInvalidField) {
				t.Fatalf("err = %v, want ErrInvalidField", err)
			}
			if string(got) != "kept" {
				t.Fatalf("dst changed to %q", got)
			}
		})
	}
}

func TestAppendCommentAndRetry(t *testing.T) {
	t.Parallel()
	b, err := sse.AppendComment(nil, "ping")
	b2, err2 := sse.AppendComment(b, "")
	if err != nil || err2 != nil || string(b2) != ": ping\n:\n" {
		t.Fatalf("AppendComment = %q, %v, %v", b2, err, err2)
	}
	if b, err := sse.AppendComment([]byte("x"), "a\nb"); !errors.Is(err, sse.ErrInvalidField) || string(b) != "x" {
		t.Fatalf("AppendComment with LF = %q, %v", b, err)
	}
	if got := string(sse.AppendRetry(nil, 3*time.Second)); got != "retry: 3000\n" {
		t.Fatalf("AppendRetry = %q", got)
	}
	if got := sse.AppendRetry(nil, 0); len(got) != 0 {
		t.Fatalf("AppendRetry(0) = %q", got)
	}
}

// TestRoundTrip encodes messages and decodes them back, through readers that
// split the stream everywhere.
func TestRoundTrip(t *testing.T) {
	t.Parallel()
	msgs := []sse.Message{
		{Data: []byte("plain")},
		{ID: "1", Type: "json", Data: []byte("{\n  \"a\": 1\n}")},
		{Data: []byte("")},
		{Data: []byte("\n")},
		{Data: []byte("cr\rcrlf\r\nlf\n")},
		{Comment: "between", Retry: time.Second, Data: []byte(" spaced ")},
		{ID: "2", Type: "ü", Data: []byte("a\x00b\xff")},
		{Data: bytes.Repeat([]byte("line\n"), 1000)},
	}
	var stream []byte
	var want []ev
	id := ""
	for _, m := range msgs {
		var err error
		if stream, err = m.AppendTo(stream); err != nil {
			t.Fatal(err)
		}
		if m.ID != "" {
			id = m.ID
		}
		typ := m.Type
		if typ == "" {
			typ = "message"
		}
		want = append(want, ev{id, typ, normalize(string(m.Data))})
	}
	for _, rd := range readers {
		got := decodeAll(rd.wrap(bytes.NewReader(stream)), 0)
		if got.err != io.EOF || !equalEvents(got.events, want) {
			t.Errorf("%s: got %q, %v\nwant %q", rd.name, clip(got.events), got.err, clip(want))
		}
		if got.retry != time.Second || got.comments[0] != "between" {
			t.Errorf("%s: retry %v, comments %q", rd.name, got.retry, got.comments)
		}
	}
}

// normalize turns every line ending into LF, as the wire does.
func normalize(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "\r\n", "\n"), "\r", "\n")
}
