// Command events serves a ticking stream of JSON events, to a browser page
// at / and to any client (curl -N) at /events.
package main

import (
	_ "embed"
	"flag"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/b2ce5911/sse"
)

//go:embed index.html
var page []byte

type tick struct {
	N    int       `json:"n"`
	Time time.Time `json:"time"`
}

func main() {
	addr := flag.String("addr", "localhost:8080", "address to listen on")
	every := flag.Duration("every", time.Second, "time between events")
	flag.Parse()

	http.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Write(page)
	})
	http.Handle("GET /events", stream(*every))
	slog.Info("listening", "url", "http://"+*addr)
	if err := http.ListenAndServe(*addr, nil); err != nil {
		slog.Error("serve", "err", err)
		os.Exit(1)
	}
}

// stream sends one tick event per interval until the client goes away.
func stream(every time.Duration) http.Handler {
	u := &sse.Upgrader{RetryTime: 2 * time.Second}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := u.Upgrade(w, r)
		if err != nil {
			return // Upgrade has answered the request
		}
		defer c.Close() // no heartbeat may write once the handler has returned
		t := time.NewTicker(every)
		defer t.Stop()
		for n := 1; ; n++ {
			if err := c.WriteJsonEvent("tick", tick{N: n, Time: time.Now().UTC()}); err != nil {
				return
			}
			select {
			case <-t.C:
			case <-c.Done():
				return
			}
		}
	})
}
