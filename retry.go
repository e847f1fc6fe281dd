package sse

import (
	"math"
	"math/rand/v2"
	"time"
)

// retry is the reconnection delay to send a new stream: RetryTime with a
// random part of RetryJitter added, or 0 when there is no RetryTime.
func (u *Upgrader) retry() time.Duration {
	if u.RetryTime <= 0 {
		return 0
	}
	j := u.RetryJitter
	if j == 0 {
		j = u.RetryTime / 2
	}
	j = min(j, math.MaxInt64-u.RetryTime-1) // no overflow, even for absurd values
	if j <= 0 {
		return u.RetryTime
	}
	return u.RetryTime + rand.N(j+1)
}
