package ssepostgres_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/b2ce5911/sse"
	"github.com/b2ce5911/sse/brokertest"
	ssepostgres "github.com/b2ce5911/sse/postgres"
)

// TestBrokerContract runs the suite every sse.Broker passes. Each broker
// has a table of its own in one database, and so an epoch of its own;
// pruning runs when the suite asks.
func TestBrokerContract(t *testing.T) {
	pool, _ := newDB(t)
	var tables atomic.Int64
	brokertest.Run(t, func(t *testing.T) sse.Broker {
		b, err := ssepostgres.New(context.Background(), pool, ssepostgres.Options{
			Table:         fmt.Sprintf("contract_%d", tables.Add(1)),
			MaxLen:        brokertest.MaxEvents,
			PruneInterval: -1,
			Logger:        quiet,
		})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}, brokertest.Options{
		AssignsIDs: true,
		History:    brokertest.MaxEvents,
		Prune: func(t *testing.T, b sse.Broker) {
			if err := b.(*ssepostgres.Broker).Prune(context.Background()); err != nil {
				t.Fatal(err)
			}
		},
	})
}
