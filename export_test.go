package sse

import (
	"context"
	"time"
)

// SetSleep replaces the wait between connection attempts of c, so that tests
// can see every delay without spending it.
func SetSleep(c *Client, f func(ctx context.Context, d time.Duration) error) { c.sleep = f }

// Backoff exposes the delay computation to the table test.
var Backoff = backoff

// BufferCap returns the capacity of the buffer c keeps between writes.
func BufferCap(c *Conn) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return cap(c.buf)
}

// Fail closes c as Hub.Close and evictions do.
func Fail(c *Conn) { c.fail(ErrConnectionClosed) }
