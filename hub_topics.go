package sse

// Subscribers returns how many subscribers topic has now: the streams that
// receive its events, those still catching up included; 0 for a topic no
// one subscribes to. It counts the streams of this Hub, not of other nodes
// that share its Broker. An application can show it as presence, or
// publish it when it changes.
func (h *Hub) Subscribers(topic string) int {
	h.init()
	h.mu.Lock()
	defer h.mu.Unlock()
	if t := h.topics[topic]; t != nil {
		return len(t.subs)
	}
	return 0
}
