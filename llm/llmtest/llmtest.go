// Package llmtest serves the streaming wire formats of the OpenAI Chat
// Completions and Anthropic Messages APIs from a local server, in the
// variations that the decoders of package ssellm are tested against: line
// endings, comments, event names, huge events and cut streams.
package llmtest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// Event is one event on the wire.
type Event struct {
	Type string // the event field; "" sends none
	ID   string // the id field; "" sends none
	Data string // one data line per line of Data
}

// OpenAI returns the events of a chat completion chunked into tokens, as
// api.openai.com sends them: a first chunk with the role, one chunk per
// token, a last one with the finish reason, then [DONE].
func OpenAI(id string, tokens []string) []Event {
	chunk := func(delta, finish string) Event {
		return Event{Data: `{"id":"` + id + `","object":"chat.completion.chunk","created":1700000000,"model":"gpt-4o-mini",` +
			`"choices":[{"index":0,"delta":` + delta + `,"logprobs":null,"finish_reason":` + finish + `}]}`}
	}
	evs := []Event{chunk(`{"role":"assistant","content":""}`, "null")}
	for _, t := range tokens {
		evs = append(evs, chunk(`{"content":`+quote(t)+`}`, "null"))
	}
	return append(evs, chunk(`{}`, `"stop"`), Event{Data: "[DONE]"})
}

// Anthropic returns the events of a message streamed in tokens, as
// api.anthropic.com sends them, with a ping after the first content block
// starts.
func Anthropic(id string, tokens []string) []Event {
	evs := []Event{
		{Type: "message_start", Data: `{"type":"message_start","message":{"id":"` + id + `","type":"message","role":"assistant","content":[],` +
			`"model":"claude-sonnet-4-5","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":12,"output_tokens":1}}}`},
		{Type: "content_block_start", Data: `{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}`},
		{Type: "ping", Data: `{"type": "ping"}`},
	}
	for _, t := range tokens {
		evs = append(evs, Event{Type: "content_block_delta",
			Data: `{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":` + quote(t) + `}}`})
	}
	return append(evs,
		Event{Type: "content_block_stop", Data: `{"type":"content_block_stop","index":0}`},
		Event{Type: "message_delta", Data: fmt.Sprintf(`{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":%d}}`, len(tokens))},
		Event{Type: "message_stop", Data: `{"type":"message_stop"}`},
	)
}

func quote(s string) string {
	b, _ := json.Marshal(s) // a string always marshals
	return string(b)
}

// Format writes events as a stream with eol ending every line ("\n",
// "\r\n" or "\r"), with the comment ": ping" before every event when ping is
// set.
func Format(evs []Event, eol string, ping bool) string {
	var b strings.Builder
	for _, e := range evs {
		if ping {
			b.WriteString(": ping" + eol)
		}
		if e.Type != "" {
			b.WriteString("event: " + e.Type + eol)
		}
		if e.ID != "" {
			b.WriteString("id: " + e.ID + eol)
		}
		for line := range strings.SplitSeq(e.Data, "\n") {
			b.WriteString("data: " + line + eol)
		}
		b.WriteString(eol)
	}
	return b.String()
}

// Response is what the server answers every request with.
type Response struct {
	// ContentType is the Content-Type header; "" means text/event-stream.
	ContentType string
	// Body is the stream, sent in one write.
	Body string
	// Drop closes the connection after Body instead of ending the response,
	// as a network failure does: the client reads an unexpected EOF.
	// Without it the response ends cleanly after Body, wherever Body ends.
	Drop bool
}

// Serve starts a server on 127.0.0.1 that answers every request with r,
// stopped when the test ends, and returns its base URL.
func Serve(t testing.TB, r Response) string {
	ct := r.ContentType
	if ct == "" {
		ct = "text/event-stream"
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		w.Header().Set("Content-Type", ct)
		w.Header().Set("Cache-Control", "no-cache")
		w.WriteHeader(http.StatusOK)
		if _, err := w.Write([]byte(r.Body)); err != nil {
			return
		}
		if r.Drop {
			http.NewResponseController(w).Flush()
			panic(http.ErrAbortHandler) // net/http closes the connection without ending the chunked body
		}
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}
