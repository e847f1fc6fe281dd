package sse

import (
	"bytes"
	"encoding/xml"
)

// xmlState reuses one buffer and encoder for every XML write of a Conn.
type xmlState struct {
	buf bytes.Buffer
	enc *xml.Encoder
}

// marshal returns v as XML; the result is valid until the next call.
func (s *xmlState) marshal(v any) ([]byte, error) {
	if s.enc == nil {
		s.enc = xml.NewEncoder(&s.buf)
	}
	s.buf.Reset()
	if err := s.enc.Encode(v); err != nil {
		return nil, err
	}
	return s.buf.Bytes(), nil
}

// WriteXml sends v, marshalled as by xml.Marshal, as an event of type
// "message". A marshal error is returned before anything is written.
func (c *Conn) WriteXml(v any) error { return c.WriteXmlEvent("", v) }

// WriteXmlEvent sends v, marshalled as by xml.Marshal, as an event of type
// typ. A marshal error is returned before anything is written.
func (c *Conn) WriteXmlEvent(typ string, v any) error { return c.writeMarshalled(typ, v, &c.xml) }
