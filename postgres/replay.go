package ssepostgres

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/b2ce5911/sse"
	"github.com/jackc/pgx/v5"
)

// position is where a row stands in the one order of all topics.
type position struct{ xid, seq uint64 }

func (p position) compare(q position) int {
	if c := cmp.Compare(p.xid, q.xid); c != 0 {
		return c
	}
	return cmp.Compare(p.seq, q.seq)
}

// cursorArgs are p as the queries' $1 and $2.
func (p position) args() []any {
	return []any{strconv.FormatUint(p.xid, 10), int64(min(p.seq, math.MaxInt64))}
}

// id is the event id of p: "<epoch>-<xid>-<seq>".
func (b *Broker) id(p position) string {
	return *b.epoch.Load() + "-" + strconv.FormatUint(p.xid, 10) + "-" + strconv.FormatUint(p.seq, 10)
}

var (
	errMalformed = errors.New("ssepostgres: the last event ID is not one of this broker's")
	errEpoch     = errors.New("ssepostgres: the last event ID is from another epoch (the table was recreated)")
	errFuture    = errors.New("ssepostgres: the last event ID is from the future")
	errExpired   = errors.New("ssepostgres: events after the last event ID were pruned")
)

// parse reads an id of this Broker, in the canonical form it writes.
func (b *Broker) parse(id string) (position, error) {
	epoch, rest, ok := strings.Cut(id, "-")
	xid, seq, ok2 := strings.Cut(rest, "-")
	if !ok || !ok2 {
		return position{}, errMalformed
	}
	var p position
	var err1, err2 error
	p.xid, err1 = parseUint(xid)
	p.seq, err2 = parseUint(seq)
	if err1 != nil || err2 != nil {
		return position{}, errMalformed
	}
	if epoch != *b.epoch.Load() {
		return position{}, errEpoch
	}
	return p, nil
}

func parseUint(s string) (uint64, error) {
	n, err := strconv.ParseUint(s, 10, 64)
	if err == nil && strconv.FormatUint(n, 10) != s {
		err = errMalformed
	}
	return n, err
}

// headsOf reads, in tx, the position of each topic (the newest of its
// newest row every reader may read and its floor) and its floor, and the
// snapshot's xmax.
func (b *Broker) headsOf(ctx context.Context, tx pgx.Tx, topics []string) (heads, floors []position, xmax uint64, err error) {
	rows, err := tx.Query(ctx, b.sql.heads, topics)
	if err != nil {
		return nil, nil, 0, err
	}
	defer rows.Close()
	for rows.Next() {
		var rx, fx, mx string
		var h, f position
		var hs, fs int64
		if err := rows.Scan(&rx, &hs, &fx, &fs, &mx); err != nil {
			return nil, nil, 0, err
		}
		if rx != "" {
			h.xid, _ = parseUint(rx)
			h.seq = uint64(hs)
		}
		if fx != "" {
			f.xid, _ = parseUint(fx)
			f.seq = uint64(fs)
		}
		if h.compare(f) < 0 {
			h = f // MaxAge pruned a row of a later transaction that began earlier
		}
		heads, floors = append(heads, h), append(floors, f)
		xmax, _ = parseUint(mx)
	}
	return heads, floors, xmax, rows.Err()
}

// heldWait bounds how long Subscribe, Replay, Recent and Prune wait for
// the transactions that were running when they were called.
const heldWait = time.Second

// settle waits until every transaction that had an xid when it was called
// has ended (at most heldWait), so that what was committed before the
// call is below the xmin of later snapshots, where readers read. A
// transaction that runs longer only makes the answer older: what it held
// back comes later, from the feeds.
func (b *Broker) settle(ctx context.Context) error {
	var xmin, xmax string
	if err := b.pool.QueryRow(ctx, b.sql.settle).Scan(&xmin, &xmax); err != nil {
		return err
	}
	end, _ := parseUint(xmax)
	backoff := time.Duration(0)
	for deadline := time.Now().Add(heldWait); ; {
		if x, _ := parseUint(xmin); x >= end || time.Now().After(deadline) {
			return nil
		}
		backoff = min(max(2*backoff, 100*time.Microsecond), minBackoff)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		if err := b.pool.QueryRow(ctx, b.sql.settle).Scan(&xmin, &xmax); err != nil {
			return err
		}
	}
}

