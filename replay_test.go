package sse_test

import (
	"context"
	"errors"
	"testing"

	"github.com/b2ce5911/sse"
)

func TestMemoryBrokerReplayOrderAcrossTopics(t *testing.T) {
	t.Parallel()
	b := &sse.MemoryBroker{}
	ctx := context.Background()
	var ids []string
	for i, topic := range []string{"a", "b", "a", "c", "b"} {
		id, err := b.Publish(ctx, topic, sse.Message{Data: []byte{byte('0' + i)}})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	got, heads, err := b.Replay(ctx, []string{"b", "a", "none"}, ids[0])
	if err != nil {
		t.Fatal(err)
	}
	if len(heads) != 3 || heads[0] != ids[4] || heads[1] != ids[2] || heads[2] == "" {
		t.Fatalf("heads %q: want the newest of b and a, and a position for none", heads)
	}
	var data, topics string
	for _, e := range got {
		data += string(e.Data)
		topics += e.Topic
	}
	if data != "124" || topics != "bab" {
		t.Fatalf("replay %q on %q, want 124 on bab, in publish order", data, topics)
	}
	if _, _, err := b.Replay(ctx, []string{"a"}, "nope"); !errors.Is(err, sse.ErrHistoryGap) {
		t.Fatalf("unknown id: %v", err)
	}
}

func TestMemoryBrokerCopiesData(t *testing.T) {
	t.Parallel()
	b := &sse.MemoryBroker{}
	ctx := context.Background()
	first, _ := b.Publish(ctx, "t", sse.Message{Data: []byte("x")})
	data := []byte("original")
	b.Publish(ctx, "t", sse.Message{Data: data})
	copy(data, "CHANGED!")
	got, _, err := b.Replay(ctx, []string{"t"}, first)
	if err != nil || len(got) != 1 || string(got[0].Data) != "original" {
		t.Fatalf("replay %v, %v: the broker must keep its own copy", got, err)
	}
}

func TestMemoryBrokerSubscribeNewest(t *testing.T) {
	t.Parallel()
	b := &sse.MemoryBroker{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	start, err := b.Subscribe(ctx, "t", func(sse.Entry) {})
	if err != nil || start == "" {
		t.Fatalf("empty topic: position %q, %v; want a position", start, err)
	}
	id, _ := b.Publish(ctx, "t", sse.Message{})
	var fed []string
	newest, _ := b.Subscribe(ctx, "t", func(e sse.Entry) { fed = append(fed, e.ID) })
	id2, _ := b.Publish(ctx, "t", sse.Message{})
	if newest != id || len(fed) != 1 || fed[0] != id2 {
		t.Fatalf("newest %q (want %q), fed %q (want only %q)", newest, id, fed, id2)
	}
	if got, _, err := b.Replay(ctx, []string{"t"}, start); err != nil || len(got) != 2 || got[0].ID != id {
		t.Fatalf("replay from the empty topic's position: %v, %v", got, err)
	}
	b.Close()
	if _, err := b.Publish(ctx, "t", sse.Message{}); err == nil {
		t.Fatal("Publish after Close succeeded")
	}
}
