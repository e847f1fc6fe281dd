// Command resume streams a chat completion with the OpenAI Go SDK, reading
// the stream through sse.Decoder, prints it token by token, and resumes it
// where it broke off when the connection drops.
//
// By default it runs against a local server of its own that speaks the
// Chat Completions wire format, numbers its events with SSE ids, and cuts
// the stream twice: once by dropping the connection, once by ending the
// response in the middle of an event.
//
//	go run ./examples/resume
//	go run ./examples/resume -base-url https://api.openai.com/v1/ -model gpt-4o-mini
//
// Resuming means asking the server for the rest of the same answer: the
// request is sent again with Last-Event-ID set to the id of the last event
// received, as an EventSource would. OpenAI's API does not keep streams and
// ignores the header; a server that answers with a new completion instead of
// the rest of the old one is detected (the chunks carry another completion
// id), and the answer is then printed again from the start, on a new line.
package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http/httptest"
	"os"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/b2ce5911/sse"
	sseopenai "github.com/b2ce5911/sse/llm/openai"
)

func main() {
	baseURL := flag.String("base-url", "", "API base URL; empty runs a local server that cuts the stream twice")
	model := flag.String("model", openai.ChatModelGPT4oMini, "model")
	prompt := flag.String("prompt", "Say something about a fox.", "user message")
	flag.Parse()

	sseopenai.Register(sse.DefaultMaxEventSize)
	if *baseURL == "" {
		srv := httptest.NewServer(newServer(true))
		defer srv.Close()
		*baseURL = srv.URL + "/v1/"
	}
	client := openai.NewClient(option.WithBaseURL(*baseURL), option.WithAPIKey(cmp.Or(os.Getenv("OPENAI_API_KEY"), "local")))
	if err := chat(context.Background(), client, *model, *prompt, os.Stdout, log.New(os.Stderr, "", 0)); err != nil {
		log.Fatal(err)
	}
}

// maxResumes bounds the attempts after a cut, so that a server that cuts
// every stream does not keep the client busy for ever.
const maxResumes = 5

// chat streams the answer to prompt and prints it to out, token by token,
// resuming after every cut; it reports the cuts to logger.
func chat(ctx context.Context, client openai.Client, model, prompt string, out io.Writer, logger *log.Logger) error {
	params := openai.ChatCompletionNewParams{
		Model:    model,
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage(prompt)},
	}
	var id string // the completion being received
	n := 0        // chunks of it received so far
	for resumes := 0; ; resumes++ {
		var opts []option.RequestOption
		if id != "" {
			opts = append(opts, option.WithHeader("Last-Event-ID", eventID(id, n)))
		}
		s := client.Chat.Completions.NewStreaming(ctx, params, opts...)
		for s.Next() {
			c := s.Current()
			if c.ID != id {
				if id != "" {
					logger.Printf("the server sent a new answer instead of the rest: printing it from the start")
					fmt.Fprintln(out)
				}
				id, n = c.ID, 0
			}
			n++
			for _, ch := range c.Choices {
				fmt.Fprint(out, ch.Delta.Content)
			}
		}
		err := s.Err()
		s.Close()
		if err == nil {
			fmt.Fprintln(out)
			return nil
		}
		if !cut(err) || id == "" || resumes == maxResumes {
			return err
		}
		logger.Printf("stream cut after %d chunks (%v): resuming", n, err)
		select {
		case <-time.After(time.Duration(resumes) * 100 * time.Millisecond):
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
}

// cut reports whether err broke a stream off, rather than the server
// refusing or failing the request: a connection that dropped or a response
// that ended inside an event (ssellm.ErrCut wraps io.ErrUnexpectedEOF).
func cut(err error) bool {
	var ne net.Error
	return errors.Is(err, io.ErrUnexpectedEOF) || errors.As(err, &ne)
}

// eventID is the SSE id of the nth chunk of a completion, as the local
// server numbers them.
func eventID(completion string, n int) string {
	return fmt.Sprintf("%s/%d", completion, n)
}
