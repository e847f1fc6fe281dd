package bench

import (
	"bytes"
	"io"
	"testing"
	"testing/iotest"

	"github.com/b2ce5911/sse"
)

// TestRefParse checks the reference parser against our Decoder, the spec
// count, on the mixed stream read whole, one byte at a time (every CRLF
// split across reads) and in halves.
func TestRefParse(t *testing.T) {
	stream, generated := MixedStream(256<<10, 2, 8)
	want, wantBytes, err := Parse(Ours, stream)
	if err != nil || want != generated {
		t.Fatalf("our Decoder: %d events (%v), the generator wrote %d", want, err, generated)
	}
	for name, r := range map[string]io.Reader{
		"whole":   bytes.NewReader(stream),
		"onebyte": iotest.OneByteReader(bytes.NewReader(stream)),
		"half":    iotest.HalfReader(bytes.NewReader(stream)),
	} {
		n, dataBytes := 0, 0
		if err := RefParse(r, func(_ []byte, d int) { n++; dataBytes += d }); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if n != want || dataBytes != wantBytes {
			t.Errorf("%s: %d events with %d data bytes, want %d with %d", name, n, dataBytes, want, wantBytes)
		}
	}
}

// TestRefAppend checks that what the reference encoder writes decodes to
// the event it was given.
func TestRefAppend(t *testing.T) {
	for _, data := range [][]byte{JSONEvent, BigEvent, {}} {
		b := RefAppend(nil, "42", "update", data)
		e, err := sse.NewDecoder(bytes.NewReader(b)).Decode()
		if err != nil {
			t.Fatal(err)
		}
		if e.ID != "42" || e.Type != "update" || !bytes.Equal(e.Bytes(), data) {
			t.Errorf("decoded id %q type %q data %q, want 42, update, %q", e.ID, e.Type, e.Bytes(), data)
		}
	}
}
