package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/b2ce5911/sse"
)

// watchOptions are the options of "sse URL".
type watchOptions struct {
	header      http.Header
	method      string
	data        string
	output      string
	count       int
	types       []string
	lastID      string
	readTimeout time.Duration
	retry       time.Duration
	maxAttempts int
	once        bool
	color       string
	verbose     bool
}

func watchFlags(o *watchOptions) *flag.FlagSet {
	fs := flag.NewFlagSet("sse", flag.ContinueOnError)
	o.header = make(http.Header)
	fs.Var(headerFlag(o.header), "H", "")
	fs.StringVar(&o.method, "X", "", "")
	fs.StringVar(&o.data, "d", "", "")
	fs.StringVar(&o.output, "o", "text", "")
	fs.IntVar(&o.count, "n", 0, "")
	fs.Var((*listFlag)(&o.types), "type", "")
	fs.StringVar(&o.lastID, "last-event-id", "", "")
	fs.DurationVar(&o.readTimeout, "read-timeout", 0, "")
	fs.DurationVar(&o.retry, "retry", 3*time.Second, "")
	fs.IntVar(&o.maxAttempts, "max-attempts", 0, "")
	fs.BoolVar(&o.once, "once", false, "")
	fs.StringVar(&o.color, "color", "auto", "")
	fs.BoolVar(&o.verbose, "v", false, "")
	return fs
}

// headerFlag adds "Name: value" to a header; it may be repeated.
type headerFlag http.Header

func (h headerFlag) String() string { return "" }

func (h headerFlag) Set(s string) error {
	name, value, ok := strings.Cut(s, ":")
	name = strings.TrimSpace(name)
	if !ok || name == "" || strings.ContainsFunc(name, func(r rune) bool { return r <= ' ' || r >= unicode.MaxASCII }) {
		return fmt.Errorf("want 'Name: value', got %q", s)
	}
	value = strings.TrimSpace(value)
	if strings.ContainsAny(value, "\r\n") {
		return fmt.Errorf("line break in the value of %s", name)
	}
	http.Header(h).Add(name, value)
	return nil
}

// listFlag collects comma-separated values; it may be repeated.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }

func (l *listFlag) Set(s string) error {
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			*l = append(*l, v)
		}
	}
	return nil
}

// onceEnd is the cause of the context that -once cancels when the first
// connection ends: err is how it ended.
type onceEnd struct{ err error }

func (e onceEnd) Error() string { return e.err.Error() }
func (e onceEnd) Unwrap() error { return e.err }

// watch is "sse URL": it prints the stream's events and returns the exit
// status.
func watch(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	var o watchOptions
	fs := watchFlags(&o)
	operands, err := parseArgs(fs, args, stdout)
	if err != nil {
		return exitFor(err, stderr)
	}
	c, uri, err := o.client(fs, operands, stdin, stderr)
	if err != nil {
		return exitFor(err, stderr)
	}
	p, err := newPrinter(stdout, o.output, o.color)
	if err != nil {
		return exitFor(err, stderr)
	}
	body := c.HTTPClient.Transport.(*transport)

	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	release := onSignal(func(s signalError) { cancel(s) })
	defer release()
	if o.once {
		c.OnError = func(err error) { cancel(onceEnd{err}) }
	}

	printed := 0
	for e, err := range c.Events(ctx, uri) {
		if err != nil {
			return o.exitFor(err, body, stderr)
		}
		if len(o.types) > 0 && !slices.Contains(o.types, e.Type) {
			continue
		}
		if err := p.print(e); err != nil {
			fmt.Fprintln(stderr, message(fmt.Errorf("writing the output: %w", err)))
			return exitError
		}
		printed++
		if o.count > 0 && printed >= o.count {
			return exitOK
		}
	}
	if o.verbose {
		fmt.Fprintln(stderr, "sse: 204 No Content: the server has no more events")
	}
	return exitNoMore // the stream stops without an error only on a 204
}

// client checks the options and builds the Client that runs them.
func (o *watchOptions) client(fs *flag.FlagSet, operands []string, stdin io.Reader, stderr io.Writer) (*sse.Client, string, error) {
	switch {
	case len(operands) == 0:
		return nil, "", usagef("no URL")
	case len(operands) > 1:
		return nil, "", usagef("one URL only, got %q", operands)
	case o.count < 0:
		return nil, "", usagef("-n must not be negative")
	case o.maxAttempts < 0:
		return nil, "", usagef("-max-attempts must not be negative")
	case o.readTimeout < 0:
		return nil, "", usagef("-read-timeout must not be negative")
	}
	uri := withScheme(operands[0])
	if u, err := url.Parse(uri); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, "", usagef("not an http or https URL: %q", uri)
	}
	c := &sse.Client{
		HTTPClient:     &http.Client{Transport: &transport{base: http.DefaultTransport}},
		Method:         o.method,
		Header:         o.header,
		LastEventID:    o.lastID,
		ReadTimeout:    o.readTimeout,
		ReconnectDelay: o.retry,
		MaxAttempts:    o.maxAttempts,
		OnError: func(err error) {
			fmt.Fprintf(stderr, "%s; reconnecting\n", message(err))
		},
	}
	if o.retry <= 0 {
		c.ReconnectDelay = -1 // the Client's zero means its default
	}
	if o.isSet(fs, "d") {
		body, err := readBody(o.data, stdin)
		if err != nil {
			return nil, "", err
		}
		c.Body = body
		if c.Method == "" {
			c.Method = http.MethodPost
		}
		if c.Header.Get("Content-Type") == "" && json.Valid(body) {
			c.Header.Set("Content-Type", "application/json")
		}
	}
	if c.Method != "" && c.Method != http.MethodGet && !o.isSet(fs, "once") {
		o.once = true // repeating the request would not resume the stream but ask again
	}
	if o.verbose {
		c.OnConnect = func(resp *http.Response) { printExchange(stderr, resp) }
		c.OnComment = func(text string) { fmt.Fprintln(stderr, strings.TrimSpace(": "+printable(text))) }
	}
	return c, uri, nil
}

