package reliability_test

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

// redisServer is a redis-server of one test, on a unix socket in a
// directory of its own, with every write in the append-only file before
// Redis answers it; TCP is off.
type redisServer struct {
	dir, sock string
	cmd       *exec.Cmd
	exited    chan struct{}
}

// startRedis starts a redis-server and stops it when the test ends. A
// missing redis-server fails the test: it never skips.
func startRedis(t testing.TB) *redisServer {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Fatal("redis-server is not on PATH: install it (apt-get install -y redis-server, or run scripts/test as root)")
	}
	dir := t.TempDir()
	s := &redisServer{dir: dir, sock: filepath.Join(dir, "redis.sock")}
	s.cmd = exec.Command("redis-server", "--port", "0", "--unixsocket", s.sock, "--unixsocketperm", "700",
		"--dir", dir, "--save", "", "--appendonly", "yes", "--appendfsync", "always", "--loglevel", "warning")
	out, err := os.Create(filepath.Join(dir, "redis.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	s.cmd.Stdout, s.cmd.Stderr = out, out
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("starting redis-server: %v", err)
	}
	s.exited = make(chan struct{})
	go func() { s.cmd.Wait(); close(s.exited) }()
	t.Cleanup(func() { s.cmd.Process.Signal(syscall.SIGKILL); <-s.exited })
	deadline := time.Now().Add(10 * time.Second)
	for !s.ping() {
		select {
		case <-s.exited:
			log, _ := os.ReadFile(filepath.Join(dir, "redis.log"))
			t.Fatalf("redis-server exited: %s", log)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("redis-server does not answer PING")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return s
}

func (s *redisServer) ping() bool {
	c, err := net.DialTimeout("unix", s.sock, time.Second)
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

// client returns a go-redis client of s, closed when the test ends.
// MaxRetries is off so that a publish Redis did not acknowledge is not
// sent again behind the caller's back (which could store it twice).
func (s *redisServer) client(t testing.TB) *redis.Client {
	c := redis.NewClient(&redis.Options{Network: "unix", Addr: s.sock, MaxRetries: -1, PoolSize: 32})
	t.Cleanup(func() { c.Close() })
	return c
}
