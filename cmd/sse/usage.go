package main

// synopsis follows a usage error.
const synopsis = `usage: sse [options] URL
       sse serve [options]
Run 'sse -h' for the manual.
`

// manual is the text of -h, laid out as a man page. Every flag of
// watchFlags and serveFlags is described here; a test checks it.
const manual = `NAME
    sse - read and serve Server-Sent Events

SYNOPSIS
    sse [options] URL
    sse serve [options]

DESCRIPTION
    sse URL connects to an event stream (text/event-stream) and prints each
    event as it arrives. It reconnects the way a browser's EventSource does:
    after the stream ends or breaks it waits the reconnection time (3s, or
    what the server's retry field says; longer, with jitter, while attempts
    keep failing) and connects again, sending the id of the last event as
    Last-Event-ID. It stops when the server answers 204 No Content, on any
    status but 200, on a response that is not an event stream, after -n
    events, or on SIGINT or SIGTERM. Diagnostics, reconnections included,
    go to standard error.

    sse serve reads standard input and serves each line as an event to any
    number of subscribers, at /events and at / for clients that accept
    text/event-stream; a browser that opens / gets a page that shows the
    stream live. A new subscriber first receives the recent events (see
    -history and -live); one that reconnects with Last-Event-ID receives
    what it missed. When the input ends it keeps serving until SIGINT or
    SIGTERM (or stops at once with -exit), then lets subscribers receive
    what is queued for them, for up to 5s, before it exits.

    A URL without a scheme means http: example.com/events is
    http://example.com/events, and :8080/events http://localhost:8080/events.
    Options may come before or after the URL; -- ends them.

OUTPUT
    text  (default) The wire format: "id:", "event:" (for types other than
          message) and one "data:" line per line of data, then an empty
          line. A file of it is an event stream again. Field names are
          coloured when standard output is a terminal (see -color).
    json  One JSON object per event and line: {"id":"…","type":"…","data":"…"};
          id is the last event ID, type is "message" when the server named
          none; bytes that are not UTF-8 become U+FFFD. For jq, and the
          input of sse serve -json.
    data  The data of each event, then a newline.

OPTIONS
    -H 'Name: value'
          Send this request header; repeat for more.
    -X METHOD
          Request method; GET, or POST with -d.
    -d DATA
          Send DATA as the request body, on every connection. @FILE reads
          it from FILE, @- from standard input. A body that is valid JSON
          is sent with Content-Type: application/json unless -H sets one.
    -o FORMAT
          Output format: text, json or data (see OUTPUT).
    -n N  Exit after printing N events (those that pass -type); 0, the
          default, means no limit.
    -type TYPE[,TYPE...]
          Print only events of these types (message for unnamed ones);
          repeatable.
    -last-event-id ID
          Send ID as Last-Event-ID on the first connection, to resume a
          stream.
    -read-timeout DURATION
          Treat a connection that receives nothing (not even a comment) for
          this long as broken, and reconnect. Default: no limit.
    -retry DURATION
          Reconnection time until the server sends one (default 3s); 0
          reconnects at once.
    -max-attempts N
          Give up after N failed connection attempts in a row (default:
          never). An attempt that delivered an event does not fail.
    -once
          Do not reconnect: exit when the first connection ends. The
          default for methods other than GET, such as the POST of an LLM
          API that streams one answer, which a reconnection would ask
          again; -once=false reconnects them too.
    -color auto|always|never
          Colour the text output: auto (default) colours it when standard
          output is a terminal and NO_COLOR is unset or empty.
    -v    Print each request, its response's status and headers, and the
          comments of the stream on standard error.
    -h    Print this manual.

SERVE OPTIONS
    -addr HOST:PORT
          Listen address (default 127.0.0.1:8080; :8080 listens on every
          interface, 127.0.0.1:0 on any free port). The address is printed
          on standard error.
    -topic NAME
          Topic of the events read (default events). Clients pick topics
          with ?topic=NAME, repeatable; without it they get this one.
    -type TYPE
          Event type of the lines (default: none, which clients see as
          message).
    -json
          Read one JSON object per line instead of text: {"data": …} with
          optional "id", "type" and "topic"; data that is not a string is
          sent as its JSON text. Ids must be unique, or left out so that the
          server assigns them. Lines that are not valid events are reported
          and skipped; empty lines are skipped.
    -history N
          Keep the last N events (default 1000) for subscribers that
          reconnect and for new ones.
    -live
          Send new subscribers only the events that come after they
          connect, not the recent ones.
    -retry DURATION
          Reconnection time sent to every subscriber, with up to half as
          much again at random so that they do not all come back at once
          after a restart (default: none sent, which browsers take as
          about 3s).
    -allow-origin ORIGIN
          Send Access-Control-Allow-Origin: ORIGIN, so that pages of another
          origin (or * for any) may read the stream.
    -tee
          Copy standard input to standard output.
    -exit
          Shut down when standard input ends, instead of serving until
          interrupted.

EXIT STATUS
    0    Done as asked: -n events printed; with -once, the server ended the
         stream; sse serve shut down after a signal or, with -exit, the end
         of its input.
    1    Error: a status other than 200 or 204 (the message shows the status
         and the first line of the body), a response that is not
         text/event-stream, a network error with -once or after
         -max-attempts, an event too large (16 MiB); for sse serve, a
         failure to listen, or subscribers that did not take what was queued
         for them within 5s of the shutdown.
    2    Bad command line.
    3    The server answered 204 No Content: it has no more events.
    4    The read timeout ended the stream, with -once or -max-attempts.
    130  sse URL was interrupted by SIGINT (143: SIGTERM).

EXAMPLES
    Follow a stream, and resume it later:
        sse https://example.com/events
        sse -last-event-id 41 https://example.com/events

    Take the data of the first 10 price events, in JSON:
        sse -o json -type price -n 10 https://example.com/events | jq .data

    Stream an answer from a POST-based LLM API:
        sse -H "Authorization: Bearer $KEY" -o data \
            -d '{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}' \
            https://api.example.com/v1/chat/completions

    Show a build's progress in a browser at http://127.0.0.1:8080/:
        make 2>&1 | sse serve -tee

    Relay a stream, with a history of its own:
        sse -o json https://example.com/events | sse serve -json -addr :9000
`
