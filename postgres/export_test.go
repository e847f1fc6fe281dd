package ssepostgres

// HoldReader keeps b's reader from reading until the returned func is
// called: the node lags.
func HoldReader(b *Broker) (release func()) {
	b.rmu.Lock()
	return b.rmu.Unlock
}
