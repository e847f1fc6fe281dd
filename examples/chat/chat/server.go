// Package chat is the server of the chat example: rooms are topics of one
// [sse.Hub], messages come in by POST and go out as events, a client that
// opens a room gets its recent messages ([sse.Hub.Recent]), and one that
// reconnects gets what it missed by replay. Who is in a room goes out as
// events too, and GET /rooms lists the rooms with people in them.
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

// RecentEvents is how many of a room's newest events a page that opens it
// gets first: its history, messages and presence events together.
const RecentEvents = 100

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

	people roster
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
	s.mux.HandleFunc("GET /rooms", s.serveRooms)
	return s
}

func (s *Server) newHub(b sse.Broker) *sse.Hub {
	return &sse.Hub{
		// Presence is who has a stream open, and serveEvents learns that a
		// stream ended when ServeHTTP returns: a detached stream's returns
		// as soon as it is detached.
		DisableDetach: true,
		Broker:        b,
		Logger:        s.log,
		Recent:        RecentEvents,
		Upgrader:      s.upgrader,
		Topics:        func(r *http.Request) []string { return []string{r.URL.Query().Get("room")} },
		// Rooms are public: every room named may be read. A private room
		// would check here that the request's session belongs to a member,
		// and return sse.ErrUnauthorized without one.
		Authorize: func(r *http.Request, rooms []string) ([]string, error) { return rooms, nil },
	}
}

// ServeHTTP routes GET / (the page), GET /events?room=NAME[&tab=ID&name=NAME]
// (the stream of a room; with a tab and a name, its page is in the room's
// presence events), POST /send (a message, from a form or JSON; it answers
// the event id as JSON, {"id":"..."}) and GET /rooms (the rooms with people
// in them, as a JSON array of [Room]).
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
	return s.publish(ctx, room, sse.Message{Type: EventType, Data: data})
}

// publish publishes m on room through the Hub in service.
func (s *Server) publish(ctx context.Context, room string, m sse.Message) (string, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return "", sse.ErrHubClosed
	}
	return s.hub.Publish(ctx, room, m)
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
	q := r.URL.Query()
	room, tab, name := q.Get("room"), q.Get("tab"), strings.TrimSpace(q.Get("name"))
	err := checkRoom(room)
	if err == nil && (tab != "" || name != "") {
		err = checkPerson(tab, name)
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	h := s.current()
	if h == nil {
		http.Error(w, "server shutting down", http.StatusServiceUnavailable)
		return
	}
	if tab != "" {
		// Announced before Serve, so that the page finds itself among the
		// room's recent events; a page that resumes learns it by replay.
		s.enter(room, tab, name)
		defer s.leave(room, tab)
	}
	h.ServeHTTP(w, r) // the client reconnects whatever the reason the stream ends
}

func (s *Server) serveRooms(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	json.NewEncoder(w).Encode(s.Rooms())
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
	id, err := s.Send(r.Context(), req.Room, Message{Name: req.Name, Text: req.Text, Time: time.Now().UTC()})
	switch {
	case err == nil:
		// The page marks the message with this id as its own when it
		// arrives: an id it was told, not a name anyone can take.
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(struct {
			ID string `json:"id"`
		}{id})
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

// checkPerson checks the tab id and the name of a page in a room.
func checkPerson(tab, name string) error {
	if tab == "" || len(tab) > maxTab || strings.Trim(tab, "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-_") != "" {
		return invalidError("tab: 1 to 64 letters, digits, - or _")
	}
	return checkField("name", name, MaxName, nil)
}

const maxTab = 64

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
