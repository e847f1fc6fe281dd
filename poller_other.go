//go:build !linux

package sse

// On systems other than Linux, each detached stream is watched by a
// goroutine of its own, blocked in a read of its connection until the
// client leaves or the stream closes: a detached stream then costs that
// goroutine (about 4 KiB), and still none of net/http's buffers.
func watch(d *detached) { watchByRead(d) }

func unwatch(*detached) {}
