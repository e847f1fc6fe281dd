package brokertest_test

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/b2ce5911/sse"
	"github.com/b2ce5911/sse/brokertest"
)

// countingBroker is a Broker of one's own: a MemoryBroker that counts the
// events it stored.
type countingBroker struct {
	sse.MemoryBroker
	stored atomic.Int64
}

func (b *countingBroker) Publish(ctx context.Context, topic string, m sse.Message) (string, error) {
	id, err := b.MemoryBroker.Publish(ctx, topic, m)
	if err == nil {
		b.stored.Add(1)
	}
	return id, err
}

// The tests of a Broker's package hold it to the contract with one call of
// Run. Its brokers keep brokertest.MaxEvents events per topic, which the
// options tell, so that the suite can push an event out of the history.
func Example() {
	testCountingBroker := func(t *testing.T) { // func TestCountingBroker(t *testing.T) in a _test.go file
		brokertest.Run(t, func(t *testing.T) sse.Broker {
			return &countingBroker{MemoryBroker: sse.MemoryBroker{History: brokertest.MaxEvents}}
		}, brokertest.Options{History: brokertest.MaxEvents})
	}
	_ = testCountingBroker
}
