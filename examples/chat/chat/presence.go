package chat

import (
	"cmp"
	"context"
	"encoding/json"
	"slices"
	"sync"
	"time"

	"github.com/b2ce5911/sse"
)

// PresenceType is the type of the events that say who is in a room.
const PresenceType = "presence"

// Presence is the payload of a presence event, as JSON: everyone in the
// room when it was sent. Each event is whole, so a client shows the last
// one it received and needs none before it.
type Presence struct {
	People []Person `json:"people"`
}

// Person is one browser tab in a room: the tab id its page made up, and the
// name it goes by.
type Person struct {
	Tab  string `json:"tab"`
	Name string `json:"name"`
}

// Room is an entry of GET /rooms.
type Room struct {
	Name string `json:"name"`
	// Streams is how many streams of the room are open now, as the Hub
	// counts them: the tabs of its people, and any other client.
	Streams int `json:"streams"`
}

// MaxRooms bounds the list of GET /rooms.
const MaxRooms = 50

// roster is who is in which room: tab → member, per room. A tab that is
// reloading may have two streams for a moment; it is still one person.
type roster struct {
	// mu is held from a change until its presence event is published, so
	// that the events of a room go out in the order of the changes and the
	// last one is the room as it is.
	mu    sync.Mutex
	rooms map[string]map[string]*member
}

type member struct {
	name    string
	streams int
}

// enter counts a stream of tab, named name, in room and publishes who is
// there now; leave undoes it.
func (s *Server) enter(room, tab, name string) {
	s.people.mu.Lock()
	defer s.people.mu.Unlock()
	if s.people.rooms == nil {
		s.people.rooms = make(map[string]map[string]*member)
	}
	r := s.people.rooms[room]
	if r == nil {
		r = make(map[string]*member)
		s.people.rooms[room] = r
	}
	m := r[tab]
	if m == nil {
		m = &member{}
		r[tab] = m
	}
	changed := m.name != name
	m.name = name
	m.streams++
	if changed || m.streams == 1 {
		s.announce(room, r)
	}
}

func (s *Server) leave(room, tab string) {
	s.people.mu.Lock()
	defer s.people.mu.Unlock()
	r := s.people.rooms[room]
	m := r[tab]
	if m == nil {
		return
	}
	if m.streams--; m.streams > 0 {
		return
	}
	delete(r, tab)
	if len(r) == 0 {
		delete(s.people.rooms, room)
	}
	s.announce(room, r)
}

// announce publishes the people of room r; the caller holds people.mu.
// The event is part of the room's history, so a page that opens or
// reconnects finds the latest among the room's recent events.
func (s *Server) announce(room string, r map[string]*member) {
	p := Presence{People: make([]Person, 0, len(r))}
	for tab, m := range r {
		p.People = append(p.People, Person{Tab: tab, Name: m.name})
	}
	slices.SortFunc(p.People, func(a, b Person) int { return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(a.Tab, b.Tab)) })
	data, err := json.Marshal(p)
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := s.publish(ctx, room, sse.Message{Type: PresenceType, Data: data}); err != nil {
		s.log.Debug("chat: presence not published", "room", room, "err", err) // shutting down
	}
}

// Rooms returns the rooms with people in them, the fullest first, at most
// MaxRooms.
func (s *Server) Rooms() []Room {
	s.people.mu.Lock()
	names := make([]string, 0, len(s.people.rooms))
	for name := range s.people.rooms {
		names = append(names, name)
	}
	s.people.mu.Unlock()
	h := s.current()
	if h == nil {
		return []Room{}
	}
	rooms := make([]Room, 0, len(names))
	for _, name := range names {
		if n := h.Subscribers(name); n > 0 {
			rooms = append(rooms, Room{Name: name, Streams: n})
		}
	}
	slices.SortFunc(rooms, func(a, b Room) int { return cmp.Or(cmp.Compare(b.Streams, a.Streams), cmp.Compare(a.Name, b.Name)) })
	return rooms[:min(len(rooms), MaxRooms)]
}
