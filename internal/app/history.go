package app

import (
	"sync"
	"time"
)

// historyLength is how many samples the history keeps: five minutes at
// one a second, what the dashboard's sparklines show.
const (
	historyLength   = 300
	historyInterval = time.Second
)

// history samples every route's totals once a second, so that the
// dashboard can draw the last minutes at once, not only from when it was
// opened. It reads the loops' counters as a scrape does (stats.Totals),
// never a loop itself. Memory: historyLength samples of four numbers per
// route.
type history struct {
	mu     sync.Mutex
	times  []int64 // unix seconds, oldest first
	routes map[string]*routeHistory
	last   map[string]routeSample // the previous sample's totals, for rates
	lastAt time.Time              // when it was taken

	started bool // under mu: start ran, close waits for done
	stopped bool // under mu: close ran
	stop    chan struct{}
	done    chan struct{}
}

type routeHistory struct {
	sessions, up, down []float64 // per second over each interval
	live               []int64
}

type routeSample struct {
	started, up, down uint64
}

// routeTotals is what the history reads of a route each tick.
type routeTotals struct {
	name              string
	started, up, down uint64
	live              int64
}

func newHistory() *history {
	return &history{routes: make(map[string]*routeHistory), last: make(map[string]routeSample),
		stop: make(chan struct{}), done: make(chan struct{})}
}

// start samples read every interval, on a goroutine of its own, until
// close.
func (h *history) start(read func() []routeTotals) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.started || h.stopped {
		return
	}
	h.started = true
	go h.run(read)
}

func (h *history) run(read func() []routeTotals) {
	defer close(h.done)
	t := time.NewTicker(historyInterval)
	defer t.Stop()
	for {
		select {
		case now := <-t.C:
			h.add(now, read())
		case <-h.stop:
			return
		}
	}
}

// close stops the sampling and waits for it; once is enough, more are
// harmless.
func (h *history) close() {
	h.mu.Lock()
	if h.stopped {
		h.mu.Unlock()
		return
	}
	h.stopped = true
	started := h.started
	close(h.stop)
	h.mu.Unlock()
	if started {
		<-h.done
	}
}

// add records one sample. A route seen for the first time starts its rows
// at the sample; one gone is dropped. Each row stays as long as times.
func (h *history) add(now time.Time, rs []routeTotals) {
	h.mu.Lock()
	defer h.mu.Unlock()
	// Rates are over the time since the previous sample, not the
	// nominal interval: a tick late (the sampler waited for a reload) must
	// not show as a burst.
	secs := historyInterval.Seconds()
	if !h.lastAt.IsZero() {
		if d := now.Sub(h.lastAt).Seconds(); d > 0 {
			secs = d
		}
	}
	h.lastAt = now
	h.times = append(h.times, now.Unix())
	drop := len(h.times) > historyLength
	if drop {
		h.times = h.times[1:]
	}
	seen := make(map[string]bool, len(rs))
	for _, r := range rs {
		seen[r.name] = true
		rh := h.routes[r.name]
		if rh == nil {
			n := len(h.times) - 1 // the rows before the route was seen: zeros
			rh = &routeHistory{sessions: make([]float64, n), up: make([]float64, n), down: make([]float64, n), live: make([]int64, n)}
			h.routes[r.name] = rh
		}
		prev, ok := h.last[r.name]
		if !ok || r.started < prev.started || r.up < prev.up || r.down < prev.down {
			// New, or counting afresh (a route removed and added again
			// between two samples): no rate for this interval.
			prev = routeSample{r.started, r.up, r.down}
		}
		rh.sessions = push(rh.sessions, float64(r.started-prev.started)/secs, drop)
		rh.up = push(rh.up, float64(r.up-prev.up)/secs, drop)
		rh.down = push(rh.down, float64(r.down-prev.down)/secs, drop)
		rh.live = push(rh.live, r.live, drop)
		h.last[r.name] = routeSample{r.started, r.up, r.down}
	}
	for name := range h.routes {
		if !seen[name] {
			delete(h.routes, name)
			delete(h.last, name)
		}
	}
}

func push[T any](s []T, v T, drop bool) []T {
	s = append(s, v)
	if drop && len(s) > historyLength {
		s = s[1:]
	}
	return s
}

// snapshot copies the history out: times, and each route's rows.
func (h *history) snapshot() (times []int64, routes map[string]routeHistory) {
	h.mu.Lock()
	defer h.mu.Unlock()
	routes = make(map[string]routeHistory, len(h.routes))
	for name, rh := range h.routes {
		routes[name] = routeHistory{
			sessions: append([]float64(nil), rh.sessions...),
			up:       append([]float64(nil), rh.up...),
			down:     append([]float64(nil), rh.down...),
			live:     append([]int64(nil), rh.live...),
		}
	}
	return append([]int64(nil), h.times...), routes
}
