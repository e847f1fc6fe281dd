// Package ssepostgres is an [sse.Broker] on PostgreSQL, so that several
// servers that share a database share one history of events, and so that
// an event can be published in the same transaction as the write it
// announces: it goes out if and only if the write commits.
//
// # Ordering
//
// Every event is a row of one table. Its position is (xid, seq): the id of
// the transaction that wrote it (pg_current_xact_id(), an xid8) and a
// sequence number. Both are known at insert, so the id a publish returns is
// final, but transactions do not commit in the order of their ids: one
// holding xid 10 may commit after one holding xid 11 is visible. A reader
// that moved its cursor past 11 would never see 10. So the Broker reads
// only below the oldest transaction still in flight in the cluster, the
// xmin of the current snapshot (pg_snapshot_xmin(pg_current_snapshot())):
// every transaction below it has ended, and no row can appear behind a
// cursor any more. Feeds, Replay and Recent all read that way.
//
// The cost is latency, not throughput: publishers stay concurrent (nothing
// is locked between insert and commit), but delivery waits for the oldest
// transaction of the whole cluster that has an xid, whether or not it
// publishes. A transaction that writes and stays open for a minute holds
// back every event committed after it started for that minute, and makes
// Subscribe, Replay and Recent wait a second (they first wait, up to
// that, for the transactions running when they were called, so that what
// was committed before them is there). Keep writing transactions short.
// The alternative, an advisory lock from publish to commit, would deliver
// at once but serialise every publishing transaction of the application:
// with 8 publishers, it cut throughput by 2.8 (BENCHMARKS.md). It needs
// PostgreSQL 13 or later (xid8).
//
// # Live delivery
//
// Each Broker holds one connection of its own (not from the pool) that
// LISTENs on a channel; a publish sends an empty NOTIFY in its transaction,
// so the wake-up arrives at commit and carries nothing (a NOTIFY payload is
// limited to 8000 bytes, and the events are read from the table). On a
// wake-up, or every PollInterval, one query reads the new rows of all the
// topics the node serves after the node's cursor, and hands them to the
// feeds in order. Polling covers a lost notification, a listening
// connection that dropped (it reconnects with backoff), and rows held back
// by an older transaction. The number of connections is the listening one
// plus what the pool lends, whatever the number of topics and subscribers.
//
// Since every feed of a node is fed in one order, a client may follow
// several topics in one stream: its one Last-Event-ID places it in all of
// them.
//
// # Durability
//
// An event is as durable as the transaction that wrote it. With
// synchronous_commit off, a crash of the server can lose transactions it
// had acknowledged, and their events, which a feed may already have
// delivered; later events may then reuse their ids. Keep it on (the
// default) for the transactions that publish.
//
// # Retention
//
// MaxLen rows per topic and MaxAge are kept; a goroutine of each Broker
// prunes every PruneInterval (one node at a time, under an advisory lock),
// and records per topic the newest position it removed (the floor), so
// that Replay tells "pruned" ([sse.GapExpired]) from "nothing there". An id
// of another epoch (a random value stored with the schema, new when the
// database is recreated), malformed or from the future gives
// [sse.GapUnknown]. A node whose reader finds a floor above its cursor
// (it was cut off from the database for longer than MaxAge) ends the
// topic's feeds with an [sse.Entry] whose Gap is set, so that the Hub cuts
// their subscribers off and they resume by replay, or get the reset event.
// A node whose cursor has not moved for 10 PollIntervals, or whose
// listening connection was lost, reads the epoch again: a database
// re-initialised or restored under it ends every feed with a gap of
// reason [sse.GapUnknown], rather than leaving them stalled behind a
// cursor above every new transaction id.
//
// # Concurrency
//
// A Broker is safe for concurrent use. Close stops its goroutines and
// waits for them; it does not close the pool.
package ssepostgres

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/b2ce5911/sse"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Defaults of [Options].
const (
	DefaultSchema        = "public"
	DefaultTable         = "sse_events"
	DefaultMaxLen        = 10000
	DefaultMaxAge        = 24 * time.Hour
	DefaultPollInterval  = time.Second
	DefaultPruneInterval = time.Minute
)

