package sseanthropic_test

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
	cut = llmtest.Format(events[:4], "\n", false) + "event: content_block_delta\ndata: {\"type\":\"content_bl"
	big = llmtest.Format(llmtest.Anthropic("msg_1", []string{"Hel", strings.Repeat("x", 40_000_000), "!"}), "\n", false)
	// errAPI stands for an *anthropic.Error.
	errAPI = errors.New("API error")
	ghost  = `{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"ghost"}}`
)

type result struct {
	tokens []string
	err    error // nil, a sentinel for errors.Is, or errAPI
}

// with returns events with e inserted before the first token.
func with(e ...llmtest.Event) []llmtest.Event {
	return slices.Concat(events[:3], e, events[3:])
}

// TestDecoders runs the SDK's streaming call over the same wire with the
// SDK's own decoder and with ours. The module's README has this table.
func TestDecoders(t *testing.T) {
	first := full[:3]
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
		{name: "comments", resp: llmtest.Response{Body: llmtest.Format(events, "\n", true)},
			sdk: &result{full, nil}, ours: result{full, nil}},
		{name: "ping without data", resp: llmtest.Response{Body: llmtest.Format(events[:3], "\n", false) + "event: ping\n\n" + llmtest.Format(events[3:], "\n", false)},
			sdk: &result{full, nil}, ours: result{full, nil}},
		{name: "event without a name", resp: llmtest.Response{Body: llmtest.Format(with(llmtest.Event{Data: ghost}), "\n", false)},
			sdk: &result{full, nil}, ours: result{full, nil}},
		{name: "event named message", resp: llmtest.Response{Body: llmtest.Format(with(llmtest.Event{Type: "message", Data: ghost}), "\n", false)},
			sdk: &result{slices.Concat(full[:2], []string{"ghost"}, full[2:]), nil}, ours: result{full, nil}},
		{name: "byte order mark", resp: llmtest.Response{Body: "\uFEFF" + lf},
			sdk: &result{full[1:], nil}, ours: result{full, nil}},
		{name: "40 MB event", resp: llmtest.Response{Body: big}, limit: 64 << 20,
			sdk: &result{first, bufio.ErrTooLong},
			ours: result{[]string{"<message_start>", "<content_block_start>", "Hel", "<40000000 bytes>", "!",
				"<content_block_stop>", "<message_delta>", "<message_stop>"}, nil}},
		{name: "40 MB event, default limit", resp: llmtest.Response{Body: big},
			ours: result{first, sse.ErrEventTooLarge}},
		{name: "connection dropped in an event", resp: llmtest.Response{Body: cut, Drop: true},
			sdk: &result{first, io.ErrUnexpectedEOF}, ours: result{first, io.ErrUnexpectedEOF}},
		{name: "response ended in an event", resp: llmtest.Response{Body: cut},
			sdk: &result{first, nil}, ours: result{first, ssellm.ErrCut}},
		{name: "response ended before message_stop", resp: llmtest.Response{Body: llmtest.Format(events[:4], "\n", false)},
			sdk: &result{first, nil}, ours: result{first, nil}},
		{name: "error event", resp: llmtest.Response{Body: llmtest.Format(append(events[:4:4], llmtest.Event{Type: "error",
			Data: `{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}`}), "\n", false)},
			sdk: &result{first, errAPI}, ours: result{first, errAPI}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			url := llmtest.Serve(t, tc.resp)
			if tc.sdk != nil {
				decoderFor = sdkDecoder
				got, err := messages(t, url)
				check(t, "SDK decoder", got, err, *tc.sdk)
			}
			decoderFor = func(body io.ReadCloser) ssestream.Decoder { return sseanthropic.NewDecoder(body, tc.limit) }
			got, err := messages(t, url)
			check(t, "sse.Decoder", got, err, tc.ours)
		})
	}
}

func check(t *testing.T, who string, got []string, err error, want result) {
	t.Helper()
	if !slices.Equal(got, want.tokens) {
		t.Errorf("%s: got %q, want %q", who, got, want.tokens)
	}
	var ae *anthropic.Error
	switch {
	case want.err == nil && err != nil, want.err == errAPI && !errors.As(err, &ae),
		want.err != nil && want.err != errAPI && !errors.Is(err, want.err):
		t.Errorf("%s: error %v, want %v", who, err, want.err)
	}
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
