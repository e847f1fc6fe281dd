package sseredis_test

import (
	"context"
	"testing"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"
)

type silent struct{}

func (silent) Printf(context.Context, string, ...any) {}

// TestMain fails a passing run that leaves goroutines behind: every test
// must stop the feeds, clients, servers and streams it started.
func TestMain(m *testing.M) {
	redis.SetLogger(silent{}) // dial errors while Redis restarts are expected
	goleak.VerifyTestMain(m)
}
