package sseredis_test

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/b2ce5911/sse"
	"github.com/b2ce5911/sse/brokertest"
	sseredis "github.com/b2ce5911/sse/redis"
	"github.com/b2ce5911/sse/redis/redistest"
)

// TestBrokerContract holds the Broker to the contract of every sse.Broker.
// Each subtest has a Prefix of its own on one Redis. Redis assigns the ids;
// MaxLen trims approximately, so the subtest of expired history is not run
// (TestHistoryGapResets covers it).
func TestBrokerContract(t *testing.T) {
	srv := redistest.Start(t, false)
	var n atomic.Int64
	brokertest.Run(t, func(t *testing.T) sse.Broker {
		return &sseredis.Broker{Client: srv.Client(t), Prefix: fmt.Sprintf("c%d:", n.Add(1)), Block: 200 * time.Millisecond, Logger: quiet}
	}, brokertest.Options{AssignsIDs: true})
}
