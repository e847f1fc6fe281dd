//go:build go1.25

package sse_test

import (
	"context"
	"errors"
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
