package bench

import (
	"context"
	"fmt"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"time"
)

// InProc is n in-process subscribers of one library's Server, each served
// on a Discard by the library's own handler: the publish benchmark.
type InProc struct {
	Server Server
	Sinks  []*Discard
	total  atomic.Int64
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// NewInProc starts n subscribers of lib and returns once every one of them
// has received an event and the deliveries have settled.
func NewInProc(lib string, n int) (*InProc, error) {
	srv, err := NewServer(lib)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &InProc{Server: srv, Sinks: make([]*Discard, n), cancel: cancel}
	for i := range p.Sinks {
		w := NewDiscard(&p.total)
		p.Sinks[i] = w
		req := httptest.NewRequest("GET", StreamPath, nil).WithContext(ctx)
		p.wg.Add(1)
		go func() { defer p.wg.Done(); srv.ServeHTTP(w, req) }()
	}
	// Subscribers register asynchronously: publish until all have one.
	deadline := time.Now().Add(10 * time.Second)
	for !p.allReceived() {
		if time.Now().After(deadline) {
			p.Close()
			return nil, fmt.Errorf("%s: %d subscribers not all registered in 10 s", lib, n)
		}
		if err := srv.Publish([]byte("warm-up")); err != nil {
			p.Close()
			return nil, err
		}
		time.Sleep(time.Millisecond)
	}
	// Let what is in flight land, so that Delivered counts from here.
	for last := int64(-1); last != p.total.Load(); {
		last = p.total.Load()
		time.Sleep(20 * time.Millisecond)
	}
	return p, nil
}

func (p *InProc) allReceived() bool {
	for _, w := range p.Sinks {
		if w.Events.Load() == 0 {
			return false
		}
	}
	return true
}

// Delivered is how many events all the subscribers have written in all.
func (p *InProc) Delivered() int64 { return p.total.Load() }

// WaitDelivered waits until Delivered reaches want, or fails after timeout.
func (p *InProc) WaitDelivered(want int64, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for p.total.Load() < want {
		if time.Now().After(deadline) {
			return fmt.Errorf("delivered %d events, want %d", p.total.Load(), want)
		}
		time.Sleep(50 * time.Microsecond)
	}
	return nil
}

// Close ends the subscribers and the server.
func (p *InProc) Close() {
	p.cancel()
	p.wg.Wait()
	p.Server.Close()
}
