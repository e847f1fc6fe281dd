package sseopenai_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/packages/ssestream"

	"github.com/b2ce5911/sse"
	ssellm "github.com/b2ce5911/sse/llm"
	"github.com/b2ce5911/sse/llm/llmtest"
	sseopenai "github.com/b2ce5911/sse/llm/openai"
)

// decoderFor is the decoder the SDK uses in the tests, switched between the
// SDK's own and ours through one registration of the SDK's registry.
var decoderFor func(io.ReadCloser) ssestream.Decoder

func trampoline(body io.ReadCloser) ssestream.Decoder { return decoderFor(body) }

// sdkDecoder returns the SDK's own decoder: ssestream.NewDecoder falls back to
// it for a content type that nothing is registered for.
func sdkDecoder(body io.ReadCloser) ssestream.Decoder {
	return ssestream.NewDecoder(&http.Response{Header: http.Header{"Content-Type": {"application/x-unregistered"}}, Body: body})
}

func TestMain(m *testing.M) {
	ssestream.RegisterDecoder("text/event-stream", trampoline)
	os.Exit(m.Run())
}

// chat runs the SDK's streaming chat completion against baseURL and returns
// what it received: "[role]" for a role, each token, "<reason>" for a finish
// reason, and a token over 64 bytes as "<n bytes>".
func chat(t *testing.T, baseURL string) ([]string, error) {
	t.Helper()
	client := openai.NewClient(option.WithBaseURL(baseURL+"/v1/"), option.WithAPIKey("test-key"), option.WithMaxRetries(0))
	s := client.Chat.Completions.NewStreaming(context.Background(), openai.ChatCompletionNewParams{
		Model:    openai.ChatModelGPT4oMini,
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Say hello")},
	})
	defer s.Close()
	var got []string
	for s.Next() {
		for _, c := range s.Current().Choices {
			if c.Delta.Role != "" {
				got = append(got, "["+c.Delta.Role+"]")
			}
			switch t := c.Delta.Content; {
			case len(t) > 64:
				got = append(got, fmt.Sprintf("<%d bytes>", len(t)))
			case t != "":
				got = append(got, t)
			}
			if c.FinishReason != "" {
				got = append(got, "<"+c.FinishReason+">")
			}
		}
	}
	return got, s.Err()
}

var (
	tokens = []string{"Hel", "lo", ",", " world", "!"}
	full   = []string{"[assistant]", "Hel", "lo", ",", " world", "!", "<stop>"}
	events = llmtest.OpenAI("chatcmpl-1", tokens)
	lf     = llmtest.Format(events, "\n", false)
	// cut is the stream stopped inside the fourth event.
	cut = llmtest.Format(events[:3], "\n", false) + `data: {"id":"chatcmpl-1","object":"chat.comp`
	big = llmtest.Format(llmtest.OpenAI("chatcmpl-1", []string{"Hel", strings.Repeat("x", 40_000_000), "!"}), "\n", false)
	// errStream stands for an *ssestream.StreamError.
	errStream = errors.New("stream error")
)

type result struct {
	tokens []string
	err    error // nil, a sentinel for errors.Is, or errStream
}

