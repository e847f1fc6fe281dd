package sse

import (
	"encoding/xml"
	"io"
)

// WriteXml sends v, marshalled as by xml.Marshal, as an event of type
// "message". A marshal error is returned before anything is written.
func (c *Conn) WriteXml(v any) error { return c.WriteXmlEvent("", v) }

// WriteXmlEvent sends v, marshalled as by xml.Marshal, as an event of type
// typ. A marshal error is returned before anything is written.
func (c *Conn) WriteXmlEvent(typ string, v any) error {
	return c.writeEncoded(typ, v, func(e *encoderCaches) *encoderCache { return &e.xml }, newXMLEncoder)
}

func newXMLEncoder(w io.Writer) valueEncoder { return xml.NewEncoder(w) }
