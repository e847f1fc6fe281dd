//go:build go1.25

package sse_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"testing"
	"testing/synctest"
	"time"

	"github.com/b2ce5911/sse"
)

func TestMemoryBrokerHistoryAge(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		b := &sse.MemoryBroker{HistoryAge: time.Minute}
		ctx := context.Background()
		old, _ := b.Publish(ctx, "t", sse.Message{Data: []byte("old")})
		time.Sleep(50 * time.Second)
		mid, _ := b.Publish(ctx, "t", sse.Message{Data: []byte("mid")})
		if got, _, err := b.Replay(ctx, []string{"t"}, old); err != nil || len(got) != 1 {
			t.Fatalf("within the age: %v, %v", got, err)
		}
		time.Sleep(20 * time.Second) // "old" is now 70 s old, "mid" 20 s
		if _, _, err := b.Replay(ctx, []string{"t"}, "x"); !errors.Is(err, sse.ErrHistoryGap) {
			t.Fatal("unknown id replayed")
		}
		// Resuming after "old" needs "mid" only, which is kept; resuming
		// from before "old" needs "old" itself, which aged out.
		if got, _, err := b.Replay(ctx, []string{"t"}, old); err != nil || len(got) != 1 || string(got[0].Data) != "mid" {
			t.Fatalf("after old: %v, %v", got, err)
		}
		time.Sleep(time.Minute)
		if _, _, err := b.Replay(ctx, []string{"t"}, old); !errors.Is(err, sse.ErrHistoryGap) {
			t.Fatalf("after mid aged out too: %v, want ErrHistoryGap", err)
		}
		if got, _, err := b.Replay(ctx, []string{"t"}, mid); err != nil || len(got) != 0 {
			t.Fatalf("from the newest: %v, %v", got, err)
		}
	})
}

// TestMemoryBrokerAgedOutTopicResets: when every event of a topic aged out
// and a subscriber came and went, a client that missed some is still told
// to reset, then and once the topic is forgotten.
func TestMemoryBrokerAgedOutTopicResets(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		b := &sse.MemoryBroker{HistoryAge: time.Minute}
		defer b.Close()
		ctx := context.Background()
		e1, _ := b.Publish(ctx, "t", sse.Message{Data: []byte("e1")})
		e2, _ := b.Publish(ctx, "t", sse.Message{Data: []byte("e2")})
		time.Sleep(2 * time.Minute)
		sub, leave := context.WithCancel(ctx)
		b.Subscribe(sub, "t", func(sse.Entry) {})
		if got, _, err := b.Replay(ctx, []string{"t"}, e2); err != nil || len(got) != 0 {
			t.Fatalf("from the newest: %v, %v; want nothing, and no gap", got, err)
		}
		leave()
		synctest.Wait()
		for _, wait := range []time.Duration{0, time.Hour} {
			time.Sleep(wait)
			if _, _, err := b.Replay(ctx, []string{"t"}, e1); !errors.Is(err, sse.ErrHistoryGap) {
				t.Fatalf("after %v more: missed e2, which aged out: %v, want ErrHistoryGap", wait, err)
			}
			if got, _, err := b.Replay(ctx, []string{"t"}, e2); err != nil || len(got) != 0 {
				t.Fatalf("after %v more: from the newest: %v, %v; want nothing, and no gap", wait, got, err)
			}
		}
	})
}

// TestMemoryBrokerFreesIdleTopics: with HistoryAge, events that aged out
// are freed even if their topic never publishes again. Not parallel: it
// measures the heap.
func TestMemoryBrokerFreesIdleTopics(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := &sse.MemoryBroker{HistoryAge: 50 * time.Millisecond}
		defer b.Close()
		ctx := context.Background()
		before := liveHeap()
		// 128 MB, so that what other tests' goroutines allocate or free
		// while they end (a few MB) cannot pass for the events or hide them.
		data := make([]byte, 64<<10)
		for i := range 2000 {
			if _, err := b.Publish(ctx, fmt.Sprint("job-", i), sse.Message{Data: data}); err != nil {
				t.Fatal(err)
			}
		}
		if grown := liveHeap() - before; grown < 64<<20 {
			t.Fatalf("heap grew by %d bytes holding 2,000 events of 64 KiB: the measure is wrong", grown)
		}
		time.Sleep(time.Second)
		// A quarter of what was held; the events kept would be all 128 MB.
		if grown := liveHeap() - before; grown > 32<<20 {
			t.Fatalf("heap still %d bytes larger long after every event aged out", grown)
		}
	})
}

func liveHeap() int64 {
	runtime.GC()
	runtime.GC() // what the first cycle's finalizers and sweeps let go
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}
