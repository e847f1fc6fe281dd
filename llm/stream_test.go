package ssellm_test

import (
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"

	ssellm "github.com/b2ce5911/sse/llm"
)

// TestStreamEnd checks how a Stream tells a stream that ended between
// events from one that ended inside an event, whatever the line endings and
// however the body splits its reads.
func TestStreamEnd(t *testing.T) {
	for _, tc := range []struct {
		body string
		data []string
		cut  bool
	}{
		{"", nil, false},
		{"data: a\n\n", []string{"a"}, false},
		{"data: a\r\r", []string{"a"}, false},
		{"data: a\r\n\r\n", []string{"a"}, false},
		{"data: a\n\n: ping\n", []string{"a"}, false},
		{"data: a\n\nevent: x\n", []string{"a"}, false}, // a block without data is never dispatched
		{"data: a\n\ndata: b", []string{"a"}, true},
		{"data: a\n\ndata: b\n", []string{"a"}, true},
		{"data: a\n\ndata: b\r", []string{"a"}, true},
		{"data: a\n\ndata: b\r\n", []string{"a"}, true},
		{"data: a\n\ndata:", []string{"a"}, true},
		{"data: a\ndata: b", nil, true},
	} {
		for name, wrap := range map[string]func(io.Reader) io.Reader{
			"whole":       func(r io.Reader) io.Reader { return r },
			"one byte":    iotest.OneByteReader,
			"data ending": iotest.DataErrReader,
		} {
			s := ssellm.NewStream(io.NopCloser(wrap(strings.NewReader(tc.body))), 0)
			var got []string
			for s.Next() {
				got = append(got, string(s.Data()))
			}
			err := s.Err()
			if strings.Join(got, "|") != strings.Join(tc.data, "|") || tc.cut != errors.Is(err, ssellm.ErrCut) || !tc.cut && err != nil {
				t.Errorf("%q (%s): got %q, %v; want %q, cut %v", tc.body, name, got, err, tc.data, tc.cut)
			}
		}
	}
}

// TestStreamType checks that an event the stream named no type for has the
// type "", as the SDKs' decoders give it.
func TestStreamType(t *testing.T) {
	s := ssellm.NewStream(io.NopCloser(strings.NewReader("data: a\n\nevent: message\ndata: b\n\nevent: ping\ndata: c\n\n")), 0)
	var got []string
	for s.Next() {
		got = append(got, s.Type())
	}
	if strings.Join(got, ",") != ",,ping" || s.Err() != nil {
		t.Errorf("got types %q, %v; want \"\", \"\", ping", got, s.Err())
	}
}
