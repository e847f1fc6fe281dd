// Command events serves a ticking stream of JSON events, to a browser page
// at / and to any client (curl -N) at /events. Each tick has an id, and a
// client that reconnects, to this process or to one started after it, gets
// the ticks it missed and then the next ones.
package main

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"flag"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/b2ce5911/sse"
)

//go:embed index.html
var page []byte

// A tick is the N-th interval since the Unix epoch. Its id is N: a function
// of the clock, so a server started after a client's last tick knows which
// ones the client missed as well as the server that sent it, and no store
// of events is needed. (An application whose events are not computed needs
// a history instead: see sse.Hub.)
type tick struct {
	N        int64     `json:"n"`
	Time     time.Time `json:"time"`
	Replayed bool      `json:"replayed,omitempty"` // sent late, to a client that came back
}

// maxCatchUp bounds how many missed ticks a client that comes back is sent;
// it skips older ones, and its page shows the jump in the numbers.
const maxCatchUp = 100

func main() {
	addr := flag.String("addr", "localhost:8080", "address to listen on")
	every := flag.Duration("every", time.Second, "time between events")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		slog.Error("listen", "err", err)
		os.Exit(1)
	}
	slog.Info("listening", "url", "http://"+ln.Addr().String())
	if err := run(ctx, ln, *every); err != nil {
		slog.Error("serve", "err", err)
		os.Exit(1)
	}
}

// run serves on ln until ctx ends, then ends the streams and shuts down.
func run(ctx context.Context, ln net.Listener, every time.Duration) error {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Write(page)
	})
	mux.Handle("GET /events", stream(ctx, every))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	slog.Info("shutting down")
	// The streams end with ctx; Shutdown waits for their handlers.
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := srv.Shutdown(sctx)
	if serr := <-served; !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	return err
}

// stream sends one tick event per interval, each with its number as id,
// until the client goes away or quit ends. A client that sends a
// Last-Event-ID first gets the ticks after it, up to maxCatchUp.
func stream(quit context.Context, every time.Duration) http.Handler {
	u := &sse.Upgrader{RetryTime: 2 * time.Second}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := u.Upgrade(w, r)
		if err != nil {
			return // Upgrade has answered the request
		}
		defer c.Close() // no heartbeat may write once the handler has returned
		now := time.Now().UnixNano() / int64(every)
		next := now
		if last, err := strconv.ParseInt(c.LastEventID(), 10, 64); err == nil && last < now {
			next = max(last+1, now-maxCatchUp+1)
		} // no id, a bad one or one from the future: start with the current tick
		t := time.NewTimer(0)
		defer t.Stop()
		for {
			for ; next <= now; next++ {
				data, _ := json.Marshal(tick{N: next, Time: time.Unix(0, next*int64(every)).UTC(), Replayed: next < now})
				if err := c.WriteEventWithID(strconv.FormatInt(next, 10), "tick", data); err != nil {
					return
				}
			}
			t.Reset(time.Until(time.Unix(0, next*int64(every))))
			select {
			case <-t.C:
				now = max(now, time.Now().UnixNano()/int64(every))
			case <-c.Done():
				return
			case <-quit.Done():
				return
			}
		}
	})
}
