package sse

import (
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
)

var errNilEvent = errors.New("sse: nil event")

// ReadJson decodes the event's data as JSON into v, the mirror of a server's
// WriteJson. It reads [Event.Bytes] without copying it, so it does not
// consume Data. Errors are those of encoding/json, wrapped.
func (e *Event) ReadJson(v any) error {
	if e == nil {
		return errNilEvent
	}
	if err := json.Unmarshal(e.Bytes(), v); err != nil {
		return fmt.Errorf("sse: event data is not the JSON wanted: %w", err)
	}
	return nil
}

// ReadXml decodes the event's data as XML into v, the mirror of a server's
// WriteXml. It reads [Event.Bytes] without copying it, so it does not
// consume Data. Errors are those of encoding/xml, wrapped.
func (e *Event) ReadXml(v any) error {
	if e == nil {
		return errNilEvent
	}
	if err := xml.Unmarshal(e.Bytes(), v); err != nil {
		return fmt.Errorf("sse: event data is not the XML wanted: %w", err)
	}
	return nil
}