// snapshot runs f in a read-only transaction with one snapshot for all
// its statements, so that rows, heads and floors agree.
func (b *Broker) snapshot(ctx context.Context, f func(pgx.Tx) error) error {
	if err := b.settle(ctx); err != nil {
		return err
	}
	tx, err := b.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx)
	if err := f(tx); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// Replay implements [sse.Broker]: the rows of topics after the position of
// after that every reader may read, in position order, once the
// transactions running when it was called have ended (it waits up to a
// second for them). An id that is
// malformed, of another epoch or from the future gives an
// [*sse.HistoryGapError] with [sse.GapUnknown]; one older than what
// pruning removed from one of the topics, [sse.GapExpired].
func (b *Broker) Replay(ctx context.Context, topics []string, after string) ([]sse.Entry, []string, error) {
	p, err := b.parse(after)
	if err != nil {
		return nil, nil, &sse.HistoryGapError{Reason: sse.GapUnknown, Err: err}
	}
	var entries []sse.Entry
	var heads []position
	err = b.snapshot(ctx, func(tx pgx.Tx) error {
		var floors []position
		var xmax uint64
		var err error
		if heads, floors, xmax, err = b.headsOf(ctx, tx, topics); err != nil {
			return err
		}
		if p.xid >= xmax && p != (position{}) {
			return &sse.HistoryGapError{Reason: sse.GapUnknown, Err: errFuture}
		}
		for i, f := range floors {
			if p.compare(f) < 0 {
				return &sse.HistoryGapError{Reason: sse.GapExpired, Err: fmt.Errorf("topic %q: %w", topics[i], errExpired)}
			}
		}
		rows, err := tx.Query(ctx, b.sql.replay, append(p.args(), topics)...)
		if err != nil {
			return err
		}
		entries, err = b.entries(rows)
		return err
	})
	if err != nil {
		if errors.Is(err, sse.ErrHistoryGap) {
			return nil, nil, err
		}
		return nil, nil, fmt.Errorf("ssepostgres: replay of %q: %w", topics, err)
	}
	return entries, b.ids(heads), nil
}

// Recent implements [sse.RecentBroker]: up to n of the newest rows of each
// topic that every reader may read, in position order.
func (b *Broker) Recent(ctx context.Context, topics []string, n int) ([]sse.Entry, []string, error) {
	var entries []sse.Entry
	var heads []position
	err := b.snapshot(ctx, func(tx pgx.Tx) error {
		var err error
		if heads, _, _, err = b.headsOf(ctx, tx, topics); err != nil || n <= 0 {
			return err
		}
		rows, err := tx.Query(ctx, b.sql.recent, topics, n)
		if err != nil {
			return err
		}
		entries, err = b.entries(rows)
		return err
	})
	if err != nil {
		return nil, nil, fmt.Errorf("ssepostgres: recent events of %q: %w", topics, err)
	}
	return entries, b.ids(heads), nil
}

func (b *Broker) ids(ps []position) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = b.id(p)
	}
	return out
}

// entries reads rows of (xid, seq, topic, type, data, retry, comment).
func (b *Broker) entries(rows pgx.Rows) ([]sse.Entry, error) {
	defer rows.Close()
	var out []sse.Entry
	for rows.Next() {
		e, _, err := b.scanEntry(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

func (b *Broker) scanEntry(rows pgx.Rows, prefix ...any) (sse.Entry, position, error) {
	var xid string
	var seq, retry int64
	var e sse.Entry
	dest := append(prefix, &xid, &seq, &e.Topic, &e.Type, &e.Data, &retry, &e.Comment)
	if err := rows.Scan(dest...); err != nil {
		return e, position{}, err
	}
	x, err := parseUint(xid)
	if err != nil {
		return e, position{}, err
	}
	p := position{x, uint64(seq)}
	e.ID = b.id(p)
	if retry > 0 {
		e.Retry = time.Duration(retry) * time.Millisecond
	}
	return e, p, nil
}

// Newest implements [sse.Broker]: positions order themselves. An id that
// is not one of this Broker's counts as the oldest.
func (b *Broker) Newest(ctx context.Context, topics, ids []string) (string, error) {
	var newest position
	for _, id := range ids {
		if p, err := b.parse(id); err == nil && p.compare(newest) > 0 {
			newest = p
		}
	}
	return b.id(newest), nil
}
