package reliability_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/b2ce5911/sse"
	ssepostgres "github.com/b2ce5911/sse/postgres"
	"github.com/b2ce5911/sse/postgres/pgtest"
	sseredis "github.com/b2ce5911/sse/redis"
	"github.com/b2ce5911/sse/redis/redistest"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"
)

// Restart chaos: a publisher at a steady rate, subscribers that reconnect
// through sse.Client, and a server killed and restarted at random moments.
// Every subscriber must end with every event exactly once and in order, or
// with a reset event exactly where history was really gone.

const (
	chaosTopic        = "chaos"
	chaosRetry        = 5 * time.Millisecond // the servers' retry field
	chaosPublishAt    = time.Millisecond     // the publisher's period
	chaosRedisRole    = "chaos-redis-server"
	chaosPostgresRole = "chaos-postgres-server"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func init() {
	children[chaosRedisRole] = chaosRedisServer
	children[chaosPostgresRole] = chaosPostgresServer
}

// chaosSeed is the seed of a test's random moments: SSE_CHAOS_SEED when set,
// to replay a failure, else a random one. It is logged either way.
func chaosSeed(t *testing.T) (*rand.Rand, uint64) {
	seed := rand.Uint64()
	if s := os.Getenv("SSE_CHAOS_SEED"); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("SSE_CHAOS_SEED=%q: %v", s, err)
		}
	}
	t.Logf("seed=%d (set SSE_CHAOS_SEED=%d to replay)", seed, seed)
	return rand.New(rand.NewPCG(seed, seed^0x5ee5ee)), seed
}

// between returns a random duration in [lo, hi).
func between(rng *rand.Rand, lo, hi time.Duration) time.Duration {
	return lo + time.Duration(rng.Int64N(int64(hi-lo)))
}

// chaosSchedule is how long a server stays up and down between kills.
type chaosSchedule struct {
	kills            int
	upMin, upMax     time.Duration
	downMin, downMax time.Duration
	subscribers      int
}

// up is how long the server lives this time: mostly long enough for the
// subscribers to come back and catch up, but one time in four only a few
// milliseconds, so that kills also land while they reconnect and replay.
func (s chaosSchedule) up(rng *rand.Rand) time.Duration {
	if rng.IntN(4) == 0 {
		return between(rng, time.Millisecond, 20*time.Millisecond)
	}
	return between(rng, s.upMin, s.upMax)
}

func defaultSchedule() chaosSchedule {
	return chaosSchedule{
		kills:       pick(4, 100),
		upMin:       50 * time.Millisecond,
		upMax:       pick(300*time.Millisecond, 250*time.Millisecond),
		downMin:     0,
		downMax:     100 * time.Millisecond,
		subscribers: pick(3, 16),
	}
}

// published is one event the publisher got an id for.
type published struct {
	id string
	n  int // the event's data
}

// epoch is the history of one Broker: the events published on it, in
// order. Where history survives restarts there is a single epoch.
type epoch struct {
	name   string // MemoryBroker epoch (the part of its ids before "-")
	events []published
}

// received is one event as a subscriber's Client dispatched it.
type received struct{ typ, id, data string }

// chaosSubscriber collects what one sse.Client receives.
type chaosSubscriber struct {
	connects atomic.Int64

	mu   sync.Mutex // guards the fields below
	got  []received
	want string // the id of the last event published, once known
	done chan struct{}
	err  error // why the Client stopped, when not the end of the test
}

// run reads url until ctx ends.
func (s *chaosSubscriber) run(ctx context.Context, hc *http.Client, url, after string) {
	c := &sse.Client{
		HTTPClient:        hc,
		LastEventID:       after,
		ReconnectDelay:    chaosRetry,
		MaxReconnectDelay: 100 * time.Millisecond,
		OnConnect:         func(*http.Response) { s.connects.Add(1) },
	}
	for ev, err := range c.Events(ctx, url) {
		if err != nil {
			if ctx.Err() == nil {
				s.mu.Lock()
				s.err = err
				s.mu.Unlock()
			}
			return
		}
		data, _ := io.ReadAll(ev.Data)
		s.mu.Lock()
		s.got = append(s.got, received{ev.Type, ev.ID, string(data)})
		if s.want != "" && ev.ID == s.want { // the event, or a reset to just after it
			closeOnce(s.done)
		}
		s.mu.Unlock()
	}
}

