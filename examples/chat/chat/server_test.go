package chat_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/b2ce5911/sse"
	"github.com/b2ce5911/sse/examples/chat/chat"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// start serves a new chat on loopback until the test ends.
func start(t *testing.T) (*chat.Server, *httptest.Server) {
	t.Helper()
	s := chat.New(quiet)
	ts := httptest.NewServer(s)
	t.Cleanup(ts.Close)
	t.Cleanup(func() { s.Shutdown(context.Background()) })
	return s, ts
}

// stream opens the stream of room, resuming after lastID when it is not
// empty, and waits until the server has subscribed it.
func stream(t *testing.T, s *chat.Server, ts *httptest.Server, room, lastID string) *sse.Decoder {
	t.Helper()
	d, _ := streamQuery(t, s, ts, url.Values{"room": {room}}, lastID)
	return d
}

// streamQuery is stream with the query q; cancel closes the stream.
func streamQuery(t *testing.T, s *chat.Server, ts *httptest.Server, q url.Values, lastID string) (d *sse.Decoder, cancel func()) {
	t.Helper()
	room := q.Get("room")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute) // a hang, not a measurement
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, "GET", ts.URL+"/events?"+q.Encode(), nil)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	before := s.Stats().Subscriptions
	resp, err := ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("stream of %q: %s", room, resp.Status)
	}
	for s.Stats().Subscriptions == before {
		time.Sleep(time.Millisecond) // the server subscribes after it answered
	}
	return sse.NewDecoder(resp.Body), cancel
}