// TestDecoders runs the SDK's streaming call over the same wire with the
// SDK's own decoder and with ours. The module's README has this table.
func TestDecoders(t *testing.T) {
	named := slices.Clone(events)
	for i := range named {
		named[i].Type = "chat.completion.chunk"
	}
	multiline := slices.Clone(events)
	for i := range multiline {
		multiline[i].Data = strings.Replace(multiline[i].Data, `,"choices"`, ",\n\"choices\"", 1)
	}
	for _, tc := range []struct {
		name  string
		resp  llmtest.Response
		limit int     // ours; 0 means sse.DefaultMaxEventSize
		sdk   *result // nil: not run with the SDK's decoder
		ours  result
	}{
		{name: "LF", resp: llmtest.Response{Body: lf},
			sdk: &result{full, nil}, ours: result{full, nil}},
		{name: "CRLF", resp: llmtest.Response{Body: llmtest.Format(events, "\r\n", false)},
			sdk: &result{full, nil}, ours: result{full, nil}},
		{name: "CR", resp: llmtest.Response{Body: llmtest.Format(events, "\r", false)},
			sdk: &result{nil, nil}, ours: result{full, nil}},
		{name: "comments and event names", resp: llmtest.Response{Body: llmtest.Format(named, "\n", true)},
			sdk: &result{full, nil}, ours: result{full, nil}},
		{name: "data in several lines", resp: llmtest.Response{Body: llmtest.Format(multiline, "\n", false)},
			sdk: &result{full, nil}, ours: result{full, nil}},
		{name: "byte order mark", resp: llmtest.Response{Body: "\uFEFF" + lf},
			sdk: &result{full[1:], nil}, ours: result{full, nil}},
		{name: "40 MB event", resp: llmtest.Response{Body: big}, limit: 64 << 20,
			sdk:  &result{[]string{"[assistant]", "Hel"}, bufio.ErrTooLong},
			ours: result{[]string{"[assistant]", "Hel", "<40000000 bytes>", "!", "<stop>"}, nil}},
		{name: "40 MB event, default limit", resp: llmtest.Response{Body: big},
			ours: result{[]string{"[assistant]", "Hel"}, sse.ErrEventTooLarge}},
		{name: "connection dropped in an event", resp: llmtest.Response{Body: cut, Drop: true},
			sdk: &result{full[:3], io.ErrUnexpectedEOF}, ours: result{full[:3], io.ErrUnexpectedEOF}},
		{name: "response ended in an event", resp: llmtest.Response{Body: cut},
			sdk: &result{full[:3], nil}, ours: result{full[:3], ssellm.ErrCut}},
		{name: "response ended before a blank line", resp: llmtest.Response{Body: strings.TrimSuffix(llmtest.Format(events[:4], "\n", false), "\n")},
			sdk: &result{full[:3], nil}, ours: result{full[:3], ssellm.ErrCut}},
		{name: "response ended before [DONE]", resp: llmtest.Response{Body: llmtest.Format(events[:4], "\n", false)},
			sdk: &result{full[:4], nil}, ours: result{full[:4], nil}},
		{name: "error event", resp: llmtest.Response{Body: llmtest.Format(append(events[:3:3], llmtest.Event{Data: `{"error":{"message":"overloaded","type":"server_error"}}`}), "\n", false)},
			sdk: &result{full[:3], errStream}, ours: result{full[:3], errStream}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			url := llmtest.Serve(t, tc.resp)
			if tc.sdk != nil {
				decoderFor = sdkDecoder
				got, err := chat(t, url)
				check(t, "SDK decoder", got, err, *tc.sdk)
			}
			decoderFor = func(body io.ReadCloser) ssestream.Decoder { return sseopenai.NewDecoder(body, tc.limit) }
			got, err := chat(t, url)
			check(t, "sse.Decoder", got, err, tc.ours)
		})
	}
}

func check(t *testing.T, who string, got []string, err error, want result) {
	t.Helper()
	if !slices.Equal(got, want.tokens) {
		t.Errorf("%s: got %q, want %q", who, got, want.tokens)
	}
	var se *ssestream.StreamError
	switch {
	case want.err == nil && err != nil, want.err == errStream && !errors.As(err, &se),
		want.err != nil && want.err != errStream && !errors.Is(err, want.err):
		t.Errorf("%s: error %v, want %v", who, err, want.err)
	}
}

// TestRegister checks that Register installs the decoder for every
// text/event-stream spelling: a CR-only stream, which the SDK's own decoder
// reads as nothing, comes through.
func TestRegister(t *testing.T) {
	t.Cleanup(func() { ssestream.RegisterDecoder("text/event-stream", trampoline) })
	sseopenai.Register(0)
	for _, ct := range []string{"text/event-stream", "text/event-stream; charset=utf-8", "Text/Event-Stream;charset=UTF-8"} {
		got, err := chat(t, llmtest.Serve(t, llmtest.Response{ContentType: ct, Body: llmtest.Format(events, "\r", false)}))
		if err != nil || !slices.Equal(got, full) {
			t.Errorf("%s: got %q, %v; want %q", ct, got, err, full)
		}
	}
}
