package ssepostgres

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/b2ce5911/sse"
	"github.com/jackc/pgx/v5"
)

// Schema is the SQL that New runs to create what the Broker needs, for
// schema and table: the events table, the floor of what pruning removed
// per topic, and the epoch. It only creates what is missing. Run it in
// your migrations if the Broker's role may not create tables; README.md
// shows it for the defaults.
func Schema(schema, table string) string {
	return newQueries(schema, table).schema
}

// queries holds the Broker's SQL, with its table names quoted.
type queries struct {
	lock             string // advisory lock key of the table, as text
	channel          string // of LISTEN/NOTIFY
	listen           string
	schema           string
	epoch            string
	restored, forget string
	recheck          string
	insert           string
	start            string
	settle           string
	read             string
	head             string
	heads            string
	replay           string
	recent           string
	pruneN           string
	pruneT           string
}

// maxName is the longest name PostgreSQL keeps (NAMEDATALEN-1): it cuts
// longer ones, so that two derived names could become one.
const maxName = 63

// longestSuffix is the longest suffix the Broker adds to the table name.
const longestSuffix = "_floor_pos_idx"

// checkNames refuses names that PostgreSQL would cut.
func checkNames(schema, table string) error {
	if len(schema) > maxName {
		return fmt.Errorf("%w: schema %q is %d bytes, more than %d", ErrLongName, schema, len(schema), maxName)
	}
	if len(table)+len(longestSuffix) > maxName {
		return fmt.Errorf("%w: table %q is %d bytes, more than %d", ErrLongName, table, len(table), maxName-len(longestSuffix))
	}
	return nil
}

