package reliability_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/b2ce5911/sse"
)

// TestReconnectionStorm restarts a Hub under a thousand browser-like
// clients, which wait exactly the retry time they were sent and have no
// backoff of their own, once with the retry field as it is and once with
// Upgrader.RetryJitter's default: every client must come back once and get
// every event once, in order, and with jitter the retry times sent must be
// spread over [RetryTime, 1.5 × RetryTime]. The reconnection times
// measured are logged, not asserted.
func TestReconnectionStorm(t *testing.T) {
	rows := []string{
		"| jitter | clients | reconnected | due min / p50 / p99 / max | wait min / p50 / p99 / max | due spread | arrived min / p50 / p99 / max | arrival spread | busiest 10 ms |",
		"| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
	}
	for _, jitter := range []time.Duration{-1, 0} {
		name := map[time.Duration]string{-1: "off", 0: "default"}[jitter]
		t.Run("jitter="+name, func(t *testing.T) {
			rows = append(rows, "| "+name+" | "+storm(t, jitter))
		})
	}
	t.Logf("reconnection after a restart. due: when a client meant to come back (its stream's end plus the retry it was sent), from the restart; "+
		"wait: from its stream's end to its request reaching the server; arrived: from the restart to that request; busiest: most requests in 10 ms\n%s", joinLines(rows))
}

func joinLines(rows []string) string {
	var b bytes.Buffer
	for _, r := range rows {
		b.WriteString(r + "\n")
	}
	return b.String()
}

// retryCatcher records the retry field a stream is sent first.
type retryCatcher struct {
	http.ResponseWriter
	record func(time.Duration)
	seen   bool
}

func (w *retryCatcher) Write(b []byte) (int, error) {
	if !w.seen {
		w.seen = true
		if v, ok := bytes.CutPrefix(b, []byte("retry: ")); ok {
			if ms, err := strconv.Atoi(string(v[:bytes.IndexByte(v, '\n')])); err == nil {
				w.record(time.Duration(ms) * time.Millisecond)
			}
		}
	}
	return w.ResponseWriter.Write(b)
}

