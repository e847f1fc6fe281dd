// Package redistest runs a redis-server of a test's own, on a unix socket
// in a temporary directory with TCP off, for the tests of package sseredis
// and of the modules that build on it. A missing redis-server fails the
// test: it never skips.
package redistest

import (
	"bufio"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Server is a redis-server started by Start. Its methods must be called
// from the test's goroutine.
type Server struct {
	Socket  string // the unix socket it listens on
	dir     string
	persist bool
	cmd     *exec.Cmd
	exited  chan struct{}
}

// Start starts a redis-server, and kills it when the test ends. With
// persist, every write is in the append-only file before Redis answers
// it, so that a restart keeps all that Redis acknowledged.
func Start(t testing.TB, persist bool) *Server {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Fatal("redis-server is not on PATH: install it (apt-get install -y redis-server, or run scripts/test as root)")
	}
	// Not t.TempDir: a unix socket's path must stay short, and test names
	// are long.
	dir, err := os.MkdirTemp("", "redistest")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	s := &Server{Socket: filepath.Join(dir, "redis.sock"), dir: dir, persist: persist}
	s.Restart(t)
	t.Cleanup(func() { s.Stop(syscall.SIGKILL) })
	return s
}

// Restart starts s again after Stop, on the same socket and data.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	aof := "no"
	if s.persist {
		aof = "yes"
	}
	s.cmd = exec.Command("redis-server", "--port", "0", "--unixsocket", s.Socket, "--unixsocketperm", "700",
		"--dir", s.dir, "--save", "", "--appendonly", aof, "--appendfsync", "always", "--loglevel", "warning")
	out, err := os.Create(filepath.Join(s.dir, "redis.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	s.cmd.Stdout, s.cmd.Stderr = out, out
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("starting redis-server: %v", err)
	}
	exited := make(chan struct{})
	s.exited = exited
	go func(cmd *exec.Cmd) {
		cmd.Wait()
		close(exited)
	}(s.cmd)
	deadline := time.Now().Add(10 * time.Second)
	for !s.ping() {
		select {
		case <-exited:
			log, _ := os.ReadFile(filepath.Join(s.dir, "redis.log"))
			t.Fatalf("redis-server exited: %s", log)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("redis-server does not answer PING")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (s *Server) ping() bool {
	c, err := net.DialTimeout("unix", s.Socket, time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	if _, err := io.WriteString(c, "PING\r\n"); err != nil {
		return false
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return err == nil && line == "+PONG\r\n"
}

// Stop signals redis-server and waits until it has exited.
func (s *Server) Stop(sig os.Signal) {
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Signal(sig)
	<-s.exited
	s.cmd = nil
}

// Pause stops redis-server without ending it (SIGSTOP): it keeps its
// connections and answers nothing, as a Redis that hangs. Resume lets it
// go on; a test that ends paused still kills it.
func (s *Server) Pause(t testing.TB) {
	t.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
}

// Resume undoes Pause.
func (s *Server) Resume(t testing.TB) {
	t.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
}

// Client returns a go-redis client of s, closed when the test ends.
// MaxRetries is off so that a publish Redis did not acknowledge is not
// sent again behind the caller's back, which could store it twice.
func (s *Server) Client(t testing.TB) *redis.Client {
	c := redis.NewClient(&redis.Options{Network: "unix", Addr: s.Socket, MaxRetries: -1, PoolSize: 32})
	t.Cleanup(func() { c.Close() })
	return c
}
