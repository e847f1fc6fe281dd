package bench

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"strings"
)

// JSONEvent is a typical ~100 byte JSON payload.
var JSONEvent = []byte(`{"id":12345,"user":"ada","action":"update","path":"/docs/intro","ts":1732368000,"ok":true}`)

// BigEvent is 4 KiB of data in 64 lines.
var BigEvent = bytes.Repeat([]byte(strings.Repeat("x", 63)+"\n"), 64)[:4095]

// MixedStream returns at least size bytes of a stream with every feature a
// decoder meets: LF, CRLF and CR endings, comments, ids, types, retry and
// multi-line data; and the number of events it dispatches. One event in
// bigEvery (none when 0) carries 4 KiB, in one line or in 64. It is the
// generator of the library's own decoder benchmark (bench_test.go at the
// repository root), copied since test files cannot be imported.
func MixedStream(size int, seed uint64, bigEvery int) ([]byte, int) {
	rng := rand.New(rand.NewPCG(seed, seed))
	endings := []string{"\n", "\r\n", "\r"}
	var buf bytes.Buffer
	buf.Grow(size + 8<<10)
	events := 0
	for buf.Len() < size {
		nl := endings[rng.IntN(len(endings))]
		switch rng.IntN(10) {
		case 0:
			buf.WriteString(": keep-alive" + nl)
		case 1:
			buf.WriteString("retry: 3000" + nl)
		}
		if rng.IntN(2) == 0 {
			fmt.Fprintf(&buf, "id: %d%s", events, nl)
		}
		if rng.IntN(3) == 0 {
			buf.WriteString("event: update" + nl)
		}
		switch {
		case bigEvery > 0 && rng.IntN(bigEvery) == 0 && rng.IntN(2) == 0:
			buf.WriteString("data: " + strings.Repeat("y", 4096) + nl)
		case bigEvery > 0 && rng.IntN(bigEvery) == 0:
			for range 64 {
				buf.WriteString("data: " + strings.Repeat("z", 58) + nl)
			}
		default:
			for range 1 + rng.IntN(3)*rng.IntN(2) {
				buf.WriteString("data: ")
				buf.Write(JSONEvent[:20+rng.IntN(len(JSONEvent)-20)])
				buf.WriteString(nl)
			}
		}
		buf.WriteString(nl)
		events++
	}
	return buf.Bytes(), events
}
