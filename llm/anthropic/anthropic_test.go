package sseanthropic_test

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

	"github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/anthropics/anthropic-sdk-go/v2/option"
	"github.com/anthropics/anthropic-sdk-go/v2/packages/ssestream"

	"github.com/b2ce5911/sse"
	ssellm "github.com/b2ce5911/sse/llm"
	sseanthropic "github.com/b2ce5911/sse/llm/anthropic"
	"github.com/b2ce5911/sse/llm/llmtest"
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
	decoderFor = func(body io.ReadCloser) ssestream.Decoder { return sseanthropic.NewDecoder(body, limit) }
}

func TestMain(m *testing.M) {
	ssestream.RegisterDecoder("text/event-stream", trampoline)
	os.Exit(m.Run())
}

// messages runs the SDK's streaming Messages call against baseURL and returns
// what it received: each text token, a token over 64 bytes as "<n bytes>",
// and every other event as "<type>".
func messages(t *testing.T, baseURL string) ([]string, error) {
	t.Helper()
	client := anthropic.NewClient(option.WithBaseURL(baseURL), option.WithAPIKey("test-key"), option.WithMaxRetries(0))
	s := client.Messages.NewStreaming(context.Background(), anthropic.MessageNewParams{
		Model:     anthropic.ModelClaudeSonnet4_5,
		MaxTokens: 1024,
		Messages:  []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("Say hello"))},
	})
	defer s.Close()
	var got []string
	for s.Next() {
		switch e := s.Current(); {
		case e.Type != "content_block_delta":
			got = append(got, "<"+e.Type+">")
		case len(e.Delta.Text) > 64:
			got = append(got, fmt.Sprintf("<%d bytes>", len(e.Delta.Text)))
		default:
			got = append(got, e.Delta.Text)
		}
	}
	return got, s.Err()
}

var (
	tokens = []string{"Hel", "lo", ",", " world", "!"}
	full   = []string{"<message_start>", "<content_block_start>", "Hel", "lo", ",", " world", "!",
		"<content_block_stop>", "<message_delta>", "<message_stop>"}
	events = llmtest.Anthropic("msg_1", tokens)
	lf     = llmtest.Format(events, "\n", false)
	// cut is the stream stopped inside the fifth event, the second token.
	cut   = llmtest.Format(events[:4], "\n", false) + "event: content_block_delta\ndata: {\"type\":\"content_bl"
	big   = llmtest.Format(llmtest.Anthropic("msg_1", []string{"Hel", strings.Repeat("x", 40_000_000), "!"}), "\n", false)
	ghost = `{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"ghost"}}`
)

// with returns events with e inserted before the first token.
func with(e ...llmtest.Event) []llmtest.Event {
	return slices.Concat(events[:3], e, events[3:])
}

// TestDecoders runs the SDK's streaming call over the same wire with the
// SDK's own decoder and with ours. The module's README has this table.
func TestDecoders(t *testing.T) {
	first := full[:3]
	gives, is, none := llmtest.Gives, llmtest.Is, llmtest.Want{}
	llmtest.Compare(t, []llmtest.Case{
		{Name: "LF", Response: llmtest.Response{Body: lf},
			SDK: gives(full, none), Ours: gives(full, none)},
		{Name: "CRLF", Response: llmtest.Response{Body: llmtest.Format(events, "\r\n", false)},
			SDK: gives(full, none), Ours: gives(full, none)},
		{Name: "CR", Response: llmtest.Response{Body: llmtest.Format(events, "\r", false)},
			SDK: gives(nil, none), Ours: gives(full, none)},
		{Name: "comments", Response: llmtest.Response{Body: llmtest.Format(events, "\n", true)},
			SDK: gives(full, none), Ours: gives(full, none)},
		{Name: "ping without data", Response: llmtest.Response{Body: llmtest.Format(events[:3], "\n", false) + "event: ping\n\n" + llmtest.Format(events[3:], "\n", false)},
			SDK: gives(full, none), Ours: gives(full, none)},
		{Name: "event without a name", Response: llmtest.Response{Body: llmtest.Format(with(llmtest.Event{Data: ghost}), "\n", false)},
			SDK: gives(full, none), Ours: gives(full, none)},
		{Name: "event named message", Response: llmtest.Response{Body: llmtest.Format(with(llmtest.Event{Type: "message", Data: ghost}), "\n", false)},
			SDK: gives(slices.Concat(full[:2], []string{"ghost"}, full[2:]), none), Ours: gives(full, none)},
		{Name: "byte order mark", Response: llmtest.Response{Body: "\uFEFF" + lf},
			SDK: gives(full[1:], none), Ours: gives(full, none)},
		{Name: "40 MB event", Response: llmtest.Response{Body: big}, Limit: 64 << 20,
			SDK: gives(first, is(bufio.ErrTooLong)),
			Ours: gives([]string{"<message_start>", "<content_block_start>", "Hel", "<40000000 bytes>", "!",
				"<content_block_stop>", "<message_delta>", "<message_stop>"}, none)},
		{Name: "40 MB event, default limit", Response: llmtest.Response{Body: big},
			Ours: gives(first, is(sse.ErrEventTooLarge))},
		{Name: "connection dropped in an event", Response: llmtest.Response{Body: cut, Drop: true},
			SDK: gives(first, is(io.ErrUnexpectedEOF)), Ours: gives(first, is(io.ErrUnexpectedEOF))},
		{Name: "response ended in an event", Response: llmtest.Response{Body: cut},
			SDK: gives(first, none), Ours: gives(first, is(ssellm.ErrCut))},
		{Name: "response ended before message_stop", Response: llmtest.Response{Body: llmtest.Format(events[:4], "\n", false)},
			SDK: gives(first, none), Ours: gives(first, none)},
		{Name: "error event", Response: llmtest.Response{Body: llmtest.Format(append(events[:4:4], llmtest.Event{Type: "error",
			Data: `{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}`}), "\n", false)},
			SDK: gives(first, llmtest.As[*anthropic.Error]()), Ours: gives(first, llmtest.As[*anthropic.Error]())},
	}, use, messages)
}

// TestRegister checks that Register installs the decoder for the listed
// Content-Type spellings, and that the SDK keeps its own for a header with
// capitals, which its registry cannot match: a CR-only stream comes through
// ours and is nothing to the SDK's.
func TestRegister(t *testing.T) {
	t.Cleanup(func() {
		for _, ct := range sseanthropic.ContentTypes {
			ssestream.RegisterDecoder(ct, trampoline)
		}
	})
	decoderFor = sdkDecoder
	sseanthropic.Register(0)
	cr := llmtest.Format(events, "\r", false)
	for _, ct := range sseanthropic.ContentTypes {
		got, err := messages(t, llmtest.Serve(t, llmtest.Response{ContentType: ct, Body: cr}))
		if err != nil || !slices.Equal(got, full) {
			t.Errorf("%s: got %q, %v; want %q", ct, got, err, full)
		}
	}
	got, err := messages(t, llmtest.Serve(t, llmtest.Response{ContentType: "text/event-stream; charset=UTF-8", Body: cr}))
	if err != nil || got != nil {
		t.Errorf("capitals in Content-Type: got %q, %v; want the SDK's decoder to find nothing", got, err)
	}
}