func newQueries(schema, table string) queries {
	events := pgx.Identifier{schema, table}.Sanitize()
	floor := pgx.Identifier{schema, table + "_floor"}.Sanitize()
	meta := pgx.Identifier{schema, table + "_meta"}.Sanitize()
	// Longer keys first: at one position, the Replacer takes the first
	// that matches.
	r := strings.NewReplacer(
		"FLOOR_IDX", pgx.Identifier{table + "_floor_pos_idx"}.Sanitize(),
		"TOPIC_IDX", pgx.Identifier{table + "_topic_idx"}.Sanitize(),
		"CREATED_IDX", pgx.Identifier{table + "_created_idx"}.Sanitize(),
		"EVENTS", events, "FLOOR", floor, "META", meta,
		"NSP_NAME", pgx.Identifier{schema}.Sanitize(),
		"XMIN", "pg_snapshot_xmin(pg_current_snapshot())",
		"CURSOR", "($1::text::xid8, $2::bigint)")
	// A channel name is cut at 63 bytes by LISTEN and refused by
	// pg_notify: a hash of the names keeps it short.
	sum := sha256.Sum256([]byte(events))
	channel := "sse_" + hex.EncodeToString(sum[:16])
	return queries{
		lock:    schema + "." + table,
		channel: channel,
		listen:  "LISTEN " + pgx.Identifier{channel}.Sanitize(),
		schema: r.Replace(`CREATE SCHEMA IF NOT EXISTS NSP_NAME;
-- One row per event. (xid, seq) is its position: xid is the transaction
-- that wrote it, so readers can wait until every transaction below a
-- position has ended; seq orders the rows of one transaction.
CREATE TABLE IF NOT EXISTS EVENTS (
	xid     xid8        NOT NULL DEFAULT pg_current_xact_id(),
	seq     bigint      NOT NULL GENERATED ALWAYS AS IDENTITY,
	topic   text        NOT NULL,
	type    text        NOT NULL DEFAULT '',
	data    bytea       NOT NULL,
	retry   bigint      NOT NULL DEFAULT 0, -- milliseconds
	comment text        NOT NULL DEFAULT '',
	created timestamptz NOT NULL DEFAULT clock_timestamp(),
	PRIMARY KEY (xid, seq)
);
CREATE INDEX IF NOT EXISTS TOPIC_IDX ON EVENTS (topic, xid, seq);
CREATE INDEX IF NOT EXISTS CREATED_IDX ON EVENTS (created);
-- The newest position pruning removed from each topic.
CREATE TABLE IF NOT EXISTS FLOOR (
	topic text   PRIMARY KEY,
	xid   xid8   NOT NULL,
	seq   bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS FLOOR_IDX ON FLOOR (xid, seq);
-- The epoch starts every id: a recreated table has a new one.
CREATE TABLE IF NOT EXISTS META (
	one   boolean PRIMARY KEY DEFAULT true CHECK (one),
	epoch text    NOT NULL
);
`),
		// A dump restored into another cluster keeps its xids, which
		// the new cluster's may not have reached.
		restored: r.Replace(`SELECT ` + restoredExpr),
		recheck:  r.Replace(`SELECT (SELECT epoch FROM META), ` + restoredExpr),
		forget:   r.Replace(`DELETE FROM EVENTS; DELETE FROM FLOOR; DELETE FROM META`),
		epoch: r.Replace(`WITH new AS (INSERT INTO META (epoch) VALUES ($1) ON CONFLICT DO NOTHING RETURNING epoch)
SELECT epoch FROM new UNION ALL SELECT epoch FROM META`),
		// The NOTIFY, empty, is only a wake-up: sent at commit, and
		// folded into one per transaction.
		insert: r.Replace(`WITH e AS (
	INSERT INTO EVENTS (topic, type, data, retry, comment) VALUES ($1, $2, $3, $4, $5) RETURNING xid, seq
)
SELECT e.xid::text, e.seq FROM e, pg_notify($6, '') n`),
		// Columns cast to text keep their names: ORDER BY names the table's
		// (e.xid), or it would sort text.
		start:  r.Replace(`SELECT e.xid::text, e.seq FROM EVENTS e WHERE e.xid < XMIN ORDER BY e.xid DESC, e.seq DESC LIMIT 1`),
		settle: `SELECT pg_snapshot_xmin(pg_current_snapshot())::text, pg_snapshot_xmax(pg_current_snapshot())::text`,
		// kind 0: a floor past the cursor (pruned before this node read
		// it); kind 1: the newest row below the snapshot's xmin, of any
		// topic; kind 2: the rows after the cursor.
		read: r.Replace(`SELECT x.kind, s.xmin::text, x.xid::text, x.seq, x.topic, x.type, x.data, x.retry, x.comment
FROM (SELECT XMIN AS xmin) s, (
	SELECT 0 AS kind, xid, seq, topic, '' AS type, NULL::bytea AS data, 0::bigint AS retry, '' AS comment
	FROM FLOOR WHERE (xid, seq) > CURSOR AND topic = ANY($3)
	UNION ALL
	(SELECT 1, xid, seq, '', '', NULL, 0, '' FROM EVENTS WHERE xid < XMIN ORDER BY xid DESC, seq DESC LIMIT 1)
	UNION ALL
	(SELECT 2, xid, seq, topic, type, data, retry, comment FROM EVENTS
	WHERE (xid, seq) > CURSOR AND topic = ANY($3) ORDER BY xid, seq LIMIT $4)
) x
ORDER BY x.kind, x.xid, x.seq`),
		// The newest of the topic's newest row at or before the cursor
		// and its floor.
		head: r.Replace(`SELECT x.xid::text, x.seq FROM (
	(SELECT xid, seq FROM EVENTS WHERE topic = $3 AND (xid, seq) <= CURSOR ORDER BY xid DESC, seq DESC LIMIT 1)
	UNION ALL
	SELECT xid, seq FROM FLOOR WHERE topic = $3
) x ORDER BY x.xid DESC, x.seq DESC LIMIT 1`),
		heads: r.Replace(`SELECT coalesce(r.xid::text, ''), coalesce(r.seq, 0), coalesce(f.xid::text, ''), coalesce(f.seq, 0),
	pg_snapshot_xmax(pg_current_snapshot())::text
FROM unnest($1::text[]) WITH ORDINALITY u(topic, i)
LEFT JOIN LATERAL (SELECT xid, seq FROM EVENTS e WHERE e.topic = u.topic AND e.xid < XMIN
	ORDER BY xid DESC, seq DESC LIMIT 1) r ON true
LEFT JOIN FLOOR f ON f.topic = u.topic
ORDER BY u.i`),
		replay: r.Replace(`SELECT e.xid::text, e.seq, e.topic, e.type, e.data, e.retry, e.comment FROM EVENTS e
WHERE e.topic = ANY($3) AND (e.xid, e.seq) > CURSOR AND e.xid < XMIN ORDER BY e.xid, e.seq`),
		recent: r.Replace(`SELECT r.xid::text, r.seq, u.topic, r.type, r.data, r.retry, r.comment
FROM unnest($1::text[]) u(topic) CROSS JOIN LATERAL (
	SELECT * FROM EVENTS e WHERE e.topic = u.topic AND e.xid < XMIN ORDER BY xid DESC, seq DESC LIMIT $2) r
ORDER BY r.xid, r.seq`),
		// Topics are found by a loose index scan; each keeps its newest
		// $1 rows. Only rows every reader may have read go: one that an
		// older transaction still holds back goes at the next prune.
		pruneN: r.Replace(`WITH RECURSIVE topics AS (
	(SELECT topic FROM EVENTS ORDER BY topic LIMIT 1)
	UNION ALL
	SELECT (SELECT e.topic FROM EVENTS e WHERE e.topic > t.topic ORDER BY e.topic LIMIT 1) FROM topics t WHERE t.topic IS NOT NULL
), cut AS (
	SELECT t.topic, c.xid, c.seq FROM topics t CROSS JOIN LATERAL (
		SELECT xid, seq FROM EVENTS e WHERE e.topic = t.topic
		ORDER BY xid DESC, seq DESC OFFSET $1 LIMIT 1) c
), gone AS (
	DELETE FROM EVENTS e USING cut WHERE e.topic = cut.topic AND (e.xid, e.seq) <= (cut.xid, cut.seq) AND e.xid < XMIN
	RETURNING e.topic, e.xid, e.seq
)` + floorUpsert),
		pruneT: r.Replace(`WITH gone AS (
	DELETE FROM EVENTS WHERE created < now() - make_interval(secs => $1) AND xid < XMIN RETURNING topic, xid, seq
)` + floorUpsert),
	}
}

