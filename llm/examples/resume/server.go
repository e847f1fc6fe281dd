package main

import (
	"fmt"
	"net/http"
	"strings"
	"sync"

	"github.com/b2ce5911/sse/llm/llmtest"
)

// answer is what the local server always answers, in tokens.
var answer = []string{"The", " quick", " brown", " fox", " jumps", " over", " the", " lazy", " dog", "."}

// server is a Chat Completions endpoint that numbers the chunks of a
// completion with SSE ids (completion id "/" chunk number) and, given a
// Last-Event-ID, sends the rest of that completion. It cuts its streams
// twice: the first stream that reaches chunk 4 loses its connection in the
// middle of it, and the first that reaches chunk 8 ends there, cleanly at
// the HTTP level but in the middle of the event. With resume unset, it
// ignores Last-Event-ID, as OpenAI's API does, and starts a new completion.
type server struct {
	resume bool

	mu      sync.Mutex
	started int          // completions started
	cuts    map[int]bool // chunk number → the cut there is still to come
	lastIDs []string     // Last-Event-ID of every request, "" for none
}

func newServer(resume bool) *server {
	return &server{resume: resume, cuts: map[int]bool{4: true, 8: true}}
}

func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/v1/chat/completions" {
		http.NotFound(w, r)
		return
	}
	s.mu.Lock()
	lastID := r.Header.Get("Last-Event-ID")
	s.lastIDs = append(s.lastIDs, lastID)
	id, from, ok := s.resumeAt(lastID)
	if !ok {
		s.started++
		id, from = fmt.Sprintf("chatcmpl-%d", s.started), 0
	}
	s.mu.Unlock()

	events := llmtest.OpenAI(id, answer)
	for i := range events {
		events[i].ID = eventID(id, i+1)
	}
	w.Header().Set("Content-Type", "text/event-stream; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	for i := from; i < len(events); i++ {
		wire := llmtest.Format(events[i:i+1], "\n", false)
		if s.takeCut(i + 1) {
			w.Write([]byte(wire[:len(wire)/2]))
			if i+1 == 4 {
				rc.Flush()
				panic(http.ErrAbortHandler) // drops the connection: the chunked body never ends
			}
			return
		}
		w.Write([]byte(wire))
		rc.Flush()
	}
}

// resumeAt returns the completion and the number of its chunks that the
// client has, from a Last-Event-ID this server sent.
func (s *server) resumeAt(lastID string) (id string, n int, ok bool) {
	id, num, found := strings.Cut(lastID, "/")
	if !s.resume || !found {
		return "", 0, false
	}
	var started int
	if _, err := fmt.Sscanf(id, "chatcmpl-%d", &started); err != nil || started < 1 || started > s.started {
		return "", 0, false
	}
	if _, err := fmt.Sscanf(num, "%d", &n); err != nil || n < 0 || n > len(answer)+2 {
		return "", 0, false
	}
	return id, n, true
}

func (s *server) takeCut(chunk int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.cuts[chunk] {
		return false
	}
	delete(s.cuts, chunk)
	return true
}

// requests returns the Last-Event-ID of every request so far.
func (s *server) requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.lastIDs...)
}
