// Package chat is the server of the chat example: rooms are topics of one
// [sse.Hub], messages come in by POST and go out as events, and a client
// that reconnects gets what it missed by replay.
//
// It is a package of its own so that the command in examples/chat stays a
// thin wrapper and tests, the browser test of the e2e module included, can
// run the same server in-process and break its connections on purpose.
package chat

import (
	"bytes"
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/b2ce5911/sse"
)

//go:embed index.html
var page []byte

// csp lets the page run its own script and style, found by their hashes,
// and nothing else: no injected markup can run a script.
var csp = "default-src 'self'; img-src data:; script-src " + inlineHash("script") + "; style-src " + inlineHash("style")

// inlineHash is the CSP hash source of the page's first element of tag.
func inlineHash(tag string) string {
	_, rest, _ := bytes.Cut(page, []byte("<"+tag+">"))
	body, _, _ := bytes.Cut(rest, []byte("</"+tag+">"))
	sum := sha256.Sum256(body)
	return "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
}

// Limits of what the server accepts.
const (
	MaxRoom = 32   // characters in a room name
	MaxName = 32   // characters in a sender's name
	MaxText = 1000 // characters in a message
	maxBody = 16 << 10
)

// RetryTime is the reconnection delay the server gives browsers: shorter
// than their default of about three seconds, so a dropped page is back soon.
const RetryTime = time.Second

// EventType is the type of the events that carry chat messages.
const EventType = "message"

// Message is the payload of a chat event, as JSON.
type Message struct {
	Name string    `json:"name"`
	Text string    `json:"text"`
	Time time.Time `json:"time"`
}

// Server serves the page, the event streams of the rooms and the sending of
// messages. Make one with [New]; it is an http.Handler.
type Server struct {
	log      *slog.Logger
	mux      *http.ServeMux
	upgrader sse.Upgrader

	// mu guards the fields below. Send holds it for reading, so that a
	// swap waits for the publishes in flight and none of them reaches a Hub
	// that is closing.
	mu     sync.RWMutex
	broker *sse.MemoryBroker // the history: outlives a Hub, not a Restart
	hub    *sse.Hub
	closed bool
}

// New returns a Server that logs to logger (nil means slog.Default()).
func New(logger *slog.Logger) *Server {
	if logger == nil {
		logger = slog.Default()
	}
	s := &Server{
		log:      logger,
		mux:      http.NewServeMux(),
		upgrader: sse.Upgrader{RetryTime: RetryTime},
		broker:   &sse.MemoryBroker{},
	}
	s.hub = s.newHub(s.broker)
	s.mux.HandleFunc("GET /{$}", servePage)
	s.mux.HandleFunc("GET /events", s.serveEvents)
	s.mux.HandleFunc("POST /send", s.serveSend)
	return s
}

func (s *Server) newHub(b sse.Broker) *sse.Hub {
	return &sse.Hub{
		Broker:   b,
		Logger:   s.log,
		Upgrader: s.upgrader,
		Topics:   func(r *http.Request) []string { return []string{r.URL.Query().Get("room")} },
		// Rooms are public: every room named may be read. A private room
		// would check here that the request's session belongs to a member,
		// and return sse.ErrUnauthorized without one.
		Authorize: func(r *http.Request, rooms []string) ([]string, error) { return rooms, nil },
	}
}

// ServeHTTP routes GET / (the page), GET /events?room=NAME (the stream of a
// room) and POST /send (a message, from a form or JSON).
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mux.ServeHTTP(w, r)
}

// current returns the Hub in service, or nil once the Server shut down.
func (s *Server) current() *sse.Hub {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil
	}
	return s.hub
}

// Send publishes a message to room and returns its event id. The fields
// must be valid, as [Validate] tells.
func (s *Server) Send(ctx context.Context, room string, m Message) (string, error) {
	if err := Validate(room, m.Name, m.Text); err != nil {
		return "", err
	}
	data, err := json.Marshal(m)
	if err != nil {
		return "", err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return "", sse.ErrHubClosed
	}
	return s.hub.Publish(ctx, room, sse.Message{Type: EventType, Data: data})
}

// Stats returns the counters of the Hub in service.
func (s *Server) Stats() sse.HubStats {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.hub.Stats()
}

// DropConnections closes every stream at once, as a network failure or a
// load balancer would, and keeps the history: the clients reconnect, say
// which event they saw last, and get what they missed by replay.
func (s *Server) DropConnections() {
	s.swap(false)
}

// Restart does what a restart of the process does to an in-memory history:
// it closes every stream and starts again with an empty one, of a new
// epoch. Clients that reconnect with an id of the old epoch get a reset
// event, since what they missed is gone.
func (s *Server) Restart() {
	s.swap(true)
}

