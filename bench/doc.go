// Package bench runs the same work through github.com/b2ce5911/sse, the
// libraries users would pick instead (github.com/tmaxmax/go-sse and
// github.com/r3labs/sse/v2) and a minimal hand-written reference that
// stands for the physical limit: encode, parse and publish as
// `go test -bench` benchmarks in this directory, and loopback fan-out with
// the load tool in cmd/fanout. BENCHMARKS.md at the repository root has the
// commands and the results.
//
// Every row of a table goes through the path the library's documentation
// intends; the adapters in this package say which one.
package bench