// restoredExpr is true when the table holds xids the server has not
// reached.
const restoredExpr = `coalesce((SELECT max(xid) FROM EVENTS) >= pg_snapshot_xmax(pg_current_snapshot()), false)`

// floorUpsert raises the floors of the topics that lost the rows gone.
const floorUpsert = `
INSERT INTO FLOOR AS f (topic, xid, seq)
SELECT DISTINCT ON (topic) topic, xid, seq FROM gone ORDER BY topic, xid DESC, seq DESC
ON CONFLICT (topic) DO UPDATE SET xid = excluded.xid, seq = excluded.seq
WHERE (f.xid, f.seq) < (excluded.xid, excluded.seq)`

// setup creates what is missing and reads the epoch, under an advisory
// lock so that nodes starting together do not race on CREATE.
func (b *Broker) setup(ctx context.Context) error {
	var e [4]byte
	rand.Read(e[:])
	err := pgx.BeginFunc(ctx, b.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock(hashtext($1))", b.sql.lock); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, b.sql.schema); err != nil {
			return err
		}
		var restored bool
		if err := tx.QueryRow(ctx, b.sql.restored).Scan(&restored); err != nil {
			return err
		}
		if restored {
			// Its positions stand after every new one, so readers would
			// never get past them: the history goes, and a new epoch
			// tells clients that their ids are of no use here.
			b.logger().Warn("ssepostgres: the events table holds transaction ids newer than the server's: restored from another cluster; dropping its history and starting a new epoch")
			if _, err := tx.Exec(ctx, b.sql.forget); err != nil {
				return err
			}
		}
		var epoch string
		if err := tx.QueryRow(ctx, b.sql.epoch, hex.EncodeToString(e[:])).Scan(&epoch); err != nil {
			return err
		}
		b.epoch.Store(&epoch)
		return nil
	})
	if err != nil {
		return fmt.Errorf("ssepostgres: creating the schema: %w", err)
	}
	return nil
}

// recheck reads the epoch again, and whether the history was restored
// from another cluster, as New did. A cluster re-initialised or restored
// under the node leaves the cursor above every new transaction id, so
// that the feeds would stall without a word: on a change, they end with a
// gap of reason [sse.GapUnknown], and the cursor starts again from now.
func (b *Broker) recheck(ctx context.Context) error {
	var epoch *string
	var restored bool
	if err := b.pool.QueryRow(ctx, b.sql.recheck).Scan(&epoch, &restored); err != nil {
		return err
	}
	if epoch != nil && *epoch == *b.epoch.Load() && !restored {
		return nil
	}
	if err := b.setup(ctx); err != nil {
		return err
	}
	b.rmu.Lock()
	defer b.rmu.Unlock()
	b.logger().Error("ssepostgres: the database was re-initialised or restored under this node: ending every feed",
		"epoch", *b.epoch.Load())
	for topic := range b.topics {
		b.end(topic, sse.GapUnknown, fmt.Errorf("ssepostgres: topic %q: the database was re-initialised or restored", topic))
	}
	p, err := b.start(ctx)
	if err != nil {
		return err
	}
	b.cursor = p
	return nil
}

// start is where a new node's feeds begin: after the newest row every
// reader may read.
func (b *Broker) start(ctx context.Context) (position, error) {
	var xid string
	var p position
	err := b.pool.QueryRow(ctx, b.sql.start).Scan(&xid, &p.seq)
	if err == pgx.ErrNoRows {
		return position{}, nil
	}
	if err == nil {
		p.xid, err = parseUint(xid)
	}
	return p, err
}
