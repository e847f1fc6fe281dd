// Package sseopenai makes the OpenAI Go SDK (github.com/openai/openai-go/v3)
// parse its streams with [github.com/b2ce5911/sse.Decoder]:
//
//	sseopenai.Register(sse.DefaultMaxEventSize)
//
// once, before the first request. Every streaming call of every client of
// the SDK then reads text/event-stream through it: CR-only line endings and
// a byte order mark are understood, an event over the limit is an error
// instead of whatever bufio.Scanner makes of it, and a stream that stops in
// the middle of an event ends with an error instead of passing for a
// complete answer. The module's README compares the two decoders.
package sseopenai

import (
	"io"

	"github.com/openai/openai-go/v3/packages/ssestream"

	ssellm "github.com/b2ce5911/sse/llm"
)

// Register makes the SDK decode every text/event-stream response (whatever
// its parameters, such as charset) with [NewDecoder] and the limit
// maxEventSize; maxEventSize <= 0 means sse.DefaultMaxEventSize, 16 MiB.
// The SDK's own decoder takes lines of up to 32 MiB: pass more than 16 MiB
// if a service sends events that large, such as images in base64.
//
// Register changes a registry of the SDK that it reads without a lock: call
// it before any request is made, such as in main or an init function.
func Register(maxEventSize int) {
	ssestream.RegisterDecoder("text/event-stream", func(body io.ReadCloser) ssestream.Decoder {
		return NewDecoder(body, maxEventSize)
	})
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
