package bench

import (
	"context"
	"sync"
)

// Hog keeps n CPUs busy until ctx is done: n goroutines, each a loop of
// arithmetic with no system call and no memory traffic, the plainest
// stand-in for other work on a production host. bench/run -busy runs one
// per CPU beside the loads, so the figures show what a proxy does when its
// threads must compete for the cores (and a Go runtime that hands threads
// around pays for each hand-off). It returns how many chunks of work the
// goroutines did, which only shows that they ran.
func Hog(ctx context.Context, n int) int64 {
	done := ctx.Done()
	chunks := make([]int64, max(n, 1))
	last := make([]uint64, len(chunks)) // each goroutine's state, kept so its work counts
	var wg sync.WaitGroup
	for i := range chunks {
		wg.Go(func() {
			x := uint64(i) + 1
			for {
				select {
				case <-done:
					last[i] = x
					return
				default:
				}
				// About a millisecond of work between checks of ctx.
				for range 1 << 20 {
					x = x*6364136223846793005 + 1442695040888963407
				}
				chunks[i]++
			}
		})
	}
	wg.Wait()
	var sum int64
	for _, c := range chunks {
		sum += c
	}
	return sum
}
