package ssepostgres_test

import (
	"fmt"
	"os"
	"testing"

	"github.com/b2ce5911/sse/postgres/pgtest"
	"go.uber.org/goleak"
)

// server is the PostgreSQL of this test binary; each test makes a
// database of its own on it.
var server *pgtest.Server

// TestMain starts the server, failing the run when it cannot, and fails a
// passing run that leaves goroutines behind.
func TestMain(m *testing.M) {
	var err error
	if server, err = pgtest.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "FAIL: cannot start PostgreSQL:", err)
		os.Exit(1)
	}
	code := m.Run()
	server.Close()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "FAIL: goroutines left behind:", err)
			code = 1
		}
	}
	os.Exit(code)
}
