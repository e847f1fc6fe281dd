// Command orders is an order service of two nodes on one PostgreSQL: a
// POST /orders handler inserts the order and publishes its event in one
// transaction, so that the event goes out if and only if the order is
// stored, and a Hub on each node serves the events to browsers at
// GET /events?topic=orders. See README.md.
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
	"strconv"
	"syscall"
	"time"

	"github.com/b2ce5911/sse"
	ssepostgres "github.com/b2ce5911/sse/postgres"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

func main() {
	url := flag.String("db", os.Getenv("DATABASE_URL"), "PostgreSQL connection string (default $DATABASE_URL)")
	a := flag.String("a", "localhost:8081", "address of node A")
	b := flag.String("b", "localhost:8082", "address of node B")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := migrate(ctx, *url); err != nil {
		slog.Error("creating the orders table", "err", err)
		os.Exit(1)
	}
	errc := make(chan error, 2)
	for name, listen := range map[string]string{"A": *a, "B": *b} {
		go func() { errc <- serve(ctx, name, listen, *url) }()
	}
	failed := false
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

// serve runs one node at listen until ctx ends.
func serve(ctx context.Context, name, listen, url string) error {
	log := slog.With("node", name)
	n, err := newNode(ctx, url, log)
	if err != nil {
		return fmt.Errorf("node %s: %w", name, err)
	}
	defer n.Close()
	srv := &http.Server{Addr: listen, Handler: n}
	served := make(chan error, 1)
	go func() { served <- srv.ListenAndServe() }()
	log.Info("serving", "url", "http://"+listen)
	select {
	case err := <-served:
		return fmt.Errorf("node %s: %w", name, err)
	case <-ctx.Done():
	}
	done, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	n.hub.Shutdown(done) // ends the streams, which srv.Shutdown would wait for
	if err := srv.Shutdown(done); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("node %s: %w", name, err)
	}
	<-served
	return nil
}

// node is one server: its pool, Broker and Hub, and the HTTP routes.
type node struct {
	pool   *pgxpool.Pool
	broker *ssepostgres.Broker
	hub    *sse.Hub
	mux    *http.ServeMux
}

// migrate creates the application's table, once, before the nodes start:
// CREATE ... IF NOT EXISTS from two nodes at once can fail. (The Broker
// creates its own tables under a lock.)
func migrate(ctx context.Context, url string) error {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS orders (
		id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
		item text NOT NULL,
		quantity int NOT NULL CHECK (quantity > 0))`)
	return err
}

func newNode(ctx context.Context, url string, log *slog.Logger) (*node, error) {
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		return nil, err
	}
	broker, err := ssepostgres.New(ctx, pool, ssepostgres.Options{Logger: log})
	if err != nil {
		pool.Close()
		return nil, err
	}
	n := &node{pool: pool, broker: broker, hub: &sse.Hub{Broker: broker, Logger: log, Recent: 20}, mux: http.NewServeMux()}
	n.mux.Handle("GET /events", n.hub) // ?topic=orders
	n.mux.HandleFunc("POST /orders", n.order)
	n.mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		io.WriteString(w, page)
	})
	return n, nil
}

func (n *node) ServeHTTP(w http.ResponseWriter, r *http.Request) { n.mux.ServeHTTP(w, r) }

// order stores an order (form values item and quantity) and its event in
// one transaction: a quantity the table refuses rolls both back.
func (n *node) order(w http.ResponseWriter, r *http.Request) {
	item := r.FormValue("item")
	qty, err := strconv.Atoi(r.FormValue("quantity"))
	if item == "" || err != nil {
		http.Error(w, "POST /orders with item and quantity", http.StatusBadRequest)
		return
	}
	var id int64
	var eventID string
	err = pgx.BeginFunc(r.Context(), n.pool, func(tx pgx.Tx) error {
		if err := tx.QueryRow(r.Context(), "INSERT INTO orders (item, quantity) VALUES ($1, $2) RETURNING id", item, qty).Scan(&id); err != nil {
			return err
		}
		var err error
		eventID, err = n.broker.PublishTx(r.Context(), tx, "orders", sse.Message{
			Type: "order",
			Data: fmt.Appendf(nil, `{"id":%d,"item":%q,"quantity":%d}`, id, item, qty),
		})
		return err
	})
	if err != nil {
		http.Error(w, err.Error(), http.StatusUnprocessableEntity)
		return
	}
	fmt.Fprintf(w, "order %d, event %s\n", id, eventID)
}

// page is what a browser gets at /: a form that places orders, and the
// orders of every node: the 20 newest, then each as it is stored.
const page = `<!doctype html>
<meta charset="utf-8">
<title>orders</title>
<form method="post" action="/orders" target="result">
  <input name="item" value="tea"> <input name="quantity" type="number" value="1"> <button>order</button>
</form>
<iframe name="result" height="40"></iframe>
<ul id="orders"></ul>
<script>
const es = new EventSource("/events?topic=orders");
es.addEventListener("order", e => {
  const li = document.createElement("li");
  li.textContent = e.lastEventId + " " + e.data;
  document.getElementById("orders").append(li);
});
</script>
`

// Close stops the Hub and the Broker, then closes the pool.
func (n *node) Close() {
	n.hub.Close()
	n.broker.Close()
	n.pool.Close()
}