// Errors of [Broker].
var (
	// ErrClosed is returned by Publish and Subscribe once the Broker is
	// closed.
	ErrClosed = errors.New("ssepostgres: broker closed")
	// ErrOwnID is returned for a Message whose ID is set: ids are
	// positions in the table, which the Broker assigns.
	ErrOwnID = errors.New("ssepostgres: a message ID cannot be set: the broker assigns the event ids")
	// ErrLongName is returned by New for a schema name longer than 63
	// bytes or a table name longer than 49: PostgreSQL would cut them, or
	// the names the Broker derives from them.
	ErrLongName = errors.New("ssepostgres: schema or table name too long")
)

// Options configure a [Broker]. The zero value works: every field has a
// documented default.
type Options struct {
	// Schema and Table name the events table; "" means DefaultSchema and
	// DefaultTable. The Broker also uses Table+"_floor" and Table+"_meta"
	// in Schema, and indexes named after Table. Schema may have up to 63
	// bytes, Table up to 49 (see [ErrLongName]). Nodes that share events
	// use the same names.
	Schema, Table string
	// MaxLen is how many events are kept per topic; 0 means
	// DefaultMaxLen, negative keeps them all.
	MaxLen int
	// MaxAge is how long events are kept; 0 means DefaultMaxAge, negative
	// keeps them for as long as MaxLen allows.
	MaxAge time.Duration
	// PollInterval bounds how long a feed waits for new rows without a
	// notification; 0 means DefaultPollInterval.
	PollInterval time.Duration
	// PruneInterval is how often the Broker prunes; 0 means
	// DefaultPruneInterval, negative never (prune yourself with Prune).
	PruneInterval time.Duration
	// Logger receives the errors the Broker retries; nil means
	// slog.Default().
	Logger *slog.Logger
}

// Broker implements [sse.Broker] on PostgreSQL. Make one per [sse.Hub]
// with [New]; it has no exported fields.
type Broker struct {
	pool   *pgxpool.Pool
	opts   Options
	sql    queries
	epoch  atomic.Pointer[string] // new when the cluster is re-initialised or restored under the node
	ctx    context.Context        // ends at Close
	cancel context.CancelFunc
	wake   chan struct{} // a notification came, or a feed wants a read
	wg     sync.WaitGroup
	closed atomic.Bool
	// reconnected: the listening connection was lost since the reader
	// last checked the epoch.
	reconnected atomic.Bool

	rmu    sync.Mutex // held by a read and its dispatch, and by Subscribe
	cursor position   // every row at or before it has been dispatched
	topics map[string]map[*feed]struct{}
	since  map[string]position // per topic, the newest position Subscribe returned
}

var _ sse.RecentBroker = (*Broker)(nil)

// New makes a Broker on pool: it creates the schema, the tables and their
// indexes if they are missing (see README.md for the SQL), reads the
// epoch, and starts listening. Close it before the pool.
func New(ctx context.Context, pool *pgxpool.Pool, opts Options) (*Broker, error) {
	b := &Broker{pool: pool, opts: opts, wake: make(chan struct{}, 1),
		topics: make(map[string]map[*feed]struct{}), since: make(map[string]position)}
	if b.opts.Schema == "" {
		b.opts.Schema = DefaultSchema
	}
	if b.opts.Table == "" {
		b.opts.Table = DefaultTable
	}
	if err := checkNames(b.opts.Schema, b.opts.Table); err != nil {
		return nil, err
	}
	b.sql = newQueries(b.opts.Schema, b.opts.Table)
	if err := b.setup(ctx); err != nil {
		return nil, err
	}
	var err error
	if b.cursor, err = b.start(ctx); err != nil {
		return nil, fmt.Errorf("ssepostgres: reading the newest position: %w", err)
	}
	b.ctx, b.cancel = context.WithCancel(context.Background())
	b.wg.Add(2)
	go b.listen()
	go b.read()
	if b.pruneInterval() > 0 {
		b.wg.Add(1)
		go b.pruneLoop()
	}
	return b, nil
}

