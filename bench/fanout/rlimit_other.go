//go:build !unix

package fanout

import "syscall"

// raiseFileLimit does nothing where there is no RLIMIT_NOFILE.
func raiseFileLimit() (uint64, error) { return 0, nil }

// smallReceiveBuffer does nothing here: a slow client's lag then fills
// kernel buffers before it reaches the server.
func smallReceiveBuffer(string, string, syscall.RawConn) error { return nil }
