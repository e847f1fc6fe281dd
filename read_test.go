package sse_test

import (
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"

	"github.com/b2ce5911/sse"
)

type readPoint struct {
	XMLName xml.Name `json:"-" xml:"point"`
	X       int      `json:"x" xml:"x,attr"`
	Label   string   `json:"label" xml:"label"`
}

func TestEventReadJsonXml(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		stream  string
		read    func(e *sse.Event, v any) error
		want    readPoint
		wantErr func(error) bool
	}{
		{"json", "data: {\"x\": 1,\ndata:  \"label\": \"a\\nb\"}\n\n", (*sse.Event).ReadJson, readPoint{X: 1, Label: "a\nb"}, nil},
		{"xml", "data: <point x=\"2\">\ndata: <label>b</label></point>\n\n", (*sse.Event).ReadXml, readPoint{XMLName: xml.Name{Local: "point"}, X: 2, Label: "b"}, nil},
		{"bad json", "data: {\"x\": \"one\"}\n\n", (*sse.Event).ReadJson, readPoint{}, func(err error) bool {
			var te *json.UnmarshalTypeError
			return errors.As(err, &te) && strings.HasPrefix(err.Error(), "sse: ")
		}},
		{"truncated json", "data: {\"x\": 1\n\n", (*sse.Event).ReadJson, readPoint{X: 1}, func(err error) bool { return err != nil }},
		{"bad xml", "data: <point><label>b</point>\n\n", (*sse.Event).ReadXml, readPoint{}, func(err error) bool {
			var se *xml.SyntaxError
			return errors.As(err, &se)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e, err := sse.NewDecoder(strings.NewReader(tt.stream)).Decode()
			if err != nil {
				t.Fatal(err)
			}
			var got readPoint
			err = tt.read(e, &got)
			if tt.wantErr == nil && err != nil || tt.wantErr != nil && !tt.wantErr(err) {
				t.Fatalf("error = %v", err)
			}
			if tt.wantErr == nil && got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
			if rest, _ := io.ReadAll(e.Data); len(rest) == 0 || string(rest) != string(e.Bytes()) {
				t.Errorf("decoding consumed the event's Data: %q left", rest)
			}
		})
	}
}

func TestEventReadHandBuilt(t *testing.T) {
	t.Parallel()
	e := &sse.Event{Data: strings.NewReader(`{"x": 3}`)}
	var p readPoint
	if err := e.ReadJson(&p); err != nil || p.X != 3 {
		t.Errorf("ReadJson = %v, %+v", err, p)
	}
	var nilEvent *sse.Event
	if err := nilEvent.ReadXml(&p); err == nil {
		t.Error("no error for a nil event")
	}
}

// TestEventSharedByGoroutines hands one event to many goroutines at once,
// which call Bytes, ReadJson and ReadXml: every one must see the whole
// payload, for decoded events and for events built by hand (whose first
// Bytes reads Data), and with -race no access may race. On a decoded event
// one goroutine may also read Data meanwhile.
func TestEventSharedByGoroutines(t *testing.T) {
	t.Parallel()
	const jsonData, xmlData = `{"x": 7, "label": "shared"}`, `<point x="7"><label>shared</label></point>`
	decode := func(stream string) *sse.Event {
		e, err := sse.NewDecoder(strings.NewReader(stream)).Decode()
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	tests := []struct {
		name     string
		e        *sse.Event
		payload  string
		read     func(e *sse.Event, v any) error
		readData bool // one more goroutine reads Data meanwhile
	}{
		{"decoded JSON", decode("data: " + jsonData + "\n\n"), jsonData, (*sse.Event).ReadJson, true},
		{"decoded XML", decode("data: " + xmlData + "\n\n"), xmlData, (*sse.Event).ReadXml, true},
		{"hand-built JSON", &sse.Event{Data: strings.NewReader(jsonData)}, jsonData, (*sse.Event).ReadJson, false},
		{"hand-built XML", &sse.Event{Data: strings.NewReader(xmlData)}, xmlData, (*sse.Event).ReadXml, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			want := readPoint{X: 7, Label: "shared"}
			if strings.HasPrefix(tt.payload, "<") {
				want.XMLName = xml.Name{Local: "point"}
			}
			start := make(chan struct{})
			var wg sync.WaitGroup
			for i := range 16 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					if i%2 == 0 {
						if got := string(tt.e.Bytes()); got != tt.payload {
							t.Errorf("Bytes = %q, want %q", got, tt.payload)
						}
						return
					}
					var got readPoint
					if err := tt.read(tt.e, &got); err != nil || got != want {
						t.Errorf("decoded %+v, %v; want %+v", got, err, want)
					}
				}()
			}
			if tt.readData {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					if b, err := io.ReadAll(tt.e.Data); err != nil || string(b) != tt.payload {
						t.Errorf("Data read %q, %v; want %q", b, err, tt.payload)
					}
				}()
			}
			close(start)
			wg.Wait()
			if got := string(tt.e.Bytes()); got != tt.payload {
				t.Errorf("Bytes afterwards = %q, want %q", got, tt.payload)
			}
		})
	}
}