// post sends a form to /send and returns the status and the body.
func post(t *testing.T, ts *httptest.Server, contentType, body string, header ...string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("POST", ts.URL+"/send", strings.NewReader(body))
	req.Header.Set("Content-Type", contentType)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

const form = "application/x-www-form-urlencoded"

func send(t *testing.T, ts *httptest.Server, room, name, text string) {
	t.Helper()
	body := url.Values{"room": {room}, "name": {name}, "text": {text}}.Encode()
	if code, msg := post(t, ts, form, body); code != http.StatusOK {
		t.Fatalf("send %q to %q: %d %s", text, room, code, msg)
	}
}

// next reads the next chat message of d, and its id.
func next(t *testing.T, d *sse.Decoder) (string, chat.Message) {
	t.Helper()
	e, err := d.Decode()
	if err != nil {
		t.Fatal(err)
	}
	if e.Type != chat.EventType {
		t.Fatalf("event of type %q, data %q; want a chat message", e.Type, e.Bytes())
	}
	var m chat.Message
	if err := e.ReadJson(&m); err != nil {
		t.Fatal(err)
	}
	return e.ID, m
}

// expect reads chat messages from d and checks their texts, in order; it
// returns the id of the last one.
func expect(t *testing.T, d *sse.Decoder, texts ...string) string {
	t.Helper()
	var id string
	for _, want := range texts {
		var m chat.Message
		id, m = next(t, d)
		if m.Text != want {
			t.Fatalf("got %q, want %q", m.Text, want)
		}
	}
	return id
}

// ended checks that the server closed the stream of d.
func ended(t *testing.T, d *sse.Decoder) {
	t.Helper()
	if e, err := d.Decode(); err != io.EOF {
		t.Fatalf("got %v, %v; want the stream to end", e, err)
	}
}

func TestSendAndReceive(t *testing.T) {
	t.Parallel()
	s, ts := start(t)
	a := stream(t, s, ts, "lobby", "")
	b := stream(t, s, ts, "lobby", "")
	other := stream(t, s, ts, "other", "")

	send(t, ts, "lobby", "ann", "hello <b>all</b>")
	if code, msg := post(t, ts, "application/json", `{"room":"lobby","name":"bob","text":"  hi\nann  "}`); code != http.StatusOK {
		t.Fatalf("JSON: %d %s", code, msg)
	}
	send(t, ts, "other", "cy", "elsewhere")

	for _, d := range []*sse.Decoder{a, b} {
		id, m := next(t, d)
		if m.Name != "ann" || m.Text != "hello <b>all</b>" || time.Since(m.Time) > time.Minute || id == "" {
			t.Fatalf("first message %q %+v", id, m)
		}
		if _, m := next(t, d); m.Name != "bob" || m.Text != "hi\nann" {
			t.Fatalf("second message %+v", m)
		}
	}
	if _, m := next(t, other); m.Text != "elsewhere" {
		t.Fatalf("room other got %+v", m)
	}
	if r, ok := a.Retry(); !ok || r < chat.RetryTime || r > chat.RetryTime*3/2 {
		t.Fatalf("retry %v %v, want %v with at most half as much jitter", r, ok, chat.RetryTime)
	}
}

func TestSendRejects(t *testing.T) {
	t.Parallel()
	_, ts := start(t)
	long := strings.Repeat("é", chat.MaxText+1)
	for _, tt := range []struct {
		name, contentType, body string
		header                  []string
		want                    int
	}{
		{"empty text", form, "room=a&name=ann&text=+", nil, 400},
		{"no text", form, "room=a&name=ann", nil, 400},
		{"empty name", form, "room=a&name=&text=hi", nil, 400},
		{"long name", form, "room=a&name=" + strings.Repeat("n", chat.MaxName+1) + "&text=hi", nil, 400},
		{"long text", form, "room=a&name=ann&text=" + long, nil, 400},
		{"no room", form, "name=ann&text=hi", nil, 400},
		{"long room", form, "room=" + strings.Repeat("r", chat.MaxRoom+1) + "&name=ann&text=hi", nil, 400},
		{"control in room", form, "room=a%07b&name=ann&text=hi", nil, 400},
		{"space around room", form, "room=+a&name=ann&text=hi", nil, 400},
		{"control in name", form, "room=a&name=a%0Ab&text=hi", nil, 400},
		{"control in text", form, "room=a&name=ann&text=a%1Bb", nil, 400},
		{"not UTF-8", form, "room=a&name=ann&text=%FF", nil, 400},
		{"bad JSON", "application/json", `{"room":`, nil, 400},
		{"too large", form, "room=a&name=ann&text=" + strings.Repeat("x", 20000), nil, 400},
		{"cross-site", form, "room=a&name=ann&text=hi", []string{"Sec-Fetch-Site", "cross-site"}, 403},
		{"other origin", form, "room=a&name=ann&text=hi", []string{"Origin", "http://evil.example"}, 403},
		{"same origin", form, "room=a&name=ann&text=hi", []string{"Sec-Fetch-Site", "same-origin", "Origin", ts.URL}, 200},
	} {
		if code, msg := post(t, ts, tt.contentType, tt.body, tt.header...); code != tt.want {
			t.Errorf("%s: %d %s, want %d", tt.name, code, msg, tt.want)
		}
	}
	for _, q := range []string{"", "?room=", "?room=a%00b", "?room=" + strings.Repeat("r", chat.MaxRoom+1),
		"?room=a&tab=t1", "?room=a&name=ann", "?room=a&tab=t+1&name=ann", "?room=a&tab=" + strings.Repeat("t", 65) + "&name=ann"} {
		resp, err := ts.Client().Get(ts.URL + "/events" + q)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("GET /events%s: %s, want 400", q, resp.Status)
		}
	}
}

// chatting starts a chat with a stream of the room lobby, which has
// received one message, "before", whose id it returns.
func chatting(t *testing.T) (*chat.Server, *httptest.Server, *sse.Decoder, string) {
	t.Helper()
	s, ts := start(t)
	d := stream(t, s, ts, "lobby", "")
	send(t, ts, "lobby", "ann", "before")
	return s, ts, d, expect(t, d, "before")
}

func TestReplayAfterReconnect(t *testing.T) {
	t.Parallel()
	s, ts, _, seen := chatting(t)

	// A second client, gone since "before", comes back with its id: it
	// gets what it missed, then the live messages.
	send(t, ts, "lobby", "ann", "two")
	send(t, ts, "elsewhere", "ann", "not for lobby")
	send(t, ts, "lobby", "ann", "three")
	d := stream(t, s, ts, "lobby", seen)
	send(t, ts, "lobby", "ann", "four")
	expect(t, d, "two", "three", "four")
}

