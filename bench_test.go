package sse_test

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/b2ce5911/sse"
)

// jsonEvent is a typical ~100 byte JSON payload.
var jsonEvent = []byte(`{"id":12345,"user":"ada","action":"update","path":"/docs/intro","ts":1732368000,"ok":true}`)

func BenchmarkEncode(b *testing.B) {
	big := bytes.Repeat([]byte(strings.Repeat("x", 63)+"\n"), 64) // 4 KiB, 64 lines
	for _, bc := range []struct {
		name string
		msg  sse.Message
	}{
		{"json100B", sse.Message{ID: "1732368000-42", Type: "update", Data: jsonEvent}},
		{"4KiB64lines", sse.Message{ID: "1732368000-42", Type: "update", Data: big}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			buf, _ := bc.msg.AppendTo(nil)
			b.SetBytes(int64(len(buf)))
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				buf, _ = bc.msg.AppendTo(buf[:0])
			}
		})
	}
}

// mixedStream returns at least size bytes of a stream with every feature a
// decoder meets: LF, CRLF and CR endings, comments, ids, types, retry and
// multi-line data; and the number of events it dispatches. One event in
// bigEvery (none when 0) carries 4 KiB, in one line or in 64.
func mixedStream(size int, seed uint64, bigEvery int) ([]byte, int) {
	rng := rand.New(rand.NewPCG(seed, seed))
	endings := []string{"\n", "\r\n", "\r"}
	var buf bytes.Buffer
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
				buf.Write(jsonEvent[:20+rng.IntN(len(jsonEvent)-20)])
				buf.WriteString(nl)
			}
		}
		buf.WriteString(nl)
		events++
	}
	return buf.Bytes(), events
}

var benchStreams = sync.OnceValue(func() map[string][]byte {
	small, _ := mixedStream(16<<20, 1, 0)
	mixed, _ := mixedStream(16<<20, 1, 8)
	return map[string][]byte{"small": small, "mixed4KiB": mixed}
})

// BenchmarkDecode reads 16 MiB streams: "small" has events of about 100
// bytes only; "mixed4KiB" also has 4 KiB events, as real feeds do.
func BenchmarkDecode(b *testing.B) {
	for _, name := range []string{"small", "mixed4KiB"} {
		b.Run(name, func(b *testing.B) { benchmarkDecode(b, benchStreams()[name]) })
	}
}

func benchmarkDecode(b *testing.B, stream []byte) {
	want := 0
	for d := sse.NewDecoder(bytes.NewReader(stream)); ; want++ {
		if _, err := d.Decode(); err != nil {
			break
		}
	}
	b.SetBytes(int64(len(stream)))
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	b.ResetTimer()
	for range b.N {
		d := sse.NewDecoder(bytes.NewReader(stream))
		n := 0
		for {
			_, err := d.Decode()
			if err == io.EOF {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
			n++
		}
		if n != want {
			b.Fatalf("decoded %d events, want %d", n, want)
		}
	}
	b.StopTimer()
	runtime.ReadMemStats(&after)
	b.ReportMetric(float64(after.Mallocs-before.Mallocs)/float64(b.N*want), "allocs/event")
	b.ReportMetric(float64(len(stream))/float64(want), "B/event")
}

// benchServer streams b.N events written by write to a real client over
// loopback, which reads and discards them.
func benchServer(b *testing.B, write func(*sse.Conn) error) {
	done := make(chan struct{})
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer close(done)
		c, err := (&sse.Upgrader{Heartbeat: -1}).Upgrade(w, r)
		if err != nil {
			b.Error(err)
			return
		}
		defer c.Close()
		b.ReportAllocs()
		b.ResetTimer()
		for range b.N {
			if err := write(c); err != nil {
				b.Error(err)
				return
			}
		}
		b.StopTimer()
	}))
	defer ts.Close()
	resp, err := ts.Client().Get(ts.URL)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	go io.Copy(io.Discard, resp.Body)
	<-done
}

func BenchmarkConnWriteStringEvent(b *testing.B) {
	data := string(jsonEvent)
	benchServer(b, func(c *sse.Conn) error { return c.WriteStringEvent("update", data) })
}

func BenchmarkConnWriteJsonEvent(b *testing.B) {
	v := struct {
		ID     int    `json:"id"`
		User   string `json:"user"`
		Action string `json:"action"`
		Path   string `json:"path"`
	}{12345, "ada", "update", "/docs/intro"}
	benchServer(b, func(c *sse.Conn) error { return c.WriteJsonEvent("update", &v) })
}
