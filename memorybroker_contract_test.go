package sse_test

import (
	"testing"

	"github.com/b2ce5911/sse"
	"github.com/b2ce5911/sse/brokertest"
)

// TestMemoryBrokerContract holds MemoryBroker to the contract of every
// Broker.
func TestMemoryBrokerContract(t *testing.T) {
	brokertest.Run(t, func(t *testing.T) sse.Broker {
		return &sse.MemoryBroker{History: brokertest.MaxEvents}
	}, brokertest.Options{History: brokertest.MaxEvents})
}
