// Package sse implements Server-Sent Events: the text/event-stream wire
// format, a server side that writes it and a client side that reads it.
//
// # Wire format
//
// [Message] is an event as a server writes it and [Event] one as a client
// receives it. [Message.AppendTo] is the one encoder: it splits data on every
// line break and refuses ids, types and comments that could inject fields, so
// that what a client decodes is what the server meant. [Decoder] is the one
// parser; it reads any io.Reader, an HTTP response body included.
//
// # Server
//
// # Client
//
// [Client] reads a stream the way a browser's EventSource does: it sends
// Accept: text/event-stream, follows redirects, and after an end of stream or
// a network error reconnects with Last-Event-ID, waiting the server's retry
// time (with capped, jittered backoff while attempts keep failing) until its
// context ends. A 204 stops it quietly; any other status but 200, or a
// response that is not an event stream, stops it with an error
// ([*StatusError], [ErrContentType]). Its zero value is ready to use; its
// exported fields set the method, body, headers, delays, a read timeout and
// hooks to observe it.
//
//	c := &sse.Client{ReadTimeout: time.Minute}
//	for e, err := range c.Events(ctx, "https://example.com/stream") {
//		if err != nil {
//			return err // the stream stopped for good, or ctx ended
//		}
//		var p Price
//		if err := e.ReadJson(&p); err == nil {
//			fmt.Println(e.ID, p)
//		}
//	}
//
// [Client.Notify] does the same onto a channel. The classic [Notify] makes a
// single connection and returns when it ends. Both share one connection
// routine with the iterator. [Event.ReadJson] and [Event.ReadXml] decode an
// event's data, the mirror of the server's JSON and XML writers.
//
// The conformance/testservice command lets LaunchDarkly's sse-contract-tests
// harness check the Client; conformance/run runs it.
//
// # Concurrency
//
// A Decoder is used by one goroutine at a time. A Message is plain data and
// encoding it does not retain it. Events returned by a Decoder may be passed
// to other goroutines but must not be modified.
//
// # Spec compliance
//
// Encoding and parsing follow the "Server-sent events" section of the WHATWG
// HTML Living Standard, https://html.spec.whatwg.org/multipage/server-sent-events.html,
// with one documented difference: bytes are passed through as they are,
// where a browser replaces invalid UTF-8 with U+FFFD.
package sse
