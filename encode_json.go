package sse

import (
	"bytes"
	"encoding/json"
)

// jsonState reuses one buffer and encoder for every JSON write of a Conn.
type jsonState struct {
	buf bytes.Buffer
	enc *json.Encoder
}

// marshal returns v as JSON, without the newline json.Encoder adds. The
// result is valid until the next call.
func (s *jsonState) marshal(v any) ([]byte, error) {
	if s.enc == nil {
		s.enc = json.NewEncoder(&s.buf)
	}
	s.buf.Reset()
	if err := s.enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(s.buf.Bytes(), []byte("\n")), nil
}

// WriteJson sends v, marshalled as by json.Marshal, as an event of type
// "message". A marshal error is returned before anything is written.
func (c *Conn) WriteJson(v any) error { return c.WriteJsonEvent("", v) }

// WriteJsonEvent sends v, marshalled as by json.Marshal, as an event of type
// typ. A marshal error is returned before anything is written.
func (c *Conn) WriteJsonEvent(typ string, v any) error { return c.writeMarshalled(typ, v, &c.json) }
