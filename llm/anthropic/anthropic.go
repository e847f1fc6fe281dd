// Package sseanthropic makes the Anthropic Go SDK
// (github.com/anthropics/anthropic-sdk-go/v2) parse its streams with
// [github.com/b2ce5911/sse.Decoder]:
//
//	sseanthropic.Register(sse.DefaultMaxEventSize)
//
// once, before the first request. Every streaming call of every client of
// the SDK then reads text/event-stream through it: CR-only line endings and
// a byte order mark are understood, an event over the limit is an error
// instead of whatever bufio.Scanner makes of it, and a stream that stops in
// the middle of an event ends with an error instead of passing for a
// complete answer. The module's README compares the two decoders.
package sseanthropic

import (
	"io"

	"github.com/anthropics/anthropic-sdk-go/v2/packages/ssestream"

	ssellm "github.com/b2ce5911/sse/llm"
)

// ContentTypes are the Content-Type values that Register installs the
// decoder for: the ones the Anthropic API and common gateways send. The SDK
// looks its registry up by the header exactly as the server sent it, so
// every spelling needs an entry of its own, and since RegisterDecoder
// lowercases its key, a header with capitals (charset=UTF-8) never finds
// one. The SDK reads a response that is not listed with its own decoder;
// register [NewDecoder] for a lowercase spelling that is missing.
var ContentTypes = []string{
	"text/event-stream",
	"text/event-stream; charset=utf-8",
	"text/event-stream;charset=utf-8",
}

// Register makes the SDK decode the text/event-stream responses listed in
// [ContentTypes] with [NewDecoder] and the limit maxEventSize;
// maxEventSize <= 0 means sse.DefaultMaxEventSize, 16 MiB. The SDK's own
// decoder takes lines of up to 32 MiB: pass more than 16 MiB if a service
// sends events that large, such as documents in base64.
//
// Register changes a registry of the SDK that it reads without a lock: call
// it before any request is made, such as in main or an init function.
func Register(maxEventSize int) {
	for _, ct := range ContentTypes {
		ssestream.RegisterDecoder(ct, func(body io.ReadCloser) ssestream.Decoder {
			return NewDecoder(body, maxEventSize)
		})
	}
}

// NewDecoder returns an ssestream.Decoder that reads body with an
// [github.com/b2ce5911/sse.Decoder] limited to maxEventSize bytes per event (<= 0 means
// sse.DefaultMaxEventSize), for use with ssestream.RegisterDecoder under
// another content type. Its Err is nil after a clean end, wraps
// [ssellm.ErrCut] when the stream ended inside an event, wraps
// sse.ErrEventTooLarge for an event over the limit, and is otherwise the
// error reading body failed with.
func NewDecoder(body io.ReadCloser, maxEventSize int) ssestream.Decoder {
	return decoder{ssellm.NewStream(body, maxEventSize)}
}

type decoder struct{ *ssellm.Stream }

func (d decoder) Event() ssestream.Event {
	return ssestream.Event{Type: d.Type(), Data: d.Data()}
}