// swap puts a new Hub in service, on the same Broker or a new one, and
// closes the old Hub, which closes its streams.
func (s *Server) swap(newBroker bool) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	oldHub, oldBroker := s.hub, s.broker
	if newBroker {
		s.broker = &sse.MemoryBroker{}
	}
	s.hub = s.newHub(s.broker)
	s.mu.Unlock()

	oldHub.Close() // a Hub leaves a Broker it was given open
	if newBroker {
		oldBroker.Close()
	}
	s.log.Info("chat: streams dropped", "new epoch", newBroker)
}

// Shutdown stops the Server: no more messages or streams are accepted, the
// streams get what is queued for them until ctx ends, then close.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	err := s.hub.Shutdown(ctx)
	s.broker.Close()
	return err
}

func servePage(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", csp)
	w.Write(page)
}

// serveEvents upgrades the request and serves it the room's events, from
// the Hub in service, until the client leaves or the Hub closes.
func (s *Server) serveEvents(w http.ResponseWriter, r *http.Request) {
	room := r.URL.Query().Get("room")
	if err := checkRoom(room); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	h := s.current()
	if h == nil {
		http.Error(w, "server shutting down", http.StatusServiceUnavailable)
		return
	}
	h.ServeHTTP(w, r) // the client reconnects whatever the reason the stream ends
}

// sendRequest is the body of POST /send, as JSON or form fields.
type sendRequest struct {
	Room string `json:"room"`
	Name string `json:"name"`
	Text string `json:"text"`
}

func (s *Server) serveSend(w http.ResponseWriter, r *http.Request) {
	if !sameOrigin(r) {
		http.Error(w, "cross-origin request refused", http.StatusForbidden)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxBody)
	var req sendRequest
	if ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); ct == "application/json" {
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, "bad JSON: "+err.Error(), http.StatusBadRequest)
			return
		}
	} else {
		if err := r.ParseForm(); err != nil {
			http.Error(w, "bad form: "+err.Error(), http.StatusBadRequest)
			return
		}
		req = sendRequest{Room: r.PostForm.Get("room"), Name: r.PostForm.Get("name"), Text: r.PostForm.Get("text")}
	}
	req.Name, req.Text = strings.TrimSpace(req.Name), strings.TrimSpace(req.Text)
	_, err := s.Send(r.Context(), req.Room, Message{Name: req.Name, Text: req.Text, Time: time.Now().UTC()})
	switch {
	case err == nil:
		w.WriteHeader(http.StatusNoContent)
	case errors.Is(err, errInvalid):
		http.Error(w, err.Error(), http.StatusBadRequest)
	case errors.Is(err, sse.ErrHubClosed):
		http.Error(w, "server shutting down", http.StatusServiceUnavailable)
	default:
		s.log.Error("chat: publish", "room", req.Room, "err", err)
		http.Error(w, "cannot send", http.StatusInternalServerError)
	}
}

// sameOrigin refuses what a page of another site could send through a
// visitor's browser: a form post needs no permission, unlike a fetch of
// JSON. Clients that are not browsers send neither header.
func sameOrigin(r *http.Request) bool {
	switch r.Header.Get("Sec-Fetch-Site") {
	case "", "same-origin", "none":
	default:
		return false
	}
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	u, err := url.Parse(origin)
	return err == nil && u.Host == r.Host
}

var errInvalid = errors.New("invalid")

type invalidError string

func (e invalidError) Error() string { return string(e) }
func (e invalidError) Unwrap() error { return errInvalid }

// Validate checks a message before it is sent: a room name of at most
// MaxRoom printable characters, a name of at most MaxName, a text of at most
// MaxText that may hold line breaks and tabs; none of them empty, none with
// control characters, all valid UTF-8.
func Validate(room, name, text string) error {
	if err := checkRoom(room); err != nil {
		return err
	}
	if err := checkField("name", name, MaxName, nil); err != nil {
		return err
	}
	return checkField("text", text, MaxText, func(r rune) bool { return r == '\n' || r == '\t' })
}

func checkRoom(room string) error {
	if err := checkField("room", room, MaxRoom, nil); err != nil {
		return err
	}
	if strings.TrimSpace(room) != room {
		return invalidError("room: no spaces at either end")
	}
	for _, r := range room {
		if !unicode.IsPrint(r) {
			return invalidError("room: printable characters only")
		}
	}
	return nil
}

// checkField tells whether v is a non-empty, valid UTF-8 string of at most
// limit characters, without control characters other than those allowed.
func checkField(field, v string, limit int, allowed func(rune) bool) error {
	switch n := utf8.RuneCountInString(v); {
	case n == 0:
		return invalidError(field + ": empty")
	case n > limit:
		return invalidError(field + ": too long")
	case !utf8.ValidString(v):
		return invalidError(field + ": not UTF-8")
	}
	for _, r := range v {
		if unicode.IsControl(r) && (allowed == nil || !allowed(r)) {
			return invalidError(field + ": control characters")
		}
	}
	return nil
}
