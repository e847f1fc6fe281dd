package main

import (
	"bytes"
	"context"
	"log"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	sseopenai "github.com/b2ce5911/sse/llm/openai"
)

func run(t *testing.T, resume bool) (out, logged string, lastIDs []string) {
	t.Helper()
	sseopenai.Register(0)
	srv := newServer(resume)
	ts := httptest.NewServer(srv)
	defer ts.Close()
	client := openai.NewClient(option.WithBaseURL(ts.URL+"/v1/"), option.WithAPIKey("test-key"), option.WithMaxRetries(0))
	var o, l bytes.Buffer
	if err := chat(context.Background(), client, openai.ChatModelGPT4oMini, "hi", &o, log.New(&l, "", 0)); err != nil {
		t.Fatalf("chat: %v\nout: %q\nlog: %s", err, o.String(), l.String())
	}
	return o.String(), l.String(), srv.requests()
}

// TestResume runs the example against its local server: the answer is
// printed once, whole, although the connection drops once and a response
// ends inside an event once, and each resume asks for the chunks after the
// last one received.
func TestResume(t *testing.T) {
	out, logged, lastIDs := run(t, true)
	if want := strings.Join(answer, "") + "\n"; out != want {
		t.Errorf("printed %q, want %q", out, want)
	}
	if want := []string{"", "chatcmpl-1/3", "chatcmpl-1/7"}; !slices.Equal(lastIDs, want) {
		t.Errorf("Last-Event-IDs %q, want %q", lastIDs, want)
	}
	if !strings.Contains(logged, "after 3 chunks (unexpected EOF)") ||
		!strings.Contains(logged, "after 7 chunks (sse: stream ended in the middle of an event") {
		t.Errorf("log does not report both cuts:\n%s", logged)
	}
}

// TestNoResume runs the example against a server that ignores
// Last-Event-ID, as OpenAI's API does: each new completion is detected and
// printed from the start on a new line, and the last one is whole.
func TestNoResume(t *testing.T) {
	out, logged, lastIDs := run(t, false)
	a := strings.Join(answer, "")
	if want := "The quick\nThe quick brown fox jumps over\n" + a + "\n"; out != want {
		t.Errorf("printed %q, want %q", out, want)
	}
	if want := []string{"", "chatcmpl-1/3", "chatcmpl-2/7"}; !slices.Equal(lastIDs, want) {
		t.Errorf("Last-Event-IDs %q, want %q", lastIDs, want)
	}
	if n := strings.Count(logged, "new answer instead of the rest"); n != 2 {
		t.Errorf("log reports %d new answers, want 2:\n%s", n, logged)
	}
}
