package relay

import (
	"fmt"
	"time"

	"golang.org/x/sys/unix"
)

// Watch makes the loop call ready, on the loop's goroutine, whenever the
// listening socket fd has clients waiting. ready accepts them and starts
// their sessions with Begin. Every loop may watch the same socket: the
// kernel wakes one of them per burst of clients (EPOLLEXCLUSIVE), and a
// loop that finds the queue already empty gets EAGAIN. Safe to call from
// any goroutine; the caller keeps fd open until Unwatch has called its
// dropped.
//
// The returned channel receives the outcome once the loop has taken the
// watch up, which a loop busy elsewhere may delay: the caller bounds its
// wait. A caller that gives up waiting calls Unwatch: the loop runs posted
// work in order, so the watch, if it is taken up late, is dropped again.
func (l *Loop) Watch(fd int, ready func(*Loop)) <-chan error {
	errc := make(chan error, 1)
	if !l.post(func() { errc <- l.watch(fd, ready) }) {
		errc <- errLoopClosed
	}
	return errc
}

func (l *Loop) watch(fd int, ready func(*Loop)) error {
	if l.finished {
		// Taken up by shutdown, which has let go of the watches: the
		// loop will never call ready.
		return errLoopClosed
	}
	i := len(l.watches)
	for j, w := range l.watches {
		if w == nil {
			i = j
			break
		}
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLEXCLUSIVE, Fd: int32(watchBase - i)}
	if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		return fmt.Errorf("relay: watch: %w", err)
	}
	w := &watch{fd: fd, ready: ready}
	if i == len(l.watches) {
		l.watches = append(l.watches, w)
	} else {
		l.watches[i] = w
	}
	return nil
}

// Unwatch stops watching fd and then calls dropped, once the loop will
// call fd's ready no more: from then on the caller may close fd. dropped
// runs on the loop's goroutine after the work queued before it, or on the
// caller's when the loop has stopped; either way it must not block. A
// stopped loop calls no ready and has let go of its watches (its epoll
// descriptor is closed, its number maybe another loop's by now), so then
// dropped is all that runs: nothing of the loop is touched off its
// goroutine.
// Unwatch itself never waits for the loop, which may be stuck (a log
// handler of an embedding program's that blocks, a filter stuck in
// Process): a caller that must
// close fd closes it in dropped rather than after a wait, so that a loop
// that has not let go yet never accepts on a closed descriptor, or on
// another socket that reused its number. Safe to call from any goroutine.
func (l *Loop) Unwatch(fd int, dropped func()) {
	if dropped == nil {
		dropped = func() {}
	}
	unwatch := func() {
		for i, w := range l.watches {
			if w != nil && w.fd == fd {
				unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, fd, nil)
				l.watches[i] = nil
			}
		}
		dropped()
	}
	l.mu.Lock()
	if l.finished {
		l.mu.Unlock()
		dropped()
		return
	}
	l.queue(unwatch)
	l.mu.Unlock()
}

// PauseWatch stops accepting on fd for d, on this loop; for ready to call
// when accepting fails for lack of resources (EMFILE), so that the loop
// does not spin on a socket that stays readable.
func (l *Loop) PauseWatch(fd int, d time.Duration) {
	for _, w := range l.watches {
		if w == nil || w.fd != fd {
			continue
		}
		if !w.paused {
			// EPOLLEXCLUSIVE entries cannot be modified: take it out
			// and put it back on resume.
			unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, fd, nil)
			w.paused = true
		}
		w.resume = max(w.resume, time.Since(l.start)+d)
	}
}

// resumeWatches re-arms the paused watches whose pause is over.
func (l *Loop) resumeWatches() {
	for i, w := range l.watches {
		if w == nil || !w.paused || w.resume > l.now {
			continue
		}
		ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLEXCLUSIVE, Fd: int32(watchBase - i)}
		if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, w.fd, &ev); err != nil {
			// Out of memory for an epoll entry: try again a little later.
			w.resume = l.now + 100*time.Millisecond
			continue
		}
		w.paused = false
	}
}

// ResumeWatches ends the pause of every paused watch on this loop at the
// end of its current turn: for the caller that paused accepting until
// something it lacked (descriptors) is given back, when it is. Call it on
// the loop's goroutine, from Done or a ready function.
func (l *Loop) ResumeWatches() {
	for _, w := range l.watches {
		if w != nil && w.paused {
			w.resume = min(w.resume, l.now)
		}
	}
}