// expect tells s the id of the last event: done closes once s has it, or
// a reset event that carries it (a subscriber that comes back after the
// last event to a server that lost the history gets only that).
func (s *chaosSubscriber) expect(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.want = id
	for _, g := range s.got {
		if g.id == id {
			closeOnce(s.done)
		}
	}
}

func closeOnce(ch chan struct{}) {
	select {
	case <-ch:
	default:
		close(ch)
	}
}

// chaosResult counts what the subscribers received against what was
// published.
type chaosResult struct {
	lost   int      // events a subscriber should have had and never got
	dup    int      // events received more than once
	order  int      // events received after a later one
	resets int      // reset events received
	gone   int      // events skipped by a reset: history really lost
	bad    []string // anything else wrong, described
}

func (r *chaosResult) add(o chaosResult) {
	r.lost += o.lost
	r.dup += o.dup
	r.order += o.order
	r.resets += o.resets
	r.gone += o.gone
	r.bad = append(r.bad, o.bad...)
}

// check compares what one subscriber received with epochs. It started
// after the first event of epochs[0]. Within an epoch it must receive the
// events one after the other, none missing, none twice. It may move to a
// later epoch only through one reset event whose id is the position of
// that epoch where its next events start: an id of the epoch, or the
// epoch's empty position "<epoch>-0". It must end with the last event.
func check(got []received, epochs []*epoch, resetType string) chaosResult {
	type loc struct{ e, pos int }
	index := make(map[string]loc)
	for e, ep := range epochs {
		for pos, p := range ep.events {
			index[p.id] = loc{e, pos}
		}
	}
	var r chaosResult
	e, next := 0, 1 // the next event expected: epochs[e].events[next]
	seen := make(map[string]bool)
	missing := make(map[string]bool) // skipped: counted as lost until they come
	for i, g := range got {
		if g.typ == resetType {
			r.resets++
			at, ok := index[g.id]
			if !ok {
				for j, ep := range epochs {
					if ep.name != "" && g.id == ep.name+"-0" {
						at, ok = loc{j, -1}, true
					}
				}
			}
			if !ok || at.e <= e {
				r.bad = append(r.bad, fmt.Sprintf("event %d: reset with id %q in epoch %d, where history was kept", i, g.id, e))
				continue
			}
			for ; e < at.e; e, next = e+1, 0 {
				r.gone += len(epochs[e].events) - next
			}
			next = at.pos + 1
			continue
		}
		at, ok := index[g.id]
		switch {
		case g.typ != "message":
			r.bad = append(r.bad, fmt.Sprintf("event %d: unexpected type %q (id %q)", i, g.typ, g.id))
			continue
		case !ok:
			r.bad = append(r.bad, fmt.Sprintf("event %d: id %q was never published", i, g.id))
			continue
		case seen[g.id]:
			r.dup++
			continue
		}
		seen[g.id] = true
		if want := strconv.Itoa(epochs[at.e].events[at.pos].n); g.data != want {
			r.bad = append(r.bad, fmt.Sprintf("event %d: id %q carries %q, published with %q", i, g.id, g.data, want))
		}
		switch {
		case at.e != e:
			r.bad = append(r.bad, fmt.Sprintf("event %d: id %q of epoch %d received in epoch %d without a reset", i, g.id, at.e, e))
		case at.pos < next:
			r.order++
			if missing[g.id] { // counted as lost when a later one came first
				delete(missing, g.id)
				r.lost--
			} else {
				r.bad = append(r.bad, fmt.Sprintf("event %d: id %q precedes the reset that came before it", i, g.id))
			}
		default:
			for _, p := range epochs[e].events[next:at.pos] {
				missing[p.id] = true
			}
			r.lost += at.pos - next
			next = at.pos + 1
		}
	}
	for ; e < len(epochs); e, next = e+1, 0 {
		r.lost += len(epochs[e].events) - next
	}
	return r
}

