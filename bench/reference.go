package bench

import "bytes"

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

// RefParse is the reference parser, the physical limit of parsing: it
// walks an in-memory stream with no copying and no allocation, splits lines
// on LF, CR and CRLF, and calls dispatch with the event's type and the
// number of data bytes (lines joined by LF) at every blank line that ends
// an event with data, as the spec says. It skips what a real client must
// do: reading from a network stream, a leading BOM, the retry field,
// the NUL rule for ids, fields without a colon ("data" alone), size limits,
// and building the event's payload and id as strings.
func RefParse(stream []byte, dispatch func(typ []byte, dataLen int)) {
	lf, cr := -2, -2 // next LF and CR at or after the line start; -1: none
	var typ []byte
	dataLen, hasData := 0, false
	for start := 0; start < len(stream); {
		if lf != -1 && lf < start {
			lf = indexFrom(stream, start, '\n')
		}
		if cr != -1 && cr < start {
			cr = indexFrom(stream, start, '\r')
		}
		end, next := len(stream), len(stream)
		switch {
		case cr >= 0 && (lf < 0 || cr < lf):
			end, next = cr, cr+1
			if lf == cr+1 {
				next++
			}
		case lf >= 0:
			end, next = lf, lf+1
		}
		line := stream[start:end]
		start = next
		if len(line) == 0 {
			if hasData {
				dispatch(typ, dataLen-1)
			}
			typ, dataLen, hasData = nil, 0, false
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
			typ = value
		}
	}
}

func indexFrom(b []byte, from int, c byte) int {
	if i := bytes.IndexByte(b[from:], c); i >= 0 {
		return from + i
	}
	return -1
}
