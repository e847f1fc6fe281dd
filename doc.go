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
