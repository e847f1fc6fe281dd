package sse

import (
	"encoding/xml"
	"io"
)

// xmlFormat is XML as by xml.Marshal.
var xmlFormat = format{
	newEncoder: func(w io.Writer) valueEncoder { return xml.NewEncoder(w) },
}

// WriteXml sends v, marshalled as by xml.Marshal, as an event of type
// "message". A marshal error is returned before anything is written.
func (c *Conn) WriteXml(v any) error { return c.writeEncoded(&xmlFormat, "", "", v) }

// WriteXmlEvent sends v, marshalled as by xml.Marshal, as an event of type
// typ. A marshal error is returned before anything is written.
func (c *Conn) WriteXmlEvent(typ string, v any) error {
	return c.writeEncoded(&xmlFormat, "", typ, v)
}

// WriteXmlEventWithID sends v, marshalled as by xml.Marshal, as an event
// of type typ with the given id, so that a client can resume after it. A
// marshal error, or an invalid id or type (wrapping ErrInvalidField), is
// returned before anything is written.
func (c *Conn) WriteXmlEventWithID(id, typ string, v any) error {
	return c.writeEncoded(&xmlFormat, id, typ, v)
}

// XmlMessage returns v, marshalled as by xml.Marshal, as the data of a
// Message with the given id and type, for [Hub.Publish] or anything else
// that takes a Message. Its data is what [Conn.WriteXmlEventWithID] would
// send. A marshal error, or an invalid id or type (wrapping
// ErrInvalidField), returns the zero Message.
func XmlMessage(id, typ string, v any) (Message, error) {
	return encodedMessage(&xmlFormat, id, typ, v)
}
