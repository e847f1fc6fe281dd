package bench

import (
	"bytes"
	"io"
)

// RefAppend is the reference encoder, the physical limit of encoding: it
// appends "id: …\nevent: …\ndata: …\n\n", one data line per LF in data.
// Unlike a library it validates nothing (an id or type with a line break
// corrupts the stream) and splits data on LF only, not on CR or CRLF.
func RefAppend(dst []byte, id, typ string, data []byte) []byte {
	if id != "" {
		dst = append(dst, "id: "...)
		dst = append(dst, id...)
		dst = append(dst, '\n')
	}
	if typ != "" {
		dst = append(dst, "event: "...)
		dst = append(dst, typ...)
		dst = append(dst, '\n')
	}
	for {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			break
		}
		dst = append(dst, "data: "...)
		dst = append(dst, data[:i]...)
		dst = append(dst, '\n')
		data = data[i+1:]
	}
	dst = append(dst, "data: "...)
	dst = append(dst, data...)
	return append(dst, '\n', '\n')
}

// RefParse is the reference parser, the physical limit of a client's
// parsing: it reads the stream from r into one buffer (64 KiB, grown only
// for a longer line), splits lines on LF, CR and CRLF with bytes.IndexByte
// (remembering the next LF and CR, so each byte is searched once), and
// calls dispatch with the event's type and the number of data bytes (lines
// joined by LF) at every blank line that ends an event with data, as the
// spec says. It does not allocate per event. It skips what a real client
// must also do: a leading BOM, the retry field, the NUL rule for ids,
// fields without a colon ("data" alone), a size limit, keeping the last
// event id, and building the payload.
func RefParse(r io.Reader, dispatch func(typ []byte, dataLen int)) error {
	buf := make([]byte, 64<<10)
	typ := make([]byte, 0, 64)
	lf, cr := finder{pos: -1}, finder{pos: -1}
	start, end, eof := 0, 0, false
	dataLen, hasData := 0, false
	for {
		l, c := lf.next(buf, start, end, '\n'), cr.next(buf, start, end, '\r')
		lineEnd, next := -1, -1
		switch {
		case c >= 0 && (l < 0 || c < l):
			if c == end-1 && !eof {
				break // the LF of a CRLF may come with the next read
			}
			lineEnd, next = c, c+1
			if l == c+1 {
				next++
			}
		case l >= 0:
			lineEnd, next = l, l+1
		}
		if lineEnd < 0 {
			if eof {
				return nil // an unterminated event is discarded
			}
			if start > 0 {
				copy(buf, buf[start:end])
				lf.shift(start)
				cr.shift(start)
				end -= start
				start = 0
			}
			if end == len(buf) {
				buf = append(buf, make([]byte, len(buf))...)
			}
			n, err := r.Read(buf[end:])
			end += n
			if err == io.EOF {
				eof = true
			} else if err != nil {
				return err
			}
			continue
		}
		line := buf[start:lineEnd]
		start = next
		if len(line) == 0 {
			if hasData {
				dispatch(typ, dataLen-1)
			}
			typ, dataLen, hasData = typ[:0], 0, false
			continue
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			continue // a comment, or a field without a value
		}
		value := line[colon+1:]
		if len(value) > 0 && value[0] == ' ' {
			value = value[1:]
		}
		switch string(line[:colon]) {
		case "data":
			dataLen += len(value) + 1
			hasData = true
		case "event":
			typ = append(typ[:0], value...)
		}
	}
}

// finder remembers where the next occurrence of a byte is.
type finder struct {
	pos     int // index of the byte found last, or -1
	scanned int // no occurrence in [start, scanned) but at pos
}

func (f *finder) next(buf []byte, start, end int, c byte) int {
	if f.pos >= start {
		return f.pos
	}
	from := max(start, f.scanned)
	if i := bytes.IndexByte(buf[from:end], c); i >= 0 {
		f.pos, f.scanned = from+i, from+i
		return f.pos
	}
	f.pos, f.scanned = -1, end
	return -1
}

// shift follows the buffer's contents moving n bytes to the front.
func (f *finder) shift(n int) {
	if f.pos >= 0 {
		f.pos -= n
	}
	f.scanned = max(0, f.scanned-n)
}