// chaosRun is what every chaos test shares: the subscribers, the
// publisher's record, and the final reckoning.
type chaosRun struct {
	t      *testing.T
	name   string
	seed   uint64
	kills  int
	hc     *http.Client
	subs   []*chaosSubscriber
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// subscribe starts n subscribers of url that resume after id.
func (c *chaosRun) subscribe(n int, url, after string) {
	ctx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	c.hc = &http.Client{Transport: &http.Transport{}}
	c.t.Cleanup(c.stop) // should the test stop early
	for range n {
		s := &chaosSubscriber{done: make(chan struct{})}
		c.subs = append(c.subs, s)
		c.wg.Go(func() { s.run(ctx, c.hc, url, after) })
	}
}

// connects returns how many times each subscriber has connected.
func (c *chaosRun) connects() []int64 {
	n := make([]int64, len(c.subs))
	for i, s := range c.subs {
		n[i] = s.connects.Load()
	}
	return n
}

// stop stops the subscribers.
func (c *chaosRun) stop() {
	c.cancel()
	c.wg.Wait()
	c.hc.CloseIdleConnections()
}

// finish waits (bounded) until every subscriber has the last event, stops
// them, and checks what each received.
func (c *chaosRun) finish(epochs []*epoch, resets bool) {
	t := c.t
	last := epochs[len(epochs)-1].events
	final := last[len(last)-1].id
	deadline := time.NewTimer(pick(30*time.Second, 60*time.Second))
	defer deadline.Stop()
	for i, s := range c.subs {
		s.expect(final)
		select {
		case <-s.done:
		case <-deadline.C:
			s.mu.Lock()
			t.Errorf("subscriber %d does not get the last event %q: it has %d events, error %v", i, final, len(s.got), s.err)
			s.mu.Unlock()
			deadline.Reset(0)
		}
	}
	c.stop()

	published := -1 // the first event is where subscribers start
	for _, ep := range epochs {
		published += len(ep.events)
	}
	var total chaosResult
	reconnects := 0
	for i, s := range c.subs {
		r := check(s.got, epochs, sse.DefaultResetType)
		if s.err != nil {
			r.bad = append(r.bad, fmt.Sprintf("the Client stopped: %v", s.err))
		}
		for _, b := range r.bad[:min(len(r.bad), 5)] {
			t.Errorf("subscriber %d: %s", i, b)
		}
		total.add(r)
		reconnects += int(s.connects.Load()) - 1
	}
	line := fmt.Sprintf("chaos %s: kills=%d published=%d subscribers=%d reconnects=%d lost=%d dup=%d order=%d resets=%d",
		c.name, c.kills, published, len(c.subs), reconnects, total.lost, total.dup, total.order, total.resets)
	if resets {
		line += fmt.Sprintf(" gone=%d", total.gone)
	}
	t.Logf("%s seed=%d", line, c.seed)
	if total.lost != 0 || total.dup != 0 || total.order != 0 {
		t.Errorf("lost=%d dup=%d order=%d: want 0", total.lost, total.dup, total.order)
	}
	if !resets && total.resets != 0 {
		t.Errorf("%d reset events where history was kept", total.resets)
	}
	if resets && total.resets == 0 && c.kills > 0 {
		t.Errorf("no reset event although every restart lost the history")
	}
}

// freeAddr returns a 127.0.0.1 address no one listens on now; the tests
// restart their servers on it.
func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// listen listens on addr, retrying a little while the previous server's
// socket goes away.
func listen(addr string) (net.Listener, error) {
	var err error
	for range 200 {
		var ln net.Listener
		if ln, err = net.Listen("tcp", addr); err == nil {
			return ln, nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil, err
}

// httpServer is one life of the in-process server.
type httpServer struct {
	srv    *http.Server
	served chan struct{}

	mu       sync.Mutex
	hijacked []net.Conn // the detached streams': http.Server.Close leaves them be
	killed   bool
}

func startHTTP(t *testing.T, addr string, h http.Handler) *httpServer {
	ln, err := listen(addr)
	if err != nil {
		t.Fatalf("listening on %s again: %v", addr, err)
	}
	s := &httpServer{served: make(chan struct{})}
	s.srv = &http.Server{Handler: h, ConnState: func(c net.Conn, st http.ConnState) {
		if st != http.StateHijacked {
			return
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.killed {
			c.Close()
			return
		}
		s.hijacked = append(s.hijacked, c)
	}}
	go func() {
		defer close(s.served)
		s.srv.Serve(ln)
	}()
	return s
}

// kill drops the listener and every connection at once, as the death of
// the process would: the detached streams' too.
func (s *httpServer) kill() {
	s.srv.Close()
	s.mu.Lock()
	s.killed = true
	for _, c := range s.hijacked {
		c.Close()
	}
	s.hijacked = nil
	s.mu.Unlock()
	<-s.served
}

// memoryNode is one in-memory Hub and what was published on it.
type memoryNode struct {
	hub    *sse.Hub
	broker *sse.MemoryBroker
	epoch  *epoch
}

// newMemoryNode makes a Hub on a MemoryBroker that keeps every event of
// the test, and learns the broker's epoch from the empty position of a
// topic without events ("<epoch>-0", as MemoryBroker documents its ids).
func newMemoryNode(t *testing.T, disableDetach bool) *memoryNode {
	b := &sse.MemoryBroker{History: 1 << 20, HistoryAge: -1}
	ctx, stop := context.WithCancel(context.Background())
	pos, err := b.Subscribe(ctx, "chaos-probe", func(sse.Entry) {})
	stop()
	name, zero, ok := strings.Cut(pos, "-")
	if err != nil || !ok || zero != "0" {
		t.Fatalf("probing the MemoryBroker's epoch: position %q, %v", pos, err)
	}
	return &memoryNode{
		hub:    &sse.Hub{Broker: b, DisableDetach: disableDetach, Upgrader: sse.Upgrader{RetryTime: chaosRetry}, Logger: quiet},
		broker: b,
		epoch:  &epoch{name: name},
	}
}

func (n *memoryNode) close() {
	n.hub.Close()
	n.broker.Close()
}

func TestRestartChaosMemory(t *testing.T) {
	t.Parallel()
	for _, disable := range []bool{false, true} {
		path := "detached"
		if disable {
			path = "DisableDetach"
		}
		t.Run("history kept, "+path, func(t *testing.T) { t.Parallel(); memoryChaos(t, false, disable) })
		t.Run("history lost, "+path, func(t *testing.T) { t.Parallel(); memoryChaos(t, true, disable) })
	}
}

// memoryChaos runs an in-process server that is killed and restarted.
// With fresh, every restart brings up a new Hub on a new MemoryBroker, as a
// restarted process would: history is gone, and subscribers must be told
// so by exactly one reset event. Without, the same Hub serves every life
// of the server and its history covers every outage.
func memoryChaos(t *testing.T, fresh, disableDetach bool) {
	rng, seed := chaosSeed(t)
	sched := defaultSchedule()
	addr := freeAddr(t)
	name := "memory"
	if fresh {
		name = "memory-history-lost"
	}
	if disableDetach {
		name += "-disable-detach"
	}
	run := &chaosRun{t: t, name: name, seed: seed, kills: sched.kills}

	var mu sync.Mutex // guards nodes, and the events of the node the publisher is on
	first := newMemoryNode(t, disableDetach)
	nodes := []*memoryNode{first}
	var cur atomic.Pointer[memoryNode] // where the publisher publishes; nil while none runs
	cur.Store(first)
	t.Cleanup(func() { // last, once no server or subscriber is left
		for _, n := range nodes {
			n.close()
		}
	})
	publish := func(ctx context.Context, n *memoryNode, i int) bool {
		id, err := n.hub.Publish(ctx, chaosTopic, sse.Message{Data: []byte(strconv.Itoa(i))})
		if errors.Is(err, sse.ErrHubClosed) {
			return false // the node died first: nothing was published
		}
		if err != nil {
			t.Errorf("publish %d: %v", i, err)
			return false
		}
		mu.Lock()
		n.epoch.events = append(n.epoch.events, published{id, i})
		mu.Unlock()
		return true
	}
	if !publish(context.Background(), first, 0) {
		t.FailNow()
	}

	srv := startHTTP(t, addr, first.hub)
	t.Cleanup(func() { srv.kill() }) // the latest one, after the subscribers stopped
	run.subscribe(sched.subscribers, "http://"+addr+"/?topic="+chaosTopic, first.epoch.events[0].id)

	ctx, stop := context.WithCancel(context.Background())
	var publisher sync.WaitGroup
	t.Cleanup(func() { stop(); publisher.Wait() }) // should the test stop early
	next := 1
	publisher.Go(func() {
		tick := time.NewTicker(chaosPublishAt)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			// Not ctx: a publish it cut short could be stored unrecorded.
			if n := cur.Load(); n != nil && publish(context.Background(), n, next) {
				next++
			}
		}
	})

	node := first
	for range sched.kills {
		time.Sleep(sched.up(rng))
		srv.kill()
		early := rng.IntN(2) == 0 // the new process publishes before it listens
		if fresh {
			cur.Store(nil)
			node.close()
			if early {
				node = newMemoryNode(t, disableDetach)
				mu.Lock()
				nodes = append(nodes, node)
				mu.Unlock()
				cur.Store(node)
			}
		}
		time.Sleep(between(rng, sched.downMin, sched.downMax))
		if fresh && !early {
			node = newMemoryNode(t, disableDetach)
			mu.Lock()
			nodes = append(nodes, node)
			mu.Unlock()
			cur.Store(node)
		}
		srv = startHTTP(t, addr, node.hub)
	}
	// One kill more once every subscriber is served: each must come back.
	waitFor(t, 30*time.Second, func() bool { return node.hub.Stats().Subscribers == sched.subscribers }, "every subscriber to be served")
	before := run.connects()
	srv.kill()
	srv = startHTTP(t, addr, node.hub)
	time.Sleep(sched.upMin)
	stop()
	publisher.Wait()
	if !publish(context.Background(), node, next) { // the last event, which subscribers wait for
		t.FailNow()
	}

	epochs := make([]*epoch, len(nodes))
	for i, n := range nodes {
		epochs[i] = n.epoch
	}
	run.finish(epochs, fresh)
	for i, n := range run.connects() {
		if n <= before[i] {
			t.Errorf("subscriber %d did not reconnect after the last kill: the kill left its stream open", i)
		}
	}
}

// chaosServe is the body of a child server role: a Hub on the Broker that
// newBroker makes, served at SSE_CHAOS_ADDR until the process is killed
// or its parent goes.
func chaosServe(newBroker func() (sse.Broker, error)) {
	go func() {
		io.Copy(io.Discard, os.Stdin) // EOF: the parent is gone
		os.Exit(0)
	}()
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, "chaos server:", err)
		os.Exit(1)
	}
	b, err := newBroker()
	if err != nil {
		fail(err)
	}
	hub := &sse.Hub{Broker: b, DisableDetach: os.Getenv("SSE_CHAOS_DISABLE_DETACH") == "1", Upgrader: sse.Upgrader{RetryTime: chaosRetry}, Logger: quiet}
	ln, err := listen(os.Getenv("SSE_CHAOS_ADDR"))
	if err != nil {
		fail(err)
	}
	fmt.Println("ready")
	fail(http.Serve(ln, hub))
}

// chaosRedisServer is the child role of TestRestartChaosRedis: a Hub on
// Redis Streams at the unix socket SSE_CHAOS_REDIS.
func chaosRedisServer() {
	chaosServe(func() (sse.Broker, error) {
		rc := redis.NewClient(&redis.Options{Network: "unix", Addr: os.Getenv("SSE_CHAOS_REDIS"), PoolSize: 16})
		return &sseredis.Broker{Client: rc, Block: time.Second, Logger: quiet}, nil
	})
}

// chaosPostgresServer is the child role of TestRestartChaosPostgres: a Hub
// on the PostgreSQL database SSE_CHAOS_PG.
func chaosPostgresServer() {
	chaosServe(func() (sse.Broker, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		pool, err := pgxpool.New(ctx, os.Getenv("SSE_CHAOS_PG"))
		if err != nil {
			return nil, err
		}
		return ssepostgres.New(ctx, pool, chaosPostgresOptions)
	})
}

// chaosPostgresOptions keep every event of the test, for the publisher and
// the server alike.
var chaosPostgresOptions = ssepostgres.Options{MaxLen: -1, MaxAge: -1, PruneInterval: -1, Logger: quiet}

// chaosNode is one life of a child server.
type chaosNode struct {
	cmd    *exec.Cmd
	exited chan struct{}
}

// startChaosNode starts the child server role at addr, with env added to
// its environment, and returns once it listens.
func startChaosNode(t *testing.T, role, addr string, env ...string) *chaosNode {
	cmd := child(role, append([]string{"SSE_CHAOS_ADDR=" + addr}, env...)...)
	dieWithParent(cmd)
	if _, err := cmd.StdinPipe(); err != nil { // closed when this process dies
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan error, 1)
	go func() {
		line, err := bufio.NewReader(out).ReadString('\n')
		if err == nil && line != "ready\n" {
			err = fmt.Errorf("child says %q", line)
		}
		ready <- err
	}()
	timeout := time.NewTimer(30 * time.Second)
	defer timeout.Stop()
	select {
	case err = <-ready:
	case <-timeout.C:
		err = errors.New("no answer in 30s")
	}
	n := &chaosNode{cmd: cmd, exited: make(chan struct{})}
	if err != nil {
		cmd.Process.Kill()
		<-ready
	}
	go func() {
		cmd.Wait()
		close(n.exited)
	}()
	if err != nil {
		<-n.exited
		t.Fatalf("starting the chaos server %s: %v", role, err)
	}
	return n
}

func (n *chaosNode) kill() {
	n.cmd.Process.Signal(syscall.SIGKILL)
	<-n.exited
}

// TestRestartChaosRedis kills a server process on Redis Streams with
// SIGKILL and restarts it, while the publisher goes on writing to Redis:
// Redis keeps the history, so no subscriber may see a reset.
func TestRestartChaosRedis(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t, true)
	pub := &sseredis.Broker{Client: rs.Client(t), MaxLen: 1 << 20, Logger: quiet}
	t.Cleanup(func() { pub.Close() }) // after the publisher stopped
	processChaos(t, "redis", pub, chaosRedisRole, "SSE_CHAOS_REDIS="+rs.Socket)
}

