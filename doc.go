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
// An [Upgrader] turns an HTTP request into a [Conn]: it answers 200 with
// Content-Type text/event-stream and flushes at once, so that clients and
// proxies see the stream open. Its zero value works; [Upgrade] uses it.
//
//	func events(w http.ResponseWriter, r *http.Request) {
//		c, err := sse.Upgrade(w, r)
//		if err != nil {
//			return // Upgrade has answered the request
//		}
//		defer c.Close() // required: see Concurrency
//		for {
//			select {
//			case p := <-prices:
//				if err := c.WriteJsonEvent("price", p); err != nil {
//					return
//				}
//			case <-c.Done():
//				return // the client went away
//			}
//		}
//	}
//
// A Conn keeps idle streams alive with comment heartbeats, bounds every
// write with a deadline so that a client that stopped reading cannot hold a
// writer, and flushes through [net/http.ResponseController], which sees
// through middleware that wraps the ResponseWriter. It answers with
// Content-Encoding: identity, so that compression middlewares, some of
// which buffer a response's first kilobyte whatever the handler flushes,
// pass the stream through; [Upgrader.AllowCompression] lets one that
// flushes on every Flush compress it.
//
// # Hub
//
// A [Hub] serves topics to many clients: [Hub.Publish] encodes an event once
// and keeps it once, in its topic's history, which every subscriber reads
// from its own cursor at its own pace. A publisher never waits for a
// subscriber (unless [Hub.Backpressure] asks it to); one whose unsent events
// fall out of that bounded history is disconnected, and catches up by replay
// when it reconnects with Last-Event-ID, so a client sees every event of its
// topics in order or is cut off, never a silent hole. When the
// history no longer reaches back to a client's Last-Event-ID (too old, or
// from before a restart: ids carry an epoch), it receives a reset event
// instead, whose JSON data ([ResetData]) says why and from which id it
// resumes, and the application reloads its state. With [Hub.Recent] set, a
// client without a Last-Event-ID (a page just opened or reloaded) first gets
// its topics' newest events, once, then the live ones. [Hub.Subscribers]
// tells how many streams a topic has, for presence. Storage is a [Broker]:
// [MemoryBroker] by default, and others, such as Redis Streams, for many
// nodes.
//
// What one request can cost is bounded, each by a Hub field with a default:
// topics per subscriber (MaxTopics, 16), the length of a topic name
// (MaxTopicLength, 256 bytes), streams in all (MaxSubscribers, 100,000) and,
// when asked, per client (MaxPerClient, with ClientAddr behind a proxy), and
// the data of one event (MaxDataSize, 1 MiB). [Hub.ServeHTTP] answers a
// request beyond them with 400, 429 or 503 and a short reason, before any
// work is done on it; [Hub.Serve] and [Hub.Publish] return a [*LimitError].
//
// ServeHTTP serves any topic a request names unless [Hub.Authorize] says
// otherwise. With per-user topics ("user:42"), a common design, set it: it
// sees the request and the topics asked for, and returns those the request
// may have, or an error that answers 401 ([ErrUnauthorized]) or 403 without
// showing the error to the client (see the example of Hub.Authorize). The
// other way is a handler of one's own that authenticates, upgrades and
// calls Serve with the topics it chose.
//
// After a restart every client reconnects after the retry time it was
// sent, and browsers, which have no backoff, would all come back at once:
// each stream is sent [Upgrader.RetryTime] plus a random part of
// [Upgrader.RetryJitter] (half of RetryTime by default), never less.
//
// An EventSource on another origin is a CORS request: with credentials
// (new EventSource(url, {withCredentials: true}), to send cookies) the
// response must carry Access-Control-Allow-Origin with that exact origin,
// never "*", and Access-Control-Allow-Credentials: true, with Vary: Origin.
// EventSource sends no preflight, its Last-Event-ID header included; a
// fetch-based client that sets other headers, such as Authorization, does.
// Any CORS middleware wrapped around the Hub works: the Hub keeps the
// headers it set, and answers an OPTIONS request that reaches it with 204
// and no stream.
//
// # Client
//
// [Client] reads a stream the way a browser's EventSource does: it sends
// Accept: text/event-stream, follows redirects, and after an end of stream or
// a network error reconnects with Last-Event-ID, waiting the server's retry
// time, never less (backoff and jitter only add to it while attempts keep
// failing, up to a cap), until its context ends. A 204 stops it quietly; any
// other status but 200, or a response that is not an event stream, stops it
// with an error ([*StatusError], [ErrContentType]). Its zero value is ready
// to use; its exported fields set the method, body, headers, delays, a read
// timeout and hooks to observe it. [Client.Prepare] adjusts the request of
// every attempt, with the attempt's context: a bearer token refreshed for
// each one, a body rebuilt, a signature; the Client keeps Last-Event-ID
// itself, and an error from Prepare stops it.
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
// Every method of [Conn] is safe for concurrent use: writes are serialised,
// so a heartbeat, several publishers and a goroutine that calls Close may
// share a Conn. Close may be called from any goroutine, any number of
// times, and unblocks a write in progress; once one Close has returned,
// the package does not touch the ResponseWriter again.
//
// A Conn lives within the handler that upgraded it, since net/http's
// ResponseWriter must not be used after the handler returns: the handler
// must close the Conn before it returns (defer c.Close() right after
// Upgrade), and no goroutine may write to it afterwards. Close is what
// orders the heartbeat, which runs on a timer of its own, before the
// handler's return. Without it, a heartbeat still checks that the request
// has not ended before it writes, orders its writes before net/http's end
// of the request, and survives net/http's panic on a finished
// ResponseWriter; but one that is writing just as the handler returns
// races with net/http finishing the response. [Hub.Serve] closes its Conn
// itself. Where write deadlines cannot be set (see
// [Upgrader.WriteTimeout]), a write stuck on a client that stopped reading
// cannot be cut short: Close and [Hub.Close] stop waiting for it after
// WriteTimeout rather than hang, and the write stays inside the
// ResponseWriter until the client's connection fails (or
// http.Server.WriteTimeout closes it), so a handler must not return before
// its own writing goroutines have.
//
// A Hub detaches its HTTP/1.1 streams from net/http (see
// [Hub.DisableDetach]): from then on they are the Hub's, not the
// http.Server's, so a server that shuts down calls Hub.Shutdown as well as
// http.Server.Shutdown, which no longer waits for them.
//
// [Hub], [MemoryBroker] and [Upgrader] are safe for concurrent use; set
// their fields before first use. A [Client] may run many streams at once;
// its hooks run on the goroutine reading the stream.
//
// A Decoder is used by one goroutine at a time. A Message is plain data and
// encoding it does not retain it. Events returned by a Decoder may be passed
// to other goroutines but must not be modified; any number of goroutines may
// call [Event.Bytes], [Event.ReadJson] and [Event.ReadXml] on one event at
// once, while [Event.Data], a reader with a single read position, is for one
// goroutine at a time.
//
// # Spec compliance
//
// Encoding and parsing follow the "Server-sent events" section of the WHATWG
// HTML Living Standard, https://html.spec.whatwg.org/multipage/server-sent-events.html,
// with one documented difference: bytes are passed through as they are,
// where a browser replaces invalid UTF-8 with U+FFFD.
package sse
