package sse_test

import (
	"bytes"
	"errors"
	"io"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/b2ce5911/sse"
)

// reference is a deliberately naive reading of the WHATWG algorithm, one
// line and one rule at a time, that the fuzzer holds the Decoder to.
func reference(in []byte) decoded {
	var out decoded
	s := strings.TrimPrefix(string(in), "\xEF\xBB\xBF")
	var lines []string
	for {
		i := strings.IndexAny(s, "\r\n")
		if i < 0 {
			break // an unterminated last line is never processed
		}
		lines = append(lines, s[:i])
		if strings.HasPrefix(s[i:], "\r\n") {
			i++
		}
		s = s[i+1:]
	}
	var data, typ, idBuf strings.Builder
	hasData := false
	for _, line := range lines {
		if line == "" {
			out.lastID = idBuf.String()
			if hasData {
				t := typ.String()
				if t == "" {
					t = "message"
				}
				out.events = append(out.events, ev{out.lastID, t, strings.TrimSuffix(data.String(), "\n")})
			}
			data.Reset()
			typ.Reset()
			hasData = false
			continue
		}
		if line[0] == ':' {
			out.comments = append(out.comments, strings.TrimPrefix(line[1:], " "))
			continue
		}
		name, value, found := strings.Cut(line, ":")
		if found {
			value = strings.TrimPrefix(value, " ")
		}
		switch name {
		case "data":
			data.WriteString(value + "\n")
			hasData = true
		case "event":
			typ.Reset()
			typ.WriteString(value)
		case "id":
			if !strings.Contains(value, "\x00") {
				idBuf.Reset()
				idBuf.WriteString(value)
			}
		case "retry":
			if value != "" && strings.Trim(value, "0123456789") == "" {
				ms, err := strconv.ParseInt(value, 10, 64)
				if err != nil || ms > int64(1<<63-1)/int64(time.Millisecond) {
					out.retry = time.Duration(1<<63 - 1)
				} else {
					out.retry = time.Duration(ms) * time.Millisecond
				}
				out.hasRetry = true
			}
		}
	}
	out.err = io.EOF
	return out
}

func sameDecoding(t *testing.T, what string, got, want decoded) {
	t.Helper()
	if got.err != want.err || !equalEvents(got.events, want.events) || got.lastID != want.lastID ||
		got.retry != want.retry || got.hasRetry != want.hasRetry ||
		strings.Join(got.comments, "\x00") != strings.Join(want.comments, "\x00") || len(got.comments) != len(want.comments) {
		t.Fatalf("%s:\n got %+v\nwant %+v", what, got, want)
	}
}

func FuzzDecoder(f *testing.F) {
	for _, s := range []string{
		"data: a\n\n", "\xEF\xBB\xBFdata:a\r\rid: 1\r\ndata\n\n", "event: x\ndata: 1\r\n\r\n: c\n",
		"retry: 10\nid: \x00\ndata:  b\n\n", "data: cut", "\r\n\r\n\n\r", ":\n\nid\n\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		want := reference(in)
		sameDecoding(t, "whole", decodeAll(bytes.NewReader(in), 0), want)
		sameDecoding(t, "one byte at a time", decodeAll(iotest.OneByteReader(bytes.NewReader(in)), 0), want)

		// A small limit must end the stream with ErrEventTooLarge, after
		// exactly the events that fit, never with anything else.
		small := decodeAll(iotest.HalfReader(bytes.NewReader(in)), 16)
		if small.err != io.EOF && !errors.Is(small.err, sse.ErrEventTooLarge) {
			t.Fatalf("limited decode ended with %v", small.err)
		}
		if len(small.events) > len(want.events) || !equalEvents(small.events, want.events[:len(small.events)]) {
			t.Fatalf("limited decode gave %q, not a prefix of %q", small.events, want.events)
		}
		for _, e := range small.events {
			if len(e.data) > 16 {
				t.Fatalf("event of %d bytes passed a limit of 16", len(e.data))
			}
		}
	})
}

func FuzzRoundTrip(f *testing.F) {
	f.Add("1", "update", []byte("{\"a\":1}"), "note", int64(1500))
	f.Add("", "", []byte("a\r\nb\rc\n"), "", int64(0))
	f.Add("x\ny", "t", []byte(""), "", int64(-1))
	f.Fuzz(func(t *testing.T, id, typ string, data []byte, comment string, retryMs int64) {
		m := sse.Message{ID: id, Type: typ, Data: data, Comment: comment, Retry: time.Duration(retryMs) * time.Millisecond}
		wire, err := m.AppendTo([]byte("data: before\n\n"))
		invalid := strings.ContainsAny(id, "\r\n\x00") || strings.ContainsAny(typ, "\r\n") || strings.ContainsAny(comment, "\r\n")
		if invalid {
			if !errors.Is(err, sse.ErrInvalidField) || string(wire) != "data: before\n\n" {
				t.Fatalf("invalid message: AppendTo = %q, %v", wire, err)
			}
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		got := decodeAll(iotest.OneByteReader(bytes.NewReader(wire)), 0)
		wantTyp := typ
		if wantTyp == "" {
			wantTyp = "message"
		}
		want := []ev{{"", "message", "before"}, {id, wantTyp, normalize(string(data))}}
		if got.err != io.EOF || !equalEvents(got.events, want) {
			t.Fatalf("decoded %q, %v; want %q", got.events, got.err, want)
		}
		if (retryMs > 0) != got.hasRetry || (retryMs > 0 && got.retry != time.Duration(retryMs)*time.Millisecond) {
			t.Fatalf("retry %v, %v; sent %d ms", got.retry, got.hasRetry, retryMs)
		}
		if (comment != "") != (len(got.comments) == 1) || (comment != "" && got.comments[0] != comment) {
			t.Fatalf("comments %q; sent %q", got.comments, comment)
		}
	})
}