// TestRestartChaosPostgres kills a server process on PostgreSQL with
// SIGKILL and restarts it, while the publisher goes on writing to the same
// database through a Broker of its own: the database keeps the history, so
// no subscriber may see a reset.
func TestRestartChaosPostgres(t *testing.T) {
	t.Parallel()
	srv, err := pgtest.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close) // last
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	url, err := srv.NewDB(ctx)
	if err != nil {
		t.Fatal(err)
	}
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	pub, err := ssepostgres.New(ctx, pool, chaosPostgresOptions)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pub.Close() }) // after the publisher stopped
	processChaos(t, "postgres", pub, chaosPostgresRole, "SSE_CHAOS_PG="+url)
}

// processChaos publishes on pub at a steady rate while a child server of
// role, on the same history, is killed with SIGKILL and restarted; the
// subscribers follow it through every restart and must end with every
// event exactly once, in order, and no reset.
//
// It runs twice, in parallel: on detached streams, the Hub's default, and
// with DisableDetach.
func processChaos(t *testing.T, name string, pub sse.Broker, role string, env ...string) {
	for _, disable := range []bool{false, true} {
		sub, variant := "detached", name
		if disable {
			sub, variant = "DisableDetach", name+"-disable-detach"
		}
		t.Run(sub, func(t *testing.T) {
			t.Parallel()
			processChaosRun(t, variant, pub, role, append([]string{"SSE_CHAOS_DISABLE_DETACH=" + map[bool]string{false: "0", true: "1"}[disable]}, env...)...)
		})
	}
}

