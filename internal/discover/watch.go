package discover

import (
	"context"
	"log/slog"
	"slices"
	"time"
)

const (
	// DefaultInterval is a Watcher's lookup interval when none is given.
	DefaultInterval = 30 * time.Second
	// DefaultTimeout bounds a Watcher's lookup when no timeout is given.
	DefaultTimeout = 5 * time.Second
	// minWait is the shortest wait between two lookups of one name: a TTL
	// of 1s or less does not make a watcher ask faster than this.
	minWait = time.Second
	// maxRetry bounds the wait after a failed lookup, so a long interval
	// does not leave a member without addresses for long once DNS is back.
	maxRetry = 5 * time.Second
)

// A Watcher keeps one source's endpoints current. See Watch.
type Watcher struct {
	r        Resolver
	src      Source
	interval time.Duration
	timeout  time.Duration
	log      *slog.Logger
	update   func([]Endpoint)

	ctx    context.Context // canceled by Stop, ending a lookup in flight
	cancel context.CancelFunc
	now    chan struct{}
	done   chan struct{}
}

// Watch looks src up with r at once and then again and again, on a
// goroutine of its own, and calls update with the endpoints the first time
// a lookup succeeds and then whenever they change. update runs on the
// watcher's goroutine, one call at a time; it must not call Stop. The
// slice is update's to keep.
//
// Each lookup is bounded by timeout (0: DefaultTimeout). After a lookup
// that succeeds the next comes after interval (0: DefaultInterval), or
// after the answer's TTL when that is known and shorter, though no sooner
// than 1s: a TTL never makes a watcher ask more than once a second. A lookup that fails keeps the last good set:
// update is not called, a warning is logged once per run of failures
// ("lookup failed, keeping the last good set"; name, error, kept), and the
// next lookup comes after min(interval, 5s), so a member returns quickly
// once DNS does without a struggling server being asked more often than
// the interval. The first success after failures is logged at Info.
//
// log may be nil.
func Watch(r Resolver, src Source, interval, timeout time.Duration, log *slog.Logger, update func([]Endpoint)) *Watcher {
	if interval <= 0 {
		interval = DefaultInterval
	}
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	w := &Watcher{
		r: r, src: src, interval: interval, timeout: timeout, log: log, update: update,
		now:  make(chan struct{}, 1),
		done: make(chan struct{}),
	}
	w.ctx, w.cancel = context.WithCancel(context.Background())
	go w.watch()
	return w
}

// Stop ends the watcher, and a lookup in flight, and waits for its
// goroutine to return. update is not called after Stop returns. Stop may
// be called more than once.
func (w *Watcher) Stop() {
	w.cancel() // a CancelFunc may be called again
	<-w.done
}

// Now asks for a lookup at once, rather than at the next due time (tests
// use it). It does not wait for it; asked again before the lookup
// starts, it asks for one lookup.
func (w *Watcher) Now() {
	select {
	case w.now <- struct{}{}:
	default:
	}
}

// watch is the watcher's goroutine: look up, report, wait, again.
func (w *Watcher) watch() {
	defer close(w.done)
	var (
		last    []Endpoint
		good    bool // last holds a successful lookup
		failing bool // since the last warning
	)
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-w.ctx.Done():
			return
		case <-timer.C:
		case <-w.now:
		}
		ctx, cancel := context.WithTimeout(w.ctx, w.timeout)
		eps, ttl, err := Lookup(ctx, w.r, w.src)
		cancel()
		if w.ctx.Err() != nil {
			return
		}
		var wait time.Duration
		if err != nil {
			if !failing {
				w.log.Warn("lookup failed, keeping the last good set",
					"name", w.src.String(), "error", err, "kept", len(last))
				failing = true
			}
			wait = min(w.interval, maxRetry)
		} else {
			if failing {
				w.log.Info("lookup succeeded again", "name", w.src.String(), "endpoints", len(eps))
				failing = false
			}
			if !good || !slices.Equal(eps, last) {
				last, good = eps, true
				w.update(slices.Clone(eps))
			}
			wait = nextWait(w.interval, ttl)
		}
		timer.Reset(wait)
	}
}

// nextWait is the wait after a successful lookup: the interval, or the TTL
// when known and shorter, but at least minWait.
func nextWait(interval, ttl time.Duration) time.Duration {
	if ttl > 0 && ttl < interval {
		return max(ttl, minWait)
	}
	return interval
}
