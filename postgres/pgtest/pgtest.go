// Package pgtest runs a PostgreSQL server of a test's own: initdb into a
// temporary directory, then postgres on a unix socket there, with TCP off
// and fsync off, never a system service. As root, both run as the
// "postgres" user, which Debian's postgresql package creates. Missing
// binaries are an error: a test that needs the server fails, never skips.
package pgtest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// Server is a postgres started by Start.
type Server struct {
	Dir    string // holds the data directory and the socket
	bin    string
	cred   *syscall.Credential
	cmd    *exec.Cmd
	exited chan struct{}
	dbs    atomic.Int64
}

// Bin finds the directory of initdb and postgres: PATH, then
// /usr/lib/postgresql/<version>/bin, newest version first.
func Bin() (string, error) {
	if p, err := exec.LookPath("postgres"); err == nil {
		if _, err := exec.LookPath("initdb"); err == nil {
			return filepath.Dir(p), nil
		}
	}
	found, _ := filepath.Glob("/usr/lib/postgresql/*/bin/postgres")
	for i := len(found) - 1; i >= 0; i-- {
		dir := filepath.Dir(found[i])
		if _, err := os.Stat(filepath.Join(dir, "initdb")); err == nil {
			return dir, nil
		}
	}
	return "", errors.New("pgtest: no PostgreSQL binaries on PATH or in /usr/lib/postgresql/*/bin: install them (apt-get install -y postgresql, or run scripts/test as root)")
}

// Start runs initdb and starts postgres. Stop it when done.
func Start() (*Server, error) {
	bin, err := Bin()
	if err != nil {
		return nil, err
	}
	// Not under a test's TempDir: a socket path must stay short.
	dir, err := os.MkdirTemp("", "pgtest")
	if err != nil {
		return nil, err
	}
	s := &Server{Dir: dir, bin: bin}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("pgtest: running as root, and there is no user postgres to run the server as: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		s.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chown(dir, uid, gid); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
	}
	initdb := s.command("initdb", "-D", s.data(), "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C")
	if out, err := initdb.CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("pgtest: initdb: %v: %s", err, out)
	}
	if err := s.Restart(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return s, nil
}

func (s *Server) data() string { return filepath.Join(s.Dir, "data") }

func (s *Server) command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(s.bin, name), args...)
	cmd.Dir = s.Dir
	// Its own process group, so that Pause reaches the backends too; and
	// it dies with the test binary.
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred, Setpgid: true, Pdeathsig: syscall.SIGKILL}
	return cmd
}

// Restart starts postgres again after Stop, on the same data and socket.
// It returns once the server accepts connections (within 60 s).
func (s *Server) Restart() error {
	var err error
	// A crashed server's backends may hold its shared memory a while.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		err = s.start()
		if !errors.Is(err, errShmemInUse) || time.Now().After(deadline) {
			return err
		}
	}
}

var errShmemInUse = errors.New("pgtest: the shared memory of the previous server is still in use")

func (s *Server) start() error {
	log, err := os.OpenFile(filepath.Join(s.Dir, "postgres.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o666)
	if err != nil {
		return err
	}
	defer log.Close()
	cmd := s.command("postgres", "-D", s.data(), "-k", s.Dir, "-c", "listen_addresses=",
		"-c", "fsync=off", "-c", "full_page_writes=off",
		"-c", "max_connections=300", "-c", "shared_buffers=32MB")
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("pgtest: starting postgres: %w", err)
	}
	s.cmd, s.exited = cmd, make(chan struct{})
	go func(exited chan struct{}) {
		cmd.Wait()
		close(exited)
	}(s.exited)
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		c, err := pgx.Connect(ctx, s.URL("postgres"))
		if err == nil {
			c.Close(ctx)
			cancel()
			return nil
		}
		cancel()
		select {
		case <-s.exited:
			out, _ := os.ReadFile(filepath.Join(s.Dir, "postgres.log"))
			s.cmd = nil
			if strings.Contains(string(out[max(len(out)-400, 0):]), "pre-existing shared memory block") {
				return errShmemInUse
			}
			return fmt.Errorf("pgtest: postgres exited: %s", out)
		default:
		}
		if time.Now().After(deadline) {
			s.Stop()
			return fmt.Errorf("pgtest: postgres does not accept connections: %w", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// URL is the connection string of database db on s.
func (s *Server) URL(db string) string {
	return fmt.Sprintf("host=%s port=5432 user=postgres dbname=%s sslmode=disable", s.Dir, db)
}

// NewDB creates a database of its own for a test and returns its
// connection string.
func (s *Server) NewDB(ctx context.Context) (string, error) {
	name := "test" + strconv.FormatInt(s.dbs.Add(1), 10)
	c, err := pgx.Connect(ctx, s.URL("postgres"))
	if err != nil {
		return "", err
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		return "", err
	}
	return s.URL(name), nil
}

// Stop shuts postgres down (fast shutdown), killing it after 20 s; it
// returns once it has exited.
func (s *Server) Stop() {
	if s.cmd == nil {
		return
	}
	s.Resume()
	s.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-s.exited:
	case <-time.After(20 * time.Second):
		syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		<-s.exited
	}
	s.cmd = nil
}

// Kill kills postgres and its backends at once, as a crash would, and
// waits (at most 10 s) until they are gone.
func (s *Server) Kill() {
	if s.cmd == nil {
		return
	}
	pgid := s.cmd.Process.Pid
	syscall.Kill(-pgid, syscall.SIGKILL)
	<-s.exited
	s.cmd = nil
	// The backends die on their own time; one still attached to the
	// shared memory would keep a new postmaster from starting.
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if syscall.Kill(-pgid, syscall.SIGKILL) == syscall.ESRCH {
			return
		}
	}
}

// Pause stops every process of the server (SIGSTOP), so that it accepts
// connections and answers nothing; Resume lets it go on.
func (s *Server) Pause() {
	if s.cmd != nil {
		syscall.Kill(-s.cmd.Process.Pid, syscall.SIGSTOP)
	}
}

// Resume undoes Pause.
func (s *Server) Resume() {
	if s.cmd != nil {
		syscall.Kill(-s.cmd.Process.Pid, syscall.SIGCONT)
	}
}

// Close stops the server and removes its directory.
func (s *Server) Close() {
	s.Stop()
	os.RemoveAll(s.Dir)
}