// withScheme completes a URL typed without its scheme, as curl does, and
// ":8080/x" as httpie does.
func withScheme(uri string) string {
	switch {
	case strings.Contains(uri, "://"):
		return uri
	case strings.HasPrefix(uri, ":"):
		return "http://localhost" + uri
	}
	return "http://" + uri
}

func (o *watchOptions) isSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// readBody reads the request body of -d: the text itself, @FILE or @- for
// standard input.
func readBody(arg string, stdin io.Reader) ([]byte, error) {
	name, ok := strings.CutPrefix(arg, "@")
	switch {
	case !ok:
		return []byte(arg), nil
	case name == "-":
		b, err := io.ReadAll(stdin)
		if err != nil {
			return nil, fmt.Errorf("reading the body from standard input: %w", err)
		}
		return b, nil
	}
	b, err := os.ReadFile(name)
	if err != nil {
		return nil, fmt.Errorf("reading the body: %w", err)
	}
	return b, nil
}

// exitFor reports err, which stopped the stream, and returns the exit
// status it stands for.
func (o *watchOptions) exitFor(err error, body *transport, stderr io.Writer) int {
	var sig signalError
	var once onceEnd
	var se *sse.StatusError
	switch {
	case errors.As(err, &sig):
		return sig.exitCode()
	case errors.As(err, &once) && errors.Is(once.err, io.EOF):
		return exitOK // -once, and the server ended the stream cleanly
	case errors.As(err, &once):
		err = once.err
	case errors.As(err, &se):
		if line := body.line(); line != "" {
			err = fmt.Errorf("%w: %s", err, line)
		}
	}
	fmt.Fprintln(stderr, message(err))
	if errors.Is(err, sse.ErrReadTimeout) {
		return exitTimeout
	}
	return exitError
}

// transport sends the Client's requests. It keeps the first line of the
// body of the latest response that is not a 200, since a [sse.StatusError]
// carries only the status and servers say why in the body; and it sends a
// Host header of -H as the request's host, as curl does, where net/http
// would ignore it.
type transport struct {
	base http.RoundTripper

	mu   sync.Mutex
	last string
}

// maxBodyLine bounds what is read of an error body, and shown of it.
const maxBodyLine = 512

func (s *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if host := req.Header.Get("Host"); host != "" && req.Host != host {
		req = req.Clone(req.Context()) // a RoundTripper must not change its request
		req.Host = host
	}
	resp, err := s.base.RoundTrip(req)
	if err != nil || resp.StatusCode == http.StatusOK {
		return resp, err
	}
	buf := make([]byte, maxBodyLine)
	n, _ := io.ReadFull(resp.Body, buf)
	buf = buf[:n]
	line, _, _ := bytes.Cut(buf, []byte("\n"))
	s.mu.Lock()
	s.last = printable(string(line))
	s.mu.Unlock()
	// The HTTP client reads the body of a redirect itself.
	resp.Body = struct {
		io.Reader
		io.Closer
	}{io.MultiReader(bytes.NewReader(buf), resp.Body), resp.Body}
	return resp, nil
}

func (s *transport) line() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last
}

// printable drops what a terminal would take for a control sequence.
func printable(s string) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsPrint(r) || r == '\t' {
			return r
		}
		return -1
	}, s)
	return strings.TrimSpace(s)
}

// printExchange shows the request that opened a stream and the response's
// headers, as curl -v does.
func printExchange(w io.Writer, resp *http.Response) {
	var b strings.Builder
	req := resp.Request
	fmt.Fprintf(&b, "> %s %s\n", req.Method, req.URL)
	writeHeader(&b, "> ", req.Header)
	fmt.Fprintf(&b, "< %s %s\n", resp.Proto, resp.Status)
	writeHeader(&b, "< ", resp.Header)
	io.WriteString(w, b.String())
}

func writeHeader(b *strings.Builder, prefix string, h http.Header) {
	for _, k := range slices.Sorted(maps.Keys(h)) {
		for _, v := range h[k] {
			fmt.Fprintf(b, "%s%s: %s\n", prefix, k, printable(v))
		}
	}
}
