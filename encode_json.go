package sse

import (
	"encoding/json"
	"io"
)

// jsonFormat is JSON as by json.Marshal: json.Encoder escapes HTML as
// Marshal does, and ends every value with a newline, which is not data.
var jsonFormat = format{
	newEncoder: func(w io.Writer) valueEncoder { return json.NewEncoder(w) },
	trailer:    "\n",
}

// WriteJson sends v, marshalled as by json.Marshal, as an event of type
// "message". A marshal error is returned before anything is written.
func (c *Conn) WriteJson(v any) error { return c.writeEncoded(&jsonFormat, "", "", v) }

// WriteJsonEvent sends v, marshalled as by json.Marshal, as an event of type
// typ. A marshal error is returned before anything is written.
func (c *Conn) WriteJsonEvent(typ string, v any) error {
	return c.writeEncoded(&jsonFormat, "", typ, v)
}

// WriteJsonEventWithID sends v, marshalled as by json.Marshal, as an event
// of type typ with the given id, so that a client can resume after it. A
// marshal error, or an invalid id or type (wrapping ErrInvalidField), is
// returned before anything is written.
func (c *Conn) WriteJsonEventWithID(id, typ string, v any) error {
	return c.writeEncoded(&jsonFormat, id, typ, v)
}

// JsonMessage returns v, marshalled as by json.Marshal, as the data of a
// Message with the given id and type, for [Hub.Publish] or anything else
// that takes a Message. Its data is what [Conn.WriteJsonEventWithID] would
// send. A marshal error, or an invalid id or type (wrapping
// ErrInvalidField), returns the zero Message.
func JsonMessage(id, typ string, v any) (Message, error) {
	return encodedMessage(&jsonFormat, id, typ, v)
}
