package tlsconf

import (
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"
)

// A Refresher re-reads its files when they changed: *Server and *Client.
type Refresher interface{ Refresh() (bool, error) }

// DefaultWatchInterval is how often a Watcher made with none stats the
// files: a renewed certificate takes effect within a second, for the price
// of a few stat calls.
const DefaultWatchInterval = time.Second

// A Watcher calls Refresh on a set of Refreshers every interval from one
// goroutine of its own, and logs what happened: "tls files reloaded" (info)
// when a reload took effect, "tls files not reloaded, keeping the old ones"
// (warn, with the error) once per new failure, not every interval.
type Watcher struct {
	interval time.Duration
	log      *slog.Logger
	stop     chan struct{}
	done     chan struct{}
	stopOnce sync.Once

	mu      sync.Mutex
	set     []Refresher
	lastErr map[Refresher]error // the error last logged per Refresher
}

// NewWatcher starts a Watcher with an empty set; interval 0 means
// DefaultWatchInterval. Stop it.
func NewWatcher(interval time.Duration, log *slog.Logger) *Watcher {
	if interval <= 0 {
		interval = DefaultWatchInterval
	}
	w := &Watcher{
		interval: interval,
		log:      log,
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
		lastErr:  map[Refresher]error{},
	}
	go w.watchFiles()
	return w
}

// Set replaces the watched set (a reload's new routes); the next round
// refreshes the new set.
func (w *Watcher) Set(rs []Refresher) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.set = append([]Refresher(nil), rs...)
	kept := make(map[Refresher]error, len(rs))
	for _, r := range rs {
		if err, ok := w.lastErr[r]; ok {
			kept[r] = err
		}
	}
	w.lastErr = kept
}

// Stop ends the goroutine and waits for it; a Refresh under way finishes
// first. Stop may be called more than once.
func (w *Watcher) Stop() {
	w.stopOnce.Do(func() { close(w.stop) })
	<-w.done
}

func (w *Watcher) watchFiles() {
	defer close(w.done)
	tick := time.NewTicker(w.interval)
	defer tick.Stop()
	for {
		select {
		case <-w.stop:
			return
		case <-tick.C:
			w.refreshAll()
		}
	}
}

func (w *Watcher) refreshAll() {
	w.mu.Lock()
	set := w.set
	w.mu.Unlock()
	for _, r := range set {
		changed, err := r.Refresh()
		files := describe(r)
		if changed {
			w.log.Info("tls files reloaded", "files", files)
		}
		w.mu.Lock()
		last, seen := w.lastErr[r]
		switch {
		case err == nil:
			delete(w.lastErr, r)
		case slices.Contains(w.set, r): // not dropped by a Set meanwhile
			w.lastErr[r] = err
		}
		w.mu.Unlock()
		// Refresh returns the same error value while the same files fail,
		// so one failure is logged once, and again only when it changes.
		if err != nil && (!seen || last != err) {
			w.log.Warn("tls files not reloaded, keeping the old ones", "files", files, "error", err)
		}
	}
}

// describe names what r watches when it can say (Server and Client list
// their files), for the log line.
func describe(r Refresher) string {
	if s, ok := r.(fmt.Stringer); ok {
		return s.String()
	}
	return ""
}
