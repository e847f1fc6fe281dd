package ssepostgres

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/b2ce5911/sse"
	"github.com/jackc/pgx/v5"
)

type feed struct {
	ctx     context.Context
	deliver func(sse.Entry)
}

// readBatch is how many rows one read query returns at most.
const readBatch = 1000

// Retry delays after a database error, and of a read whose rows an
// older transaction holds back.
const (
	minBackoff = 5 * time.Millisecond
	maxBackoff = 2 * time.Second
)

// Subscribe implements [sse.Broker]. It waits for the transactions running
// when it was called to end (up to a second), brings the node's reader up
// to date, and returns the topic's position as of the reader's cursor:
// its newest row there, or the floor pruning left, or "<epoch>-0-0". The
// reader delivers every row after the cursor, in position order, until
// ctx ends or the Broker closes; nothing published after ctx ended is
// delivered.
func (b *Broker) Subscribe(ctx context.Context, topic string, deliver func(sse.Entry)) (string, error) {
	if b.closed.Load() {
		return "", ErrClosed
	}
	// Queries end with ctx or Close, whichever first.
	qctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(b.ctx, cancel)()
	// Without the lock: a long transaction delays this call only.
	if err := b.settle(qctx); err != nil {
		return "", fmt.Errorf("ssepostgres: subscribe to %q: %w", topic, err)
	}
	// The reader is held off meanwhile, so the cursor stays where the
	// position was read.
	b.rmu.Lock()
	defer b.rmu.Unlock()
	if b.closed.Load() {
		return "", ErrClosed
	}
	if err := b.catchUp(qctx); err != nil {
		return "", fmt.Errorf("ssepostgres: subscribe to %q: %w", topic, err)
	}
	if afterCatchUp != nil {
		afterCatchUp()
	}
	head := position{}
	var xid string
	var seq int64
	err := b.pool.QueryRow(qctx, b.sql.head, append(b.cursor.args(), topic)...).Scan(&xid, &seq)
	switch {
	case err == nil:
		head.xid, err = parseUint(xid)
		head.seq = uint64(seq)
	case errors.Is(err, pgx.ErrNoRows):
		err = nil
	}
	if err != nil {
		return "", fmt.Errorf("ssepostgres: subscribe to %q: %w", topic, err)
	}
	if _, fed := b.topics[topic]; fed && head.compare(b.cursor) > 0 {
		// Another node pruned past the cursor since catchUp: the floor
		// is the head, and the topic's feeds lost what lay between.
		b.lost(topic, head)
	}
	f := &feed{ctx: ctx, deliver: deliver}
	feeds := b.topics[topic]
	if feeds == nil {
		feeds = make(map[*feed]struct{})
		b.topics[topic] = feeds
	}
	feeds[f] = struct{}{}
	if head.compare(b.since[topic]) > 0 {
		b.since[topic] = head
	}
	// The feed's rows may be held back already, and their release sends
	// no notification: the reader looks now, and again soon if so.
	b.poke()
	context.AfterFunc(ctx, func() {
		b.rmu.Lock()
		defer b.rmu.Unlock()
		delete(feeds, f)
		if m, ok := b.topics[topic]; ok && len(m) == 0 {
			delete(b.topics, topic) // the reader asks for it no more
			delete(b.since, topic)
		}
	})
	return b.id(head), nil
}

// afterCatchUp, set by tests only, runs in Subscribe between catchUp and
// the head query.
var afterCatchUp func()

// catchUp reads until the cursor is at the newest row every reader may
// read. b.rmu is held.
func (b *Broker) catchUp(ctx context.Context) error {
	for {
		more, _, err := b.readLocked(ctx)
		if err != nil || !more {
			return err
		}
	}
}

// listen holds the listening connection: every notification wakes the
// reader. When the connection drops it reconnects with backoff; the
// reader polls meanwhile.
func (b *Broker) listen() {
	defer b.wg.Done()
	backoff := time.Duration(0)
	for b.ctx.Err() == nil {
		err := b.listenOnce()
		if b.ctx.Err() != nil {
			return
		}
		b.reconnected.Store(true)
		backoff = min(max(2*backoff, minBackoff*10), maxBackoff)
		b.logger().Warn("ssepostgres: listening connection lost; reconnecting", "in", backoff, "err", err)
		if !b.sleep(backoff) {
			return
		}
	}
}

// listenOnce connects, LISTENs and waits for notifications until the
// connection fails.
func (b *Broker) listenOnce() error {
	conn, err := pgx.ConnectConfig(b.ctx, b.pool.Config().ConnConfig.Copy())
	if err != nil {
		return err
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		conn.Close(ctx)
	}()
	if _, err := conn.Exec(b.ctx, b.sql.listen); err != nil {
		return err
	}
	b.poke() // what was committed while no one listened
	for {
		// A bounded wait, then a ping, so that a connection that died
		// silently is found.
		ctx, cancel := context.WithTimeout(b.ctx, 10*b.pollInterval())
		_, err := conn.WaitForNotification(ctx)
		cancel()
		switch {
		case err == nil:
			b.poke()
		case b.ctx.Err() != nil:
			return nil
		case conn.IsClosed() || !errors.Is(err, context.DeadlineExceeded):
			return err
		default:
			ctx, cancel := context.WithTimeout(b.ctx, 10*b.pollInterval())
			err := conn.Ping(ctx)
			cancel()
			if err != nil {
				return err
			}
		}
	}
}

// poke wakes the reader.
func (b *Broker) poke() {
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

// sleep waits for d, or returns false when the Broker closes.
func (b *Broker) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-b.ctx.Done():
		return false
	}
}

