package chat

import "time"

// SetHeartbeat changes how often idle streams get a heartbeat; call it
// before the Server serves.
func SetHeartbeat(s *Server, d time.Duration) {
	s.upgrader.Heartbeat = d
	s.hub.Upgrader.Heartbeat = d // not in use yet
}
