package sse_test

import (
	"context"
	"errors"
	"strings"
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

// TestMemoryBrokerPublisherIDsBelongToTheirTopic: topics that count their
// own ids do not shadow each other's.
func TestMemoryBrokerPublisherIDsBelongToTheirTopic(t *testing.T) {
	t.Parallel()
	b := &sse.MemoryBroker{}
	defer b.Close()
	ctx := context.Background()
	for _, p := range []struct{ topic, id string }{{"a", "1"}, {"a", "2"}, {"a", "3"}, {"b", "1"}} {
		if _, err := b.Publish(ctx, p.topic, sse.Message{ID: p.id, Data: []byte(p.topic + p.id)}); err != nil {
			t.Fatal(err)
		}
	}
	for _, tt := range []struct {
		topic, want string
	}{{"a", "a2a3"}, {"b", ""}} {
		got, _, err := b.Replay(ctx, []string{tt.topic}, "1")
		if err != nil {
			t.Fatalf("replay of %s after 1: %v", tt.topic, err)
		}
		var data string
		for _, e := range got {
			data += string(e.Data)
		}
		if data != tt.want {
			t.Fatalf("replay of %s after 1: %q, want %q", tt.topic, data, tt.want)
		}
	}
	// A client of both topics that resumes from "1" saw one of them: which
	// one is unknown, so it must reset rather than lose or repeat events.
	var gap *sse.HistoryGapError
	if _, _, err := b.Replay(ctx, []string{"a", "b"}, "1"); !errors.As(err, &gap) || gap.Reason != sse.GapUnknown {
		t.Fatalf("replay of a and b after 1: %v, want a gap of reason unknown", err)
	}
}

// TestMemoryBrokerGapReasons: a Replay that cannot be served says why.
func TestMemoryBrokerGapReasons(t *testing.T) {
	t.Parallel()
	b := &sse.MemoryBroker{History: 1}
	defer b.Close()
	ctx := context.Background()
	first, _ := b.Publish(ctx, "t", sse.Message{})
	b.Publish(ctx, "t", sse.Message{})
	b.Publish(ctx, "t", sse.Message{})
	epoch, _, _ := strings.Cut(first, "-")
	for _, tt := range []struct {
		after string
		want  sse.GapReason
	}{{first, sse.GapExpired}, {"nope", sse.GapUnknown}, {epoch + "-99", sse.GapUnknown}, {"ffffffff-1", sse.GapUnknown}} {
		var gap *sse.HistoryGapError
		_, _, err := b.Replay(ctx, []string{"t"}, tt.after)
		if !errors.As(err, &gap) || gap.Reason != tt.want || !errors.Is(err, sse.ErrHistoryGap) {
			t.Errorf("Replay after %q: %v, want a HistoryGapError of reason %q that is ErrHistoryGap", tt.after, err, tt.want)
		}
	}
}

// TestMemoryBrokerNewest: the newest of positions of several topics, as an
// id that replays what came after all of them.
func TestMemoryBrokerNewest(t *testing.T) {
	t.Parallel()
	b := &sse.MemoryBroker{}
	defer b.Close()
	ctx := context.Background()
	a1, _ := b.Publish(ctx, "a", sse.Message{Data: []byte("a1")})
	b1, _ := b.Publish(ctx, "b", sse.Message{ID: "own", Data: []byte("b1")})
	b.Publish(ctx, "a", sse.Message{Data: []byte("a2")})
	newest, err := b.Newest(ctx, []string{"a", "b"}, []string{a1, b1})
	if err != nil {
		t.Fatal(err)
	}
	got, _, err := b.Replay(ctx, []string{"a", "b"}, newest)
	if err != nil || len(got) != 1 || string(got[0].Data) != "a2" {
		t.Fatalf("replay after Newest(%q, %q) = %q: %v, %v; want a2 only", a1, b1, newest, got, err)
	}
}
