package sse

import (
	"encoding/json"
	"io"
)

// WriteJson sends v, marshalled as by json.Marshal, as an event of type
// "message". A marshal error is returned before anything is written.
func (c *Conn) WriteJson(v any) error { return c.WriteJsonEvent("", v) }

// WriteJsonEvent sends v, marshalled as by json.Marshal, as an event of type
// typ. A marshal error is returned before anything is written.
func (c *Conn) WriteJsonEvent(typ string, v any) error {
	return c.writeEncoded(typ, v, func(e *encoderCaches) *encoderCache { return &e.json }, newJSONEncoder)
}

func newJSONEncoder(w io.Writer) valueEncoder { return json.NewEncoder(w) }
