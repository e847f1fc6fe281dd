package sse

import (
	"errors"
	"io"
	"net/http"
)

// DefaultClient is the HTTP client used by [Notify] and [Client] when none is
// given. It has no Timeout, because http.Client.Timeout covers reading the
// whole body and would cut every stream off after it; [Client.ReadTimeout]
// is the timeout that suits a stream.
var DefaultClient = &http.Client{}

// DefaultGetReq builds the request of [Notify] when it is given no builder of
// its own. It is http.NewRequest; replace it, or pass a builder to Notify, to
// add authentication or other headers.
var DefaultGetReq = http.NewRequest

// ErrNilChan is returned by [Notify] and [Client.Notify] when the event
// channel is nil: sending on it would block forever.
var ErrNilChan = errors.New("sse: nil event channel")

// Notify connects once to uri and sends every event the stream dispatches
// on evCh, with [Event.URI] set to uri. It blocks until the stream ends and
// never closes evCh, which belongs to the caller; a caller that stops
// receiving blocks Notify. It cannot be cancelled but through the context of
// the request getReq builds, and it does not reconnect: [Client] does both,
// and its Prepare hook adjusts the request of every attempt, a token
// refreshed for each one for example.
//
// A nil client means [DefaultClient] and a nil getReq means [DefaultGetReq];
// getReq is called once with method GET and a nil body. The request carries
// Accept: text/event-stream and Cache-Control: no-cache unless getReq set
// those headers itself.
//
// Notify returns nil when the server ends the stream cleanly (an event it
// left unfinished is discarded, as the standard says), [ErrNilChan] for a nil
// channel, a [*StatusError] for any status but 200, an error wrapping
// [ErrContentType] for a response that is not an event stream, an error
// wrapping [ErrEventTooLarge] for an event over [DefaultMaxEventSize], and
// otherwise the error of building, sending or reading the request.
func Notify(uri string, client *http.Client, getReq func(method, uri string, body io.Reader) (*http.Request, error), evCh chan<- *Event) error {
	if evCh == nil {
		return ErrNilChan
	}
	if client == nil {
		client = DefaultClient
	}
	if getReq == nil {
		getReq = DefaultGetReq
	}
	req, err := getReq(http.MethodGet, uri, nil)
	if err != nil {
		return err
	}
	if req == nil {
		return errors.New("sse: request builder returned no request")
	}
	s := session{client: client, uri: uri}
	err = s.stream(req, nil, func(e *Event) bool {
		evCh <- e
		return true
	})
	if err == io.EOF {
		return nil
	}
	return err
}
