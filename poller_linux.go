//go:build linux

package sse

import (
	"net"
	"sync"
	"syscall"
)

// The poller notices the clients of detached streams leaving: one epoll
// instance and one goroutine for the whole process, which run only while
// there are detached streams. Each connection is registered for
// EPOLLRDHUP alone (EPOLLHUP and EPOLLERR come with it), not EPOLLIN, so
// that bytes a client sends never wake it and nothing needs to be read.
// The event carries the stream's registration id, not its descriptor,
// which the system may give to another connection once this one closes.
var streamPoller poller

type poller struct {
	mu      sync.Mutex // guards the fields below and the streams' pollID
	running bool       // a goroutine waits in epfd; the descriptors below are its
	epfd    int
	pipe    [2]int // a byte written to pipe[1] wakes the goroutine
	streams map[uint64]*detached
	raw     map[uint64]syscall.RawConn
	next    uint64
}

// tcpUserTimeout is TCP_USER_TIMEOUT, which package syscall does not name.
const tcpUserTimeout = 0x12

// watch registers d with the poller. A connection without a descriptor,
// or one the poller cannot take, is watched by a goroutine of its own.
func watch(d *detached) {
	nc := d.raw // under TLS, the TCP connection
	sc, ok := nc.(syscall.Conn)
	if !ok {
		watchByRead(d)
		return
	}
	raw, err := sc.SyscallConn()
	if err == nil {
		if _, tcp := nc.(*net.TCPConn); tcp && d.writeTimeout > 0 {
			// A client gone without a FIN leaves a heartbeat unacknowledged:
			// the system then fails the socket after about the write
			// timeout, and the poller sees it.
			raw.Control(func(fd uintptr) {
				syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, tcpUserTimeout, int(d.writeTimeout.Milliseconds()))
			})
		}
		err = streamPoller.add(d, raw)
	}
	if err != nil {
		watchByRead(d)
	}
}

// unwatch takes d out of the poller, before its connection closes.
func unwatch(d *detached) { streamPoller.remove(d) }

func (p *poller) add(d *detached, raw syscall.RawConn) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.running {
		if err := p.start(); err != nil {
			return err
		}
	}
	p.next++
	id := p.next
	ev := syscall.EpollEvent{Events: syscall.EPOLLRDHUP, Fd: int32(id), Pad: int32(id >> 32)}
	var err error
	if cerr := raw.Control(func(fd uintptr) {
		err = syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_ADD, int(fd), &ev)
	}); cerr != nil {
		err = cerr
	}
	if err != nil {
		p.wake() // it may have been started for d alone
		return err
	}
	d.pollID = id
	p.streams[id] = d
	p.raw[id] = raw
	return nil
}

// start opens the epoll instance and starts its goroutine, with p.mu held.
func (p *poller) start() error {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return err
	}
	if err := syscall.Pipe2(p.pipe[:], syscall.O_NONBLOCK|syscall.O_CLOEXEC); err != nil {
		syscall.Close(epfd)
		return err
	}
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN} // id 0
	if err := syscall.EpollCtl(epfd, syscall.EPOLL_CTL_ADD, p.pipe[0], &ev); err != nil {
		syscall.Close(epfd)
		syscall.Close(p.pipe[0])
		syscall.Close(p.pipe[1])
		return err
	}
	p.epfd, p.running = epfd, true
	p.streams = make(map[uint64]*detached)
	p.raw = make(map[uint64]syscall.RawConn)
	go p.loop(epfd, p.pipe)
	return nil
}

func (p *poller) remove(d *detached) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.forget(d.pollID)
	d.pollID = 0
}

// forget unregisters a stream, with p.mu held, and wakes the goroutine
// when none is left, so that it ends.
func (p *poller) forget(id uint64) {
	raw, ok := p.raw[id]
	if !ok {
		return
	}
	raw.Control(func(fd uintptr) {
		syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_DEL, int(fd), nil)
	})
	delete(p.streams, id)
	delete(p.raw, id)
	if len(p.streams) == 0 {
		p.wake()
	}
}

func (p *poller) wake() {
	syscall.Write(p.pipe[1], []byte{0}) // a full pipe has woken it already
}

// loop waits for clients to leave until no stream is left.
func (p *poller) loop(epfd int, pipe [2]int) {
	events := make([]syscall.EpollEvent, 64)
	var left []*detached
	for {
		n, err := syscall.EpollWait(epfd, events, -1)
		if err == syscall.EINTR {
			continue
		}
		p.mu.Lock()
		if err != nil {
			// Not expected of a valid instance: every stream is then
			// watched as if its client had left, and ends.
			for _, d := range p.streams {
				d.pollID = 0
				left = append(left, d)
			}
			clear(p.streams)
			clear(p.raw)
		}
		for _, ev := range events[:max(n, 0)] {
			id := uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
			if id == 0 {
				var b [64]byte
				syscall.Read(pipe[0], b[:])
				continue
			}
			if d := p.streams[id]; d != nil {
				p.forget(id)
				d.pollID = 0
				left = append(left, d)
			}
		}
		done := len(p.streams) == 0
		if done {
			p.running = false
		}
		p.mu.Unlock()
		for i, d := range left {
			d.stop() // the client left
			left[i] = nil
		}
		left = left[:0]
		if done {
			syscall.Close(epfd)
			syscall.Close(pipe[0])
			syscall.Close(pipe[1])
			return
		}
	}
}
