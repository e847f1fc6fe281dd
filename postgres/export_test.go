package ssepostgres

// HoldReader keeps b's reader from reading until the returned func is
// called: the node lags.
func HoldReader(b *Broker) (release func()) {
	b.rmu.Lock()
	return b.rmu.Unlock
}

// AfterCatchUp makes Subscribe call f between bringing the reader up to
// date and reading the topic's head, until the test ends.
func AfterCatchUp(t interface{ Cleanup(func()) }, f func()) {
	afterCatchUp = f
	t.Cleanup(func() { afterCatchUp = nil })
}