// read is the node's reader: on every wake-up and every PollInterval, it
// reads the new rows of the node's topics and dispatches them.
func (b *Broker) read() {
	defer b.wg.Done()
	errBackoff, heldBackoff := time.Duration(0), time.Duration(0)
	checked, seen := time.Now(), b.cursorNow()
	for {
		more, held, err := b.readOnce()
		if b.ctx.Err() != nil {
			return
		}
		// A cursor that stays put for a while, or a listening
		// connection that was lost, may mean a database re-initialised
		// or restored under the node.
		if c := b.cursorNow(); c != seen {
			checked, seen = time.Now(), c
		} else if b.reconnected.Swap(false) || time.Since(checked) >= 10*b.pollInterval() {
			checked = time.Now()
			if err := b.recheck(b.ctx); err != nil && b.ctx.Err() == nil {
				b.logger().Warn("ssepostgres: checking the epoch failed; trying again later", "err", err)
			}
			seen = b.cursorNow()
		}
		wait := b.pollInterval()
		switch {
		case err != nil:
			errBackoff = min(max(2*errBackoff, minBackoff), maxBackoff, wait)
			wait = errBackoff
			b.logger().Warn("ssepostgres: reading new events failed; retrying", "in", wait, "err", err)
		case more:
			errBackoff, heldBackoff = 0, 0
			continue
		case held:
			// Committed rows wait for an older transaction, whose end
			// sends no notification: look again soon.
			errBackoff = 0
			heldBackoff = min(max(2*heldBackoff, minBackoff), wait)
			wait = heldBackoff
		default:
			errBackoff, heldBackoff = 0, 0
		}
		t := time.NewTimer(wait)
		select {
		case <-b.ctx.Done():
			t.Stop()
			return
		case <-b.wake:
		case <-t.C:
		}
		t.Stop()
	}
}

// cursorNow is the reader's cursor.
func (b *Broker) cursorNow() position {
	b.rmu.Lock()
	defer b.rmu.Unlock()
	return b.cursor
}

// readOnce reads one batch after the cursor. more: the batch was full;
// held: rows are committed above the snapshot's xmin.
func (b *Broker) readOnce() (more, held bool, err error) {
	b.rmu.Lock()
	defer b.rmu.Unlock()
	return b.readLocked(b.ctx)
}

// readLocked is readOnce with b.rmu held.
func (b *Broker) readLocked(ctx context.Context) (more, held bool, err error) {
	if len(b.topics) == 0 {
		// Nothing to deliver, but the cursor moves on, so that a new
		// feed starts from now.
		p, err := b.start(ctx)
		if err == nil && p.compare(b.cursor) > 0 {
			b.cursor = p
		}
		return false, false, err
	}
	topics := slices.Collect(maps.Keys(b.topics))
	rows, err := b.pool.Query(ctx, b.sql.read, append(b.cursor.args(), topics, readBatch)...)
	if err != nil {
		return false, false, err
	}
	defer rows.Close()
	n := 0
	var xmin uint64
	var tip position
	for rows.Next() {
		var kind int32
		var xm string
		e, p, err := b.scanEntry(rows, &kind, &xm)
		if err != nil {
			return false, false, err
		}
		xmin, _ = parseUint(xm)
		switch kind {
		case 0:
			// A floor at or below where the topic's feeds started took
			// nothing from them.
			if _, fed := b.topics[e.Topic]; fed && p.compare(b.since[e.Topic]) > 0 {
				b.lost(e.Topic, p)
			}
			continue
		case 1:
			tip = p
			continue
		}
		n++
		if p.xid >= xmin {
			held = true
			break
		}
		b.dispatch(e)
		b.cursor = p
	}
	if err := rows.Err(); err != nil {
		return false, false, err
	}
	more = n == readBatch && !held
	if !more && tip.compare(b.cursor) > 0 {
		// Every row of the node's topics below xmin has been dispatched
		// (held: the rows are in order, and the first at or above xmin
		// stopped the read), and every later row will have an xid at or
		// above it. So the cursor moves on to the newest row of any
		// topic there, in the same snapshot: a feed of a new topic then
		// starts from now, not from the last row of the node's other
		// topics. It moves to rows only, never to the snapshot's xmin:
		// after a crash, PostgreSQL may hand out again the xid of a
		// transaction that aborted and whose WAL was not flushed, but
		// never one below a commit it acknowledged.
		b.cursor = tip
	}
	return more, held, nil
}

// dispatch hands e to the feeds of its topic, in the reader's goroutine.
func (b *Broker) dispatch(e sse.Entry) {
	for f := range b.topics[e.Topic] {
		if f.ctx.Err() == nil {
			f.deliver(e)
		}
	}
}

// lost tells the feeds of topic that pruning removed its rows up to floor
// before this node read them, with an entry whose Gap is set: that is
// their last, and the Hub then cuts their subscribers off so that each
// resumes by replay, or gets the reset event. b.rmu is held.
func (b *Broker) lost(topic string, floor position) {
	b.logger().Error("ssepostgres: events were pruned before this node read them: ending the topic's feeds",
		"topic", topic, "pruned", b.id(floor), "cursor", b.id(b.cursor))
	b.end(topic, sse.GapExpired, fmt.Errorf("ssepostgres: topic %q: events up to %s were pruned before this node read them", topic, b.id(floor)))
}

// end hands the feeds of topic their last entry, whose Gap has reason
// and err, and forgets them. b.rmu is held.
func (b *Broker) end(topic string, reason sse.GapReason, err error) {
	gap := sse.Entry{Topic: topic, Gap: &sse.HistoryGapError{Reason: reason, Err: err}}
	for f := range b.topics[topic] {
		if f.ctx.Err() == nil {
			f.deliver(gap)
		}
	}
	delete(b.topics, topic)
	delete(b.since, topic)
}
