// Package reliability holds the whole-system tests of the sse module:
// server restarts under a steady publisher (in memory, on Redis
// Streams and on PostgreSQL), PostgreSQL crashes under load, slow and frozen clients, ten thousand streams over HTTP/1.1 and
// HTTP/2, hostile input and proxies.
//
// Every test runs a short version by default, which CI runs with -race.
// Set SSE_LONG=1 for the long versions, whose figures the README quotes.
// Tests listen on 127.0.0.1 or on unix sockets only and stop all they start.
package reliability
