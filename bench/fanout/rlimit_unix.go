//go:build unix

package fanout

import "syscall"

// raiseFileLimit lifts the soft limit on open files to the hard one: each
// connection is a file in the server and in the clients' process.
func raiseFileLimit() (uint64, error) {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return 0, err
	}
	l.Cur = l.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return 0, err
	}
	return l.Cur, nil
}

// smallReceiveBuffer is a net.Dialer Control that sets a 4 KiB receive
// buffer before the connection is made, so that the window stays small and
// a slow reader's lag reaches the server instead of kernel buffers.
func smallReceiveBuffer(_, _ string, rc syscall.RawConn) error {
	var err error
	if cerr := rc.Control(func(fd uintptr) {
		err = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
	}); cerr != nil {
		return cerr
	}
	return err
}