func (w *retryCatcher) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// storm runs one restart under the clients and returns the row of its
// measurements, after the jitter column.
func storm(t *testing.T, jitter time.Duration) string {
	clients := 1000
	retry := pick(500*time.Millisecond, time.Second)
	broker := &sse.MemoryBroker{}        // outlives the Hub: the clients resume by replay
	t.Cleanup(func() { broker.Close() }) // after the server's cleanup, registered later
	newHub := func() *sse.Hub {
		return &sse.Hub{Broker: broker, Logger: quietLogger, Upgrader: sse.Upgrader{RetryTime: retry, RetryJitter: jitter, Heartbeat: -1}}
	}
	var cur atomic.Pointer[sse.Hub]
	cur.Store(newHub())

	var mu sync.Mutex
	var restartAt time.Time
	var sent []time.Duration                  // retry fields sent before the restart
	var arrived []time.Duration               // since restartAt, of the requests after it
	dropped := make([]time.Time, clients)     // when client i saw its stream end
	waited := make([]time.Duration, clients)  // from then to its new request
	retries := make([]time.Duration, clients) // the retry time client i was sent
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		restarted := !restartAt.IsZero()
		if restarted {
			now := time.Now()
			arrived = append(arrived, now.Sub(restartAt))
			if i, err := strconv.Atoi(r.Header.Get("X-Client")); err == nil && i >= 0 && i < clients && !dropped[i].IsZero() {
				waited[i] = now.Sub(dropped[i])
			}
		}
		mu.Unlock()
		cw := &retryCatcher{ResponseWriter: w, record: func(d time.Duration) {
			if !restarted {
				mu.Lock()
				sent = append(sent, d)
				if i, err := strconv.Atoi(r.Header.Get("X-Client")); err == nil && i >= 0 && i < clients {
					retries[i] = d
				}
				mu.Unlock()
			}
		}}
		cur.Load().ServeHTTP(cw, r)
	})
	url := "http://" + serveLoopback(t, handler, func() { cur.Load().Close() }) + "/?topic=t"

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	tr := &http.Transport{MaxIdleConnsPerHost: clients}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr}
	got := make([][]int64, clients)
	errs := make([]error, clients)
	var readers sync.WaitGroup
	for i := range clients {
		c := &sse.Client{
			HTTPClient: hc, MaxReconnectDelay: time.Minute,
			Header: http.Header{"X-Client": {strconv.Itoa(i)}},
			OnError: func(error) {
				mu.Lock()
				dropped[i] = time.Now()
				mu.Unlock()
			},
		}
		readers.Go(func() {
			for e, err := range c.Events(ctx, url) {
				if err != nil {
					errs[i] = err
					return
				}
				seq, _, err := parseEventData(e.Bytes())
				if err != nil {
					errs[i] = err
					return
				}
				mu.Lock()
				got[i] = append(got[i], seq)
				mu.Unlock()
				if seq == 2 {
					return
				}
			}
		})
	}
	waitFor(t, 2*time.Minute, func() bool { return cur.Load().Stats().Subscribers == clients }, "every client to connect")
	// An event first: a Client waits exactly the retry time only after a
	// stream that worked, as a browser does.
	if _, err := cur.Load().Publish(ctx, "t", sse.Message{Data: eventData(1, time.Now(), 64)}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*time.Minute, func() bool { return cur.Load().Stats().Delivered == int64(clients) }, "the first event to be queued")
	// Queued is not received: wait for every client to have it.
	waitFor(t, 2*time.Minute, func() bool {
		mu.Lock()
		defer mu.Unlock()
		for i := range got {
			if len(got[i]) == 0 && errs[i] == nil {
				return false
			}
		}
		return true
	}, "every client to receive the first event")

	// The restart: a new Hub takes the requests, and the old one drops
	// every stream at once.
	mu.Lock()
	restartAt = time.Now()
	mu.Unlock()
	old := cur.Swap(newHub())
	old.Close()
	waitFor(t, 2*time.Minute, func() bool { return cur.Load().Stats().Subscribers == clients }, "every client to come back")
	if _, err := cur.Load().Publish(ctx, "t", sse.Message{Data: eventData(2, time.Now(), 64)}); err != nil {
		t.Fatal(err)
	}
	readers.Wait()

	for i := range clients {
		if errs[i] != nil || !slices.Equal(got[i], []int64{1, 2}) {
			t.Errorf("client %d: events %v, error %v: want 1 and 2", i, got[i], errs[i])
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(arrived) != clients {
		t.Errorf("%d reconnections, want %d: one per client", len(arrived), clients)
	}
	distinct := map[time.Duration]bool{}
	for _, d := range sent {
		distinct[d] = true
		if d < retry || jitter < 0 && d != retry || d > retry*3/2 {
			t.Errorf("retry %v sent, want %v (jitter %v)", d, retry, jitter)
		}
	}
	if len(sent) != clients || jitter < 0 && len(distinct) != 1 || jitter == 0 && len(distinct) < 100 {
		t.Errorf("%d streams were sent %d distinct retry times", len(sent), len(distinct))
	}

	due := make([]time.Duration, clients) // when each client meant to come back, after the restart
	for i := range due {
		due[i] = dropped[i].Sub(restartAt) + retries[i]
	}
	slices.Sort(due)
	slices.Sort(arrived)
	slices.Sort(waited)
	quartiles := func(ds []time.Duration) string {
		q := func(p float64) time.Duration {
			return ds[min(int(p*float64(len(ds))), len(ds)-1)].Round(time.Millisecond)
		}
		return fmt.Sprintf("%v / %v / %v / %v", ds[0].Round(time.Millisecond), q(0.5), q(0.99), ds[len(ds)-1].Round(time.Millisecond))
	}
	busiest := 0
	for i, j := 0, 0; j < len(arrived); j++ {
		for arrived[j]-arrived[i] > 10*time.Millisecond {
			i++
		}
		busiest = max(busiest, j-i+1)
	}
	return fmt.Sprintf("%d (retry %v) | %d | %s | %s | %v | %s | %v | %d |", clients, retry, len(arrived),
		quartiles(due), quartiles(waited), (due[len(due)-1] - due[0]).Round(time.Millisecond),
		quartiles(arrived), (arrived[len(arrived)-1] - arrived[0]).Round(time.Millisecond), busiest)
}
