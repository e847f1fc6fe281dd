package main

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/b2ce5911/sse"
)

// serveOptions are the options of "sse serve".
type serveOptions struct {
	addr        string
	topic       string
	json        bool
	typ         string
	history     int
	live        bool
	retry       time.Duration
	exit        bool
	allowOrigin string
	tee         bool
}

func serveFlags(o *serveOptions) *flag.FlagSet {
	fs := flag.NewFlagSet("sse serve", flag.ContinueOnError)
	fs.StringVar(&o.addr, "addr", "127.0.0.1:8080", "")
	fs.StringVar(&o.topic, "topic", "events", "")
	fs.BoolVar(&o.json, "json", false, "")
	fs.StringVar(&o.typ, "type", "", "")
	fs.IntVar(&o.history, "history", 1000, "")
	fs.BoolVar(&o.live, "live", false, "")
	fs.DurationVar(&o.retry, "retry", 0, "")
	fs.BoolVar(&o.exit, "exit", false, "")
	fs.StringVar(&o.allowOrigin, "allow-origin", "", "")
	fs.BoolVar(&o.tee, "tee", false, "")
	return fs
}

// historySlack is how many more events the broker keeps than -history:
// a new subscriber asks for the last -history events a moment after the
// position was read, and events published meanwhile must not push the
// oldest of them out.
const historySlack = 64

// shutdownTimeout bounds how long subscribers may take to receive what is
// queued for them when the server stops.
const shutdownTimeout = 5 * time.Second

//go:embed page.html
var page string

// serve is "sse serve": it publishes standard input to a Hub and serves it
// until a signal, or with -exit the end of the input.
func serve(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	var o serveOptions
	fs := serveFlags(&o)
	operands, err := parseArgs(fs, args, stdout)
	if err == nil {
		err = o.check(operands)
	}
	if err != nil {
		return exitFor(err, stderr)
	}

	broker := &sse.MemoryBroker{History: o.history + historySlack, HistoryAge: -1}
	hub := &sse.Hub{
		Broker:   broker,
		Upgrader: sse.Upgrader{RetryTime: o.retry},
		Topics: func(r *http.Request) []string {
			if t := r.URL.Query()["topic"]; len(t) > 0 {
				return t
			}
			return []string{o.topic}
		},
		Logger: slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
	defer broker.Close()
	recent, err := newRecent(broker, o.topic, o.history)
	if err != nil {
		return exitFor(err, stderr)
	}

	ln, err := net.Listen("tcp", o.addr)
	if err != nil {
		return exitFor(err, stderr)
	}
	srv := &http.Server{Handler: o.handler(hub, recent), ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	fmt.Fprintf(stderr, "sse: serving http://%s/ (events at /events)\n", ln.Addr())

	stopped := make(chan signalError, 1)
	release := onSignal(func(s signalError) { stopped <- s })
	defer release()
	read := make(chan error, 1)
	go func() { read <- o.publish(stdin, stdout, stderr, hub, recent) }()

	code := exitOK
	for done := false; !done; {
		select {
		case <-stopped:
			done = true
		case err := <-served:
			fmt.Fprintln(stderr, message(err))
			return exitError
		case err := <-read:
			read = nil
			if err != nil {
				fmt.Fprintln(stderr, message(err))
			}
			if o.exit {
				done = true
				break
			}
			fmt.Fprintf(stderr, "sse: end of input after %d events; serving them until interrupted\n", recent.published())
		}
	}

	// Closing the listener first keeps subscribers, whose streams the Hub
	// then ends, from coming back to a Hub that has closed.
	ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	srvDone := make(chan error, 1)
	go func() { srvDone <- srv.Shutdown(ctx) }()
	if err := hub.Shutdown(ctx); err != nil {
		fmt.Fprintln(stderr, message(fmt.Errorf("shutdown: subscribers did not take every event: %w", err)))
		code = exitError
	}
	if err := <-srvDone; err != nil {
		srv.Close()
	}
	return code
}

func (o *serveOptions) check(operands []string) error {
	switch {
	case len(operands) > 0:
		return usagef("serve takes no operands, got %q", operands)
	case o.history < 1:
		return usagef("-history must be at least 1")
	case o.topic == "":
		return usagef("-topic must not be empty")
	case o.retry < 0:
		return usagef("-retry must not be negative")
	case strings.ContainsAny(o.typ, "\r\n"):
		return usagef("line break in -type")
	}
	return nil
}

// handler serves the page at / and the stream at /events, and at / too for
// a client that asks for text/event-stream, so that "sse URL" works with
// the address alone.
func (o *serveOptions) handler(hub *sse.Hub, recent *recent) http.Handler {
	types := []string{sse.DefaultResetType}
	if o.typ != "" && o.typ != "message" {
		types = append(types, o.typ)
	}
	list, _ := json.Marshal(types) // escapes <, > and &: safe in a script
	html := strings.Replace(page, "/*TYPES*/[]", string(list), 1)

	stream := func(w http.ResponseWriter, r *http.Request) {
		if o.allowOrigin != "" {
			w.Header().Set("Access-Control-Allow-Origin", o.allowOrigin)
		}
		if !o.live && r.Header.Get("Last-Event-ID") == "" && r.URL.Query().Get("lastEventId") == "" {
			// A new subscriber resumes from before the recent events, and
			// so receives them first.
			r = r.Clone(r.Context())
			r.Header.Set("Last-Event-ID", recent.start())
		}
		hub.ServeHTTP(w, r)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/events", stream)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path != "/":
			http.NotFound(w, r)
		case strings.Contains(r.Header.Get("Accept"), "text/event-stream"):
			stream(w, r)
		default:
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			io.WriteString(w, html)
		}
	})
	return mux
}

