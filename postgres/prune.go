package ssepostgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// pruneLoop prunes every PruneInterval until Close.
func (b *Broker) pruneLoop() {
	defer b.wg.Done()
	for b.sleep(b.pruneInterval()) {
		if err := b.Prune(b.ctx); err != nil && b.ctx.Err() == nil {
			b.logger().Warn("ssepostgres: pruning failed; trying again later", "err", err)
		}
	}
}

// Prune deletes the events beyond MaxLen per topic and older than MaxAge,
// of those every reader may have read, and raises the floors of their
// topics so that Replay reports them as pruned. The Broker calls it every
// PruneInterval; it does nothing while another node prunes the same table.
func (b *Broker) Prune(ctx context.Context) error {
	if err := b.settle(ctx); err != nil {
		return fmt.Errorf("ssepostgres: prune: %w", err)
	}
	// This node's feeds first get what is about to go; another node that
	// lags that far behind finds a floor above its cursor, and says so.
	b.rmu.Lock()
	err := b.catchUp(ctx)
	b.rmu.Unlock()
	if err != nil {
		return fmt.Errorf("ssepostgres: prune: %w", err)
	}
	err = pgx.BeginFunc(ctx, b.pool, func(tx pgx.Tx) error {
		var mine bool
		if err := tx.QueryRow(ctx, "SELECT pg_try_advisory_xact_lock(hashtext($1), 1)", b.sql.lock).Scan(&mine); err != nil || !mine {
			return err
		}
		maxLen := b.opts.MaxLen
		if maxLen == 0 {
			maxLen = DefaultMaxLen
		}
		if maxLen > 0 {
			if _, err := tx.Exec(ctx, b.sql.pruneN, maxLen); err != nil {
				return err
			}
		}
		age := b.opts.MaxAge
		if age == 0 {
			age = DefaultMaxAge
		}
		if age > 0 {
			if _, err := tx.Exec(ctx, b.sql.pruneT, age.Seconds()); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("ssepostgres: prune: %w", err)
	}
	return nil
}
