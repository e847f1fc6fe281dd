package bench

import "runtime"

// yield lets the goroutines a benchmark waits for run.
func yield() { runtime.Gosched() }
