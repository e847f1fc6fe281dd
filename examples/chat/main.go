// Command chat serves a chat in rooms over Server-Sent Events: open
// http://localhost:8080/#lobby in two browser windows. See README.md.
package main

import (
	"context"
	"errors"
	"flag"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/b2ce5911/sse/examples/chat/chat"
)

func main() {
	addr := flag.String("addr", "localhost:8080", "address to listen on")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		slog.Error("listen", "err", err)
		os.Exit(1)
	}
	slog.Info("listening", "url", "http://"+ln.Addr().String()+"/#lobby")
	if err := run(ctx, ln, slog.Default()); err != nil {
		slog.Error("serve", "err", err)
		os.Exit(1)
	}
}

// shutdownTime bounds how long the streams may take to drain on shutdown.
const shutdownTime = 5 * time.Second

// run serves the chat on ln until ctx ends, then shuts down gracefully: the
// streams first, since an open stream would hold http.Server.Shutdown until
// its deadline (and a detached one, in a Hub that detaches, would not end
// with it at all), then the HTTP server.
func run(ctx context.Context, ln net.Listener, log *slog.Logger) error {
	s := chat.New(log)
	srv := &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	select {
	case err := <-served:
		s.Shutdown(context.Background())
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTime)
	defer cancel()
	err := errors.Join(s.Shutdown(sctx), srv.Shutdown(sctx))
	if serr := <-served; !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	return err
}
