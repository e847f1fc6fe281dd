package sse

import (
	"bytes"
	"io"
)

// format is a way to encode a value as the data of an event: JSON or XML.
// Both the writes of a Conn and JsonMessage and XmlMessage encode through
// encoderCache.encode, so that they send the same bytes.
type format struct {
	newEncoder func(io.Writer) valueEncoder
	trailer    string // what the encoder adds after every value, which is not data
}

// valueEncoder is what encoding/json and encoding/xml encoders share.
type valueEncoder interface{ Encode(v any) error }

// encoderCaches are the encoders of the JSON and XML writes of a Conn.
type encoderCaches struct{ json, xml encoderCache }

func (e *encoderCaches) of(f *format) *encoderCache {
	if f == &xmlFormat {
		return &e.xml
	}
	return &e.json
}

// encoderCache keeps one buffer and encoder of a format, so that encoding
// allocates no more than the encoder itself. Its zero value is ready to
// use; it is used with one format only.
type encoderCache struct {
	buf bytes.Buffer
	enc valueEncoder
}

// encode returns v encoded as event data, which stays valid until the
// next call. On an error the encoder is dropped: an xml.Encoder that
// failed half way keeps what it had written in a buffer of its own, and
// would write it ahead of the next value.
func (e *encoderCache) encode(f *format, v any) ([]byte, error) {
	if e.enc == nil {
		e.enc = f.newEncoder(&e.buf)
	}
	e.buf.Reset()
	if err := e.enc.Encode(v); err != nil {
		e.enc = nil
		return nil, err
	}
	return bytes.TrimSuffix(e.buf.Bytes(), bytesOf(f.trailer)), nil
}

// encodedMessage is v, encoded in format f, as a Message with id and typ.
func encodedMessage(f *format, id, typ string, v any) (Message, error) {
	m := Message{ID: id, Type: typ}
	if err := m.validate(); err != nil {
		return Message{}, err
	}
	var e encoderCache
	data, err := e.encode(f, v)
	if err != nil {
		return Message{}, err
	}
	m.Data = data
	return m, nil
}