func (b *Broker) logger() *slog.Logger {
	if b.opts.Logger != nil {
		return b.opts.Logger
	}
	return slog.Default()
}

func (b *Broker) pollInterval() time.Duration {
	if b.opts.PollInterval <= 0 {
		return DefaultPollInterval
	}
	return b.opts.PollInterval
}

func (b *Broker) pruneInterval() time.Duration {
	if b.opts.PruneInterval == 0 {
		return DefaultPruneInterval
	}
	return b.opts.PruneInterval
}

// Publish implements [sse.Broker]: it inserts m in a transaction of its
// own and returns its id. Type, Data, Retry and Comment are stored; a set
// m.ID gives [ErrOwnID], a Type or Comment that the Hub could not send an
// error wrapping [sse.ErrInvalidField]. Another error means the event may
// or may not have been stored.
func (b *Broker) Publish(ctx context.Context, topic string, m sse.Message) (string, error) {
	return b.publish(topic, m, func(sql string, args ...any) rowScanner { return b.pool.QueryRow(ctx, sql, args...) })
}

// PublishTx publishes m on topic in tx, the caller's transaction: the event
// is stored and delivered if and only if tx commits, and only after it
// has. The id it returns is the event's final id. Publish as late as the
// transaction allows: feeds of every node wait for it from its first write
// until it ends (see the package documentation).
func (b *Broker) PublishTx(ctx context.Context, tx pgx.Tx, topic string, m sse.Message) (string, error) {
	return b.publish(topic, m, func(sql string, args ...any) rowScanner { return tx.QueryRow(ctx, sql, args...) })
}

// PublishSQLTx is PublishTx for a transaction of database/sql, with a
// PostgreSQL driver that takes $1 placeholders and []byte as bytea (pgx's
// stdlib, lib/pq).
func (b *Broker) PublishSQLTx(ctx context.Context, tx *sql.Tx, topic string, m sse.Message) (string, error) {
	return b.publish(topic, m, func(sql string, args ...any) rowScanner { return tx.QueryRowContext(ctx, sql, args...) })
}

type rowScanner interface{ Scan(dest ...any) error }

// publish inserts m with query, which runs a statement where the caller
// wants it.
func (b *Broker) publish(topic string, m sse.Message, query func(sql string, args ...any) rowScanner) (string, error) {
	if m.ID != "" {
		return "", ErrOwnID
	}
	// The Hub's rules for the single-line fields, without encoding Data:
	// a Type with a line break would be stored, then refused by every
	// node's Hub and by Replay.
	var scratch [64]byte
	if _, err := (&sse.Message{Type: m.Type, Comment: m.Comment}).AppendTo(scratch[:0]); err != nil {
		return "", fmt.Errorf("ssepostgres: publish on %q: %w", topic, err)
	}
	if b.closed.Load() {
		return "", ErrClosed
	}
	data := m.Data
	if data == nil {
		data = []byte{} // the column is NOT NULL
	}
	retry := int64((m.Retry + time.Millisecond - 1) / time.Millisecond)
	var xid string
	var p position
	err := query(b.sql.insert, topic, m.Type, data, retry, m.Comment, b.sql.channel).Scan(&xid, &p.seq)
	if err == nil {
		p.xid, err = parseUint(xid)
	}
	if err != nil {
		return "", fmt.Errorf("ssepostgres: publish on %q: %w", topic, err)
	}
	return b.id(p), nil
}

// Close implements [sse.Broker]: it stops the listening connection, the
// reader and the pruner, and waits for them; later Publish and Subscribe
// calls fail with [ErrClosed]. A server that stopped answering delays it
// by no more than the time pgx takes to give up a cancelled query.
func (b *Broker) Close() error {
	b.closed.Store(true)
	b.cancel()
	b.wg.Wait()
	return nil
}
