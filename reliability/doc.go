// Package reliability holds the whole-system tests of the sse module:
// server restarts under a steady publisher (in memory, on Redis Streams and
// on PostgreSQL), PostgreSQL crashes under load, slow and frozen clients,
// ten thousand streams over HTTP/1.1 and HTTP/2 and 19,000 idle detached
// ones, a client that vanishes without a FIN, hostile input, middlewares
// and proxies, nginx among them (TestHubBehindNginx starts its own). The
// Hub's tests run on detached streams, its default on HTTP/1.1, and where
// the path matters with DisableDetach as well.
//
// Every test runs a short version by default, which CI runs with -race.
// Set SSE_LONG=1 for the long versions, whose figures the README quotes.
// TestScaleDetached opens 19,000 streams unless -short is set.
// Tests listen on 127.0.0.1 or on unix sockets only and stop all they
// start, but for TestVanishedClient: it needs root, makes a network
// namespace linked by a veth pair on a private /30 of 10.200.0.0/16, and
// listens on this end's address; it removes both when it ends.
package reliability
