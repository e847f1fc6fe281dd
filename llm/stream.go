// Package ssellm makes the official OpenAI and Anthropic Go SDKs parse their
// streams with [sse.Decoder] instead of their own bufio.Scanner-based
// decoder: import github.com/b2ce5911/sse/llm/openai or
// github.com/b2ce5911/sse/llm/anthropic and call its Register once at start.
//
// This package holds what both adapters share: [Stream], an sse.Decoder in
// the Next/Event/Err/Close shape of the SDKs' ssestream.Decoder, with an end
// of stream in the middle of an event reported as an error.
package ssellm

import (
	"errors"
	"fmt"
	"io"

	"github.com/b2ce5911/sse"
)

// ErrCut is returned (wrapped) by [Stream.Err] when the stream ended
// cleanly, at the HTTP level, in the middle of an event: the event is
// discarded, as the standard says, and the end is reported instead of passing
// for a complete answer. It wraps io.ErrUnexpectedEOF.
var ErrCut = fmt.Errorf("sse: stream ended in the middle of an event: %w", io.ErrUnexpectedEOF)

// Stream reads events from a response body with an [sse.Decoder].
//
// A Stream is not safe for concurrent use, except that Close may be called
// from another goroutine to stop a Next waiting for the body, when the body
// allows it (an http.Response body does); the SDKs read a stream from one
// goroutine. Its zero value is not usable: create one with [NewStream].
type Stream struct {
	body io.ReadCloser
	tail *tailReader
	dec  *sse.Decoder
	cur  *sse.Event
	err  error
}

// NewStream returns a Stream that decodes body with an event size limit of
// maxEventSize bytes; maxEventSize <= 0 means [sse.DefaultMaxEventSize].
// An event over the limit ends the stream with an error wrapping
// [sse.ErrEventTooLarge].
func NewStream(body io.ReadCloser, maxEventSize int) *Stream {
	t := &tailReader{r: body}
	d := sse.NewDecoder(t)
	d.SetMaxEventSize(maxEventSize)
	return &Stream{body: body, tail: t, dec: d}
}

// Next reads the next event and reports whether there is one. At the end of
// the stream, or after an error, it returns false and Err tells which.
func (s *Stream) Next() bool {
	if s.err != nil {
		return false
	}
	e, err := s.dec.Decode()
	switch {
	case err != nil:
		s.err = err
	case s.tail.added > 0:
		// Only the line endings tailReader added after the body ended
		// finished this event: the stream stopped inside it.
		s.err = ErrCut
	default:
		s.cur = e
		return true
	}
	s.cur = nil
	return false
}

// Type returns the type of the current event, "" when the stream named none
// (as the SDKs' own decoders do; the standard calls that type "message", so
// "event: message" also gives "").
func (s *Stream) Type() string {
	if s.cur == nil || s.cur.Type == "message" {
		return ""
	}
	return s.cur.Type
}

// Data returns the payload of the current event: its data lines joined by
// LF, without the LF after the last line that the SDKs' decoders keep. It
// must not be modified.
func (s *Stream) Data() []byte {
	if s.cur == nil {
		return nil
	}
	return s.cur.Bytes()
}

// Err returns nil after a clean end of stream, [ErrCut] (wrapped) when the
// stream ended inside an event, an error wrapping [sse.ErrEventTooLarge] for
// an event over the limit, and otherwise the error that reading the body
// failed with, such as io.ErrUnexpectedEOF for a dropped connection.
func (s *Stream) Err() error {
	if errors.Is(s.err, io.EOF) {
		return nil
	}
	return s.err
}

// Close closes the body.
func (s *Stream) Close() error { return s.body.Close() }

// tailReader passes a body through and, once the body ends cleanly, adds two
// LFs before io.EOF. They finish any line and event the stream left open and
// add nothing to a stream that ended at an event boundary (a blank line
// without data dispatches nothing), so an event the Decoder returns once they
// were read is one that the stream cut. The Decoder reads only when it has no
// complete line left, so every event the stream did finish has been returned
// before the added bytes are read.
type tailReader struct {
	r     io.Reader
	ended bool // the body returned io.EOF
	added int  // how many of the two LFs were read
}

func (t *tailReader) Read(p []byte) (int, error) {
	if !t.ended {
		n, err := t.r.Read(p)
		if err != io.EOF {
			return n, err
		}
		t.ended = true
		if n > 0 {
			return n, nil
		}
	}
	if t.added == 2 || len(p) == 0 {
		return 0, io.EOF
	}
	n := copy(p, "\n\n"[t.added:])
	t.added += n
	return n, nil
}