// cut has the server end the stream d with drop, sends "while away", and
// reconnects after the id seen, as a browser would.
func cut(t *testing.T, s *chat.Server, ts *httptest.Server, d *sse.Decoder, seen string, drop func()) *sse.Decoder {
	t.Helper()
	drop()
	ended(t, d)
	send(t, ts, "lobby", "ann", "while away")
	return stream(t, s, ts, "lobby", seen)
}

func TestDropConnectionsKeepsHistory(t *testing.T) {
	t.Parallel()
	s, ts, d, seen := chatting(t)
	d = cut(t, s, ts, d, seen, s.DropConnections)
	send(t, ts, "lobby", "ann", "after")
	expect(t, d, "while away", "after")
}

func TestRestartSendsReset(t *testing.T) {
	t.Parallel()
	s, ts, d, seen := chatting(t)
	d = cut(t, s, ts, d, seen, s.Restart) // "while away" is lost with the history
	e, err := d.Decode()
	if err != nil || e.Type != "reset" {
		t.Fatalf("got %v, %v; want a reset event", e, err)
	}
	send(t, ts, "lobby", "ann", "after")
	if id := expect(t, d, "after"); epoch(id) == epoch(seen) {
		t.Fatalf("id %q after the restart has the epoch of %q", id, seen)
	}
}

// epoch is the part of a MemoryBroker id before the sequence number.
func epoch(id string) string {
	e, _, _ := strings.Cut(id, "-")
	return e
}

func TestShutdown(t *testing.T) {
	t.Parallel()
	s, ts := start(t)
	d := stream(t, s, ts, "lobby", "")
	send(t, ts, "lobby", "ann", "last words")

	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	expect(t, d, "last words") // queued before the shutdown: delivered
	ended(t, d)
	if code, _ := post(t, ts, form, "room=a&name=ann&text=hi"); code != http.StatusServiceUnavailable {
		t.Fatalf("send after shutdown: %d, want 503", code)
	}
	resp, err := ts.Client().Get(ts.URL + "/events?room=lobby")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("stream after shutdown: %s, want 503", resp.Status)
	}
	s.DropConnections() // no effect once shut down
	s.Restart()
}

func TestPage(t *testing.T) {
	t.Parallel()
	_, ts := start(t)
	resp, err := ts.Client().Get(ts.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("%s %s", resp.Status, resp.Header.Get("Content-Type"))
	}
	for _, want := range []string{`new EventSource("/events?"`, `id="state"`, `id="notice"`, "textContent"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if strings.Contains(string(body), "innerHTML") {
		t.Error("page uses innerHTML")
	}
	if csp := resp.Header.Get("Content-Security-Policy"); strings.Contains(csp, "unsafe") || strings.Count(csp, "'sha256-") != 2 {
		t.Errorf("Content-Security-Policy %q: want the hashes of the script and the style", csp)
	}
}

func TestValidate(t *testing.T) {
	t.Parallel()
	if err := chat.Validate("café ☕", "zoë", "line one\n\tline two"); err != nil {
		t.Fatal(err)
	}
	s := chat.New(quiet)
	defer s.Shutdown(context.Background())
	if _, err := s.Send(context.Background(), "lobby", chat.Message{Name: "ann"}); err == nil {
		t.Fatal("Send of an empty text succeeded")
	}
	// JSON of the payload, as clients read it.
	b, _ := json.Marshal(chat.Message{Name: "a", Text: "b", Time: time.Unix(0, 0).UTC()})
	if string(b) != `{"name":"a","text":"b","time":"1970-01-01T00:00:00Z"}` {
		t.Fatalf("payload %s", b)
	}
}

// TestHeartbeatThenDrop ends streams that had heartbeats: under the race
// detector it shows that a handler does not return while a heartbeat may
// still be writing to its response.
func TestHeartbeatThenDrop(t *testing.T) {
	t.Parallel()
	s, ts := start(t)
	chat.SetHeartbeat(s, time.Millisecond)
	var beats []chan struct{}
	var ends []chan error
	for range 3 {
		d := stream(t, s, ts, "lobby", "")
		beat, end := make(chan struct{}), make(chan error, 1)
		d.OnComment(func(string) {
			select {
			case <-beat:
			default:
				close(beat)
			}
		})
		go func() {
			_, err := d.Decode()
			end <- err
		}()
		beats, ends = append(beats, beat), append(ends, end)
	}
	for _, beat := range beats {
		<-beat
	}
	s.DropConnections()
	for _, end := range ends {
		// Close cuts a heartbeat short when it is being written.
		if err := <-end; err != io.EOF && !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("got %v, want the stream to end", err)
		}
	}
}