// recent remembers the ids of the last events published, so that a new
// subscriber can be replayed the last n of them.
type recent struct {
	mu    sync.Mutex
	ids   []string // the id before the oldest of the last n events, then theirs
	n     int
	count int
}

// newRecent starts with the position of the empty broker, which replays
// every event to come.
func newRecent(b sse.Broker, topic string, n int) (*recent, error) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	start, err := b.Subscribe(ctx, topic, func(sse.Entry) {})
	if err != nil {
		return nil, err
	}
	return &recent{ids: []string{start}, n: n}, nil
}

func (r *recent) add(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.count++
	r.ids = append(r.ids, id)
	if len(r.ids) > r.n+1 {
		r.ids = append(r.ids[:0], r.ids[len(r.ids)-r.n-1:]...)
	}
}

func (r *recent) start() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.ids[0]
}

func (r *recent) published() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.count
}

// publish reads stdin to its end and publishes every line. A line that is
// not a valid event is reported and skipped: one bad line of a log does not
// end the stream.
func (o *serveOptions) publish(stdin io.Reader, stdout, stderr io.Writer, hub *sse.Hub, recent *recent) error {
	sc := bufio.NewScanner(stdin)
	sc.Buffer(make([]byte, 0, 64<<10), sse.DefaultMaxEventSize)
	for n := 1; sc.Scan(); n++ {
		line := sc.Bytes()
		err := o.publishLine(line, hub, recent)
		if errors.Is(err, sse.ErrHubClosed) {
			return nil
		}
		if err != nil {
			fmt.Fprintf(stderr, "sse: line %d: %v\n", n, strings.TrimPrefix(err.Error(), "sse: "))
		}
		if o.tee {
			// After publishing, so that a reader of the copy knows that
			// the event is out.
			stdout.Write(line)
			io.WriteString(stdout, "\n")
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("reading standard input: %w", err)
	}
	return nil
}

func (o *serveOptions) publishLine(line []byte, hub *sse.Hub, recent *recent) error {
	topic, m := o.topic, sse.Message{Type: o.typ, Data: line}
	if o.json {
		if len(bytes.TrimSpace(line)) == 0 {
			return nil
		}
		var err error
		if topic, m, err = o.parseEvent(line); err != nil {
			return err
		}
	}
	id, err := hub.Publish(context.Background(), topic, m)
	if err == nil {
		recent.add(id)
	}
	return err
}

// inputEvent is an event of -json input: the json format of "sse -o json",
// and a topic.
type inputEvent struct {
	Topic string          `json:"topic"`
	ID    string          `json:"id"`
	Type  string          `json:"type"`
	Data  json.RawMessage `json:"data"`
}

// parseEvent reads one line of -json input. Data that is not a string is
// sent as its JSON text.
func (o *serveOptions) parseEvent(line []byte) (string, sse.Message, error) {
	var in inputEvent
	d := json.NewDecoder(bytes.NewReader(line))
	d.DisallowUnknownFields()
	if err := d.Decode(&in); err != nil {
		return "", sse.Message{}, fmt.Errorf("not a JSON event: %w", err)
	}
	if d.More() {
		return "", sse.Message{}, errors.New("not a JSON event: more after the object")
	}
	m := sse.Message{ID: in.ID, Type: in.Type, Data: in.Data}
	if m.Type == "" {
		m.Type = o.typ
	}
	switch {
	case len(in.Data) == 0, string(in.Data) == "null":
		m.Data = nil
	case in.Data[0] == '"':
		var s string
		if err := json.Unmarshal(in.Data, &s); err != nil {
			return "", sse.Message{}, err
		}
		m.Data = []byte(s)
	default:
		var b bytes.Buffer
		if err := json.Compact(&b, in.Data); err != nil {
			return "", sse.Message{}, err
		}
		m.Data = b.Bytes()
	}
	return cmp.Or(in.Topic, o.topic), m, nil
}
