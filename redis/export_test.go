package sseredis

// ReadScript is the reader's script, for tests that hold the reader's
// rounds but not Replay or Recent, which are scripts too.
var ReadScript = readScript