// TestRecentOnOpen: a page that opens a room, or reloads, gets its recent
// messages once, then the live ones; the id /send answers is the event's.
func TestRecentOnOpen(t *testing.T) {
	t.Parallel()
	s, ts := start(t)
	send(t, ts, "lobby", "ann", "one")
	send(t, ts, "elsewhere", "ann", "not for lobby")
	code, body := post(t, ts, form, url.Values{"room": {"lobby"}, "name": {"bob"}, "text": {"two"}}.Encode())
	var sent struct{ ID string }
	if err := json.Unmarshal([]byte(body), &sent); code != http.StatusOK || err != nil || sent.ID == "" {
		t.Fatalf("send: %d %q (%v); want the id as JSON", code, body, err)
	}
	for range 2 { // open, then reload
		d, cancel := streamQuery(t, s, ts, url.Values{"room": {"lobby"}}, "")
		expect(t, d, "one")
		if id := expect(t, d, "two"); id != sent.ID {
			t.Fatalf("message two has id %q; /send answered %q", id, sent.ID)
		}
		cancel()
	}
}

// presence reads the next event of d, which must say who is in the room, and
// returns their names.
func presence(t *testing.T, d *sse.Decoder) string {
	t.Helper()
	e, err := d.Decode()
	if err != nil {
		t.Fatal(err)
	}
	var p chat.Presence
	if err := e.ReadJson(&p); err != nil || e.Type != chat.PresenceType {
		t.Fatalf("event %q %q (%v); want presence", e.Type, e.Bytes(), err)
	}
	var names []string
	for _, person := range p.People {
		names = append(names, person.Name)
	}
	return strings.Join(names, ",")
}

// TestPresence: who is in a room goes out when a page comes or goes; a page
// with two streams (a reload) is one person; GET /rooms lists the room.
func TestPresence(t *testing.T) {
	t.Parallel()
	s, ts := start(t)
	ann, _ := streamQuery(t, s, ts, url.Values{"room": {"lobby"}, "tab": {"t1"}, "name": {"ann"}}, "")
	if got := presence(t, ann); got != "ann" {
		t.Fatalf("ann sees %q", got)
	}
	bob, leave := streamQuery(t, s, ts, url.Values{"room": {"lobby"}, "tab": {"t2"}, "name": {"bob"}}, "")
	if got := presence(t, bob); got != "ann" { // the recent events: ann's arrival, then bob's
		t.Fatalf("bob sees %q first", got)
	}
	for name, d := range map[string]*sse.Decoder{"ann": ann, "bob": bob} {
		if got := presence(t, d); got != "ann,bob" {
			t.Fatalf("%s sees %q", name, got)
		}
	}
	// Ann reloads: a second stream of her tab, then the first goes.
	_, _ = streamQuery(t, s, ts, url.Values{"room": {"lobby"}, "tab": {"t1"}, "name": {"ann"}}, "")
	resp, err := ts.Client().Get(ts.URL + "/rooms")
	if err != nil {
		t.Fatal(err)
	}
	var rooms []chat.Room
	json.NewDecoder(resp.Body).Decode(&rooms)
	resp.Body.Close()
	if len(rooms) != 1 || rooms[0].Name != "lobby" || rooms[0].Streams != 3 {
		t.Fatalf("GET /rooms: %+v; want lobby with 3 streams", rooms)
	}
	leave()
	if got := presence(t, ann); got != "ann" {
		t.Fatalf("after bob left, ann sees %q", got)
	}
	send(t, ts, "lobby", "ann", "alone")
	expect(t, ann, "alone") // nothing came for ann's second stream: she was there
}
