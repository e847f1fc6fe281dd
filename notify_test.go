package sse_test

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/b2ce5911/sse"
)

func TestNotify(t *testing.T) {
	t.Parallel()
	errBuild := errors.New("no request for you")
	tests := []struct {
		name   string
		step   stubStep
		getReq func(method, uri string, body io.Reader) (*http.Request, error)
		want   []ev
		// wantErr checks the error Notify returns; nil means it must be nil.
		wantErr    func(error) bool
		wantHeader map[string]string
	}{
		{
			name:       "clean end returns nil, unfinished event discarded",
			step:       stubSend("id: 1\nevent: add\ndata: a\n\ndata: b\ndata: c\n\nid: 2\ndata: cut"),
			want:       []ev{{"1", "add", "a"}, {"1", "message", "b\nc"}},
			wantHeader: map[string]string{"Accept": "text/event-stream", "Cache-Control": "no-cache"},
		},
		{
			name:    "network error is returned",
			step:    stubBreak("data: a\n\ndata: cut"),
			want:    []ev{{"", "message", "a"}},
			wantErr: func(err error) bool { return err != nil && !errors.Is(err, io.EOF) },
		},
		{
			name:    "500 is a StatusError",
			step:    stubStatus(http.StatusInternalServerError),
			wantErr: isStatusError(http.StatusInternalServerError),
		},
		{
			name:    "204 is a StatusError too",
			step:    stubStatus(http.StatusNoContent),
			wantErr: isStatusError(http.StatusNoContent),
		},
		{
			name: "wrong Content-Type",
			step: stubSendAs("application/json", `{"a":1}`),
			wantErr: func(err error) bool {
				return errors.Is(err, sse.ErrContentType) && strings.Contains(err.Error(), "application/json")
			},
		},
		{
			name: "custom request builder",
			step: stubSend("data: a\n\n"),
			getReq: func(method, uri string, body io.Reader) (*http.Request, error) {
				req, err := http.NewRequest(method, uri, body)
				if err == nil {
					req.Header.Set("Authorization", "Bearer x")
					req.Header.Set("Accept", "text/event-stream;q=1")
				}
				return req, err
			},
			want:       []ev{{"", "message", "a"}},
			wantHeader: map[string]string{"Authorization": "Bearer x", "Accept": "text/event-stream;q=1", "Cache-Control": "no-cache"},
		},
		{
			name: "request builder error",
			step: stubSend("data: a\n\n"),
			getReq: func(string, string, io.Reader) (*http.Request, error) {
				return nil, errBuild
			},
			wantErr: func(err error) bool { return errors.Is(err, errBuild) },
		},
		{
			name: "request builder without request",
			step: stubSend("data: a\n\n"),
			getReq: func(string, string, io.Reader) (*http.Request, error) {
				return nil, nil
			},
			wantErr: func(err error) bool { return err != nil },
		},
		{
			name: "request without header map",
			step: stubSend("data: a\n\n"),
			getReq: func(method, uri string, body io.Reader) (*http.Request, error) {
				req, err := http.NewRequest(method, uri, body)
				if err == nil {
					req.Header = nil
				}
				return req, err
			},
			want:       []ev{{"", "message", "a"}},
			wantHeader: map[string]string{"Accept": "text/event-stream"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := newStubServer(t, tt.step)
			ch := make(chan *sse.Event, 16)
			err := sse.Notify(srv.URL, srv.Client(), tt.getReq, ch)
			if tt.wantErr == nil && err != nil || tt.wantErr != nil && !tt.wantErr(err) {
				t.Errorf("Notify() = %v", err)
			}
			close(ch) // the caller owns the channel: Notify left it open
			var got []ev
			for e := range ch {
				if e.URI != srv.URL {
					t.Errorf("URI = %q, want %q", e.URI, srv.URL)
				}
				got = append(got, ev{e.ID, e.Type, string(e.Bytes())})
			}
			if !equalEvents(got, tt.want) {
				t.Errorf("events = %q, want %q", got, tt.want)
			}
			reqs := srv.requests()
			if tt.wantHeader != nil && len(reqs) != 1 {
				t.Fatalf("%d requests, want 1", len(reqs))
			}
			for k, v := range tt.wantHeader {
				if got := reqs[0].header.Get(k); got != v || reqs[0].method != "GET" {
					t.Errorf("%s %s = %q, want GET and %q", reqs[0].method, k, got, v)
				}
			}
		})
	}
}

func TestNotifyDefaults(t *testing.T) {
	t.Parallel()
	if err := sse.Notify("http://127.0.0.1:1", nil, nil, nil); err != sse.ErrNilChan {
		t.Errorf("nil channel: %v, want ErrNilChan", err)
	}
	srv := newStubServer(t, stubSend("data: a\n\n"))
	ch := make(chan *sse.Event, 1)
	if err := sse.Notify(srv.URL, nil, nil, ch); err != nil {
		t.Errorf("Notify with DefaultClient and DefaultGetReq: %v", err)
	}
	sse.DefaultClient.CloseIdleConnections()
	if e := <-ch; string(e.Bytes()) != "a" {
		t.Errorf("event data = %q", e.Bytes())
	}
}

// A consumer that reads slowly only slows Notify down: every event arrives.
func TestNotifyUnbufferedChannel(t *testing.T) {
	t.Parallel()
	var stream strings.Builder
	for i := 0; i < 100; i++ {
		stream.WriteString("data: x\n\n")
	}
	srv := newStubServer(t, stubSend(stream.String()))
	ch := make(chan *sse.Event)
	done := make(chan error, 1)
	go func() { done <- sse.Notify(srv.URL, srv.Client(), nil, ch) }()
	n := 0
	for {
		select {
		case <-ch:
			n++
			continue
		case err := <-done:
			if err != nil || n != 100 {
				t.Errorf("Notify() = %v after %d events, want nil after 100", err, n)
			}
		}
		break
	}
}