func processChaosRun(t *testing.T, name string, pub sse.Broker, role string, env ...string) {
	rng, seed := chaosSeed(t)
	sched := defaultSchedule()
	addr := freeAddr(t)
	run := &chaosRun{t: t, name: name, seed: seed, kills: sched.kills}
	topic := chaosTopic + "-" + name // the variants share pub's history

	ep := &epoch{}
	publish := func(ctx context.Context, i int) error {
		id, err := pub.Publish(ctx, topic, sse.Message{Data: []byte(strconv.Itoa(i))})
		if err != nil {
			return fmt.Errorf("publish %d: %w", i, err)
		}
		ep.events = append(ep.events, published{id, i})
		return nil
	}
	if err := publish(context.Background(), 0); err != nil {
		t.Fatal(err)
	}

	var mu sync.Mutex // guards node, which Cleanup kills
	node := startChaosNode(t, role, addr, env...)
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		node.kill()
	})
	run.subscribe(sched.subscribers, "http://"+addr+"/?topic="+topic, ep.events[0].id)

	ctx, stop := context.WithCancel(context.Background())
	var publisher sync.WaitGroup
	t.Cleanup(func() { stop(); publisher.Wait() }) // should the test stop early
	var pubErr error
	publisher.Go(func() {
		tick := time.NewTicker(chaosPublishAt)
		defer tick.Stop()
		for i := 1; ; i++ {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			// Not ctx: a publish it cut short could be stored unrecorded.
			if pubErr = publish(context.Background(), i); pubErr != nil {
				return
			}
		}
	})

	for range sched.kills {
		time.Sleep(sched.up(rng))
		mu.Lock()
		node.kill()
		mu.Unlock()
		time.Sleep(between(rng, sched.downMin, sched.downMax))
		n := startChaosNode(t, role, addr, env...)
		mu.Lock()
		node = n
		mu.Unlock()
	}
	time.Sleep(sched.upMin)
	stop()
	publisher.Wait()
	if pubErr != nil {
		t.Fatal(pubErr)
	}
	if err := publish(context.Background(), len(ep.events)); err != nil {
		t.Fatal(err)
	}
	run.finish([]*epoch{ep}, false)
}
