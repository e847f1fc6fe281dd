package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"os"

	"github.com/b2ce5911/sse"
)

// printer writes events to standard output in the format of -o, and
// flushes each one: a reader at the other end of a pipe sees it at once.
type printer struct {
	w      *bufio.Writer
	format string
	color  bool
	json   *json.Encoder
}

// ANSI styles of the text format.
const (
	styleField = "\x1b[2m"    // field names: dim
	styleID    = "\x1b[33m"   // id values: yellow
	styleType  = "\x1b[1;36m" // event types: bold cyan
	styleReset = "\x1b[0m"
)

func newPrinter(out io.Writer, format, color string) (*printer, error) {
	p := &printer{w: bufio.NewWriter(out), format: format}
	switch format {
	case "text", "data":
	case "json":
		p.json = json.NewEncoder(p.w)
		p.json.SetEscapeHTML(false)
	default:
		return nil, usagef("-o must be text, json or data, got %q", format)
	}
	switch color {
	case "auto":
		p.color = isTerminal(out) && os.Getenv("NO_COLOR") == "" && os.Getenv("TERM") != "dumb"
	case "always":
		p.color = true
	case "never":
	default:
		return nil, usagef("-color must be auto, always or never, got %q", color)
	}
	return p, nil
}

// isTerminal reports whether w is a terminal, as far as the standard
// library can tell: a character device.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// jsonEvent is an event in the json format, one per line.
type jsonEvent struct {
	ID   string `json:"id"`
	Type string `json:"type"`
	Data string `json:"data"`
}

func (p *printer) print(e *sse.Event) error {
	data := e.Bytes()
	switch p.format {
	case "json":
		if err := p.json.Encode(jsonEvent{e.ID, e.Type, string(data)}); err != nil {
			return err
		}
	case "data":
		p.w.Write(data)
		p.w.WriteByte('\n')
	default:
		// The text format is the wire format (a file of it is an event
		// stream again), with the id of every event and the type of those
		// that are not messages.
		if e.ID != "" {
			p.field("id", e.ID, styleID)
		}
		if e.Type != "message" {
			p.field("event", e.Type, styleType)
		}
		for {
			line, rest, more := bytes.Cut(data, []byte("\n"))
			p.field("data", string(line), "")
			if !more {
				break
			}
			data = rest
		}
		p.w.WriteByte('\n')
	}
	return p.w.Flush()
}

func (p *printer) field(name, value, style string) {
	if p.color {
		p.w.WriteString(styleField + name + ":" + styleReset)
	} else {
		p.w.WriteString(name + ":")
	}
	if value != "" {
		p.w.WriteByte(' ')
		if p.color && style != "" {
			value = style + value + styleReset
		}
		p.w.WriteString(value)
	}
	p.w.WriteByte('\n')
}
