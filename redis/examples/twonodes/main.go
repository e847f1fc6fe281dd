// Command twonodes runs two nodes of one event service in one process:
// two sse.Hubs, each with its own Redis client and sseredis.Broker, on two
// ports, sharing one Redis. Publish on either node; subscribe on either.
// See README.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/b2ce5911/sse"
	sseredis "github.com/b2ce5911/sse/redis"
	"github.com/redis/go-redis/v9"
)

func main() {
	addr := flag.String("redis", "localhost:6379", "Redis address: host:port, or the path of a unix socket")
	a := flag.String("a", "localhost:8081", "address of node A")
	b := flag.String("b", "localhost:8082", "address of node B")
	prefix := flag.String("prefix", sseredis.DefaultPrefix, "prefix of the Redis keys")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	errc := make(chan error, 2)
	for name, listen := range map[string]string{"A": *a, "B": *b} {
		go func() { errc <- run(ctx, name, listen, *addr, *prefix) }()
	}
	var failed bool
	for range 2 {
		if err := <-errc; err != nil {
			slog.Error("node stopped", "err", err)
			failed = true
			stop() // one node down: take the other down too
		}
	}
	if failed {
		os.Exit(1)
	}
}

// run serves one node at listen until ctx ends, then shuts it down: the
// streams get what is queued for them and close, and clients reconnect,
// to the other node if the load balancer says so.
func run(ctx context.Context, name, listen, addr, prefix string) error {
	// The publisher retries, not go-redis: see sseredis.Broker. The default
	// pool is enough: a node's Broker holds one Pub/Sub connection and
	// reads with one pooled connection at a time, whatever its topics.
	opts := &redis.Options{Addr: addr, MaxRetries: -1}
	if strings.Contains(addr, "/") {
		opts.Network = "unix"
	}
	client := redis.NewClient(opts)
	defer client.Close()
	if err := client.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("node %s: redis at %s: %w", name, addr, err)
	}
	log := slog.With("node", name)
	broker := &sseredis.Broker{Client: client, Prefix: prefix, Logger: log}
	defer broker.Close()
	hub := &sse.Hub{Broker: broker, Logger: log, Upgrader: sse.Upgrader{RetryTime: time.Second}}

	mux := http.NewServeMux()
	mux.Handle("GET /events", hub) // ?topic=news[&topic=...]
	mux.HandleFunc("POST /publish", func(w http.ResponseWriter, r *http.Request) {
		topic := r.URL.Query().Get("topic")
		data, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
		if topic == "" || err != nil {
			http.Error(w, "POST /publish?topic=NAME[&type=TYPE] with the data as body", http.StatusBadRequest)
			return
		}
		id, err := hub.Publish(r.Context(), topic, sse.Message{Type: r.URL.Query().Get("type"), Data: data})
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintf(w, "published on node %s as %s\n", name, id)
	})
	srv := &http.Server{Addr: listen, Handler: mux}
	served := make(chan error, 1)
	go func() { served <- srv.ListenAndServe() }()
	log.Info("serving", "url", "http://"+listen, "redis", addr)

	select {
	case err := <-served:
		return fmt.Errorf("node %s: %w", name, err)
	case <-ctx.Done():
	}
	done, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	hub.Shutdown(done) // ends the streams, which srv.Shutdown would wait for
	if err := srv.Shutdown(done); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("node %s: %w", name, err)
	}
	<-served
	log.Info("stopped")
	return nil
}
