package sseopenai_test

import (
	"bufio"
	"context"
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

// use makes the registry give the SDK's decoder, or ours with limit.
func use(sdk bool, limit int) {
	if sdk {
		decoderFor = sdkDecoder
		return
	}
	decoderFor = func(body io.ReadCloser) ssestream.Decoder { return sseopenai.NewDecoder(body, limit) }
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
)

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
	gives, is, none := llmtest.Gives, llmtest.Is, llmtest.Want{}
	llmtest.Compare(t, []llmtest.Case{
		{Name: "LF", Response: llmtest.Response{Body: lf},
			SDK: gives(full, none), Ours: gives(full, none)},
		{Name: "CRLF", Response: llmtest.Response{Body: llmtest.Format(events, "\r\n", false)},
			SDK: gives(full, none), Ours: gives(full, none)},
		{Name: "CR", Response: llmtest.Response{Body: llmtest.Format(events, "\r", false)},
			SDK: gives(nil, none), Ours: gives(full, none)},
		{Name: "comments and event names", Response: llmtest.Response{Body: llmtest.Format(named, "\n", true)},
			SDK: gives(full, none), Ours: gives(full, none)},
		{Name: "data in several lines", Response: llmtest.Response{Body: llmtest.Format(multiline, "\n", false)},
			SDK: gives(full, none), Ours: gives(full, none)},
		{Name: "byte order mark", Response: llmtest.Response{Body: "\uFEFF" + lf},
			SDK: gives(full[1:], none), Ours: gives(full, none)},
		{Name: "40 MB event", Response: llmtest.Response{Body: big}, Limit: 64 << 20,
			SDK:  gives([]string{"[assistant]", "Hel"}, is(bufio.ErrTooLong)),
			Ours: gives([]string{"[assistant]", "Hel", "<40000000 bytes>", "!", "<stop>"}, none)},
		{Name: "40 MB event, default limit", Response: llmtest.Response{Body: big},
			Ours: gives([]string{"[assistant]", "Hel"}, is(sse.ErrEventTooLarge))},
		{Name: "connection dropped in an event", Response: llmtest.Response{Body: cut, Drop: true},
			SDK: gives(full[:3], is(io.ErrUnexpectedEOF)), Ours: gives(full[:3], is(io.ErrUnexpectedEOF))},
		{Name: "response ended in an event", Response: llmtest.Response{Body: cut},
			SDK: gives(full[:3], none), Ours: gives(full[:3], is(ssellm.ErrCut))},
		{Name: "response ended before a blank line", Response: llmtest.Response{Body: strings.TrimSuffix(llmtest.Format(events[:4], "\n", false), "\n")},
			SDK: gives(full[:3], none), Ours: gives(full[:3], is(ssellm.ErrCut))},
		{Name: "response ended before [DONE]", Response: llmtest.Response{Body: llmtest.Format(events[:4], "\n", false)},
			SDK: gives(full[:4], none), Ours: gives(full[:4], none)},
		{Name: "error event", Response: llmtest.Response{Body: llmtest.Format(append(events[:3:3], llmtest.Event{Data: `{"error":{"message":"overloaded","type":"server_error"}}`}), "\n", false)},
			SDK: gives(full[:3], llmtest.As[*ssestream.StreamError]()), Ours: gives(full[:3], llmtest.As[*ssestream.StreamError]())},
	}, use, chat)
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
