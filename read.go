package sse

import (
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
)

// ReadJson decodes the event's data as JSON into v, the mirror of a server's
// WriteJson. It decodes [Event.Bytes] without copying it, so Data can still
// be read afterwards, and like Bytes it is safe for concurrent use. Errors
// are those of encoding/json, wrapped.
func (e *Event) ReadJson(v any) error { return e.unmarshal("JSON", json.Unmarshal, v) }

// ReadXml decodes the event's data as XML into v, the mirror of a server's
// WriteXml. It decodes [Event.Bytes] without copying it, so Data can still
// be read afterwards, and like Bytes it is safe for concurrent use. Errors
// are those of encoding/xml, wrapped.
func (e *Event) ReadXml(v any) error { return e.unmarshal("XML", xml.Unmarshal, v) }

func (e *Event) unmarshal(format string, unmarshal func([]byte, any) error, v any) error {
	if e == nil {
		return errors.New("sse: nil event")
	}
	if err := unmarshal(e.Bytes(), v); err != nil {
		return fmt.Errorf("sse: event data is not the %s wanted: %w", format, err)
	}
	return nil
}
