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
// any goroutine; the caller keeps fd open until Unwatch has finished.
func (l *Loop) Watch(fd int, ready func(*Loop)) error {
	errc := make(chan error, 1)
	if !l.post(func() { errc <- l.watch(fd, ready) }) {
		return errLoopClosed
	}
	return <-errc
}

func (l *Loop) watch(fd int, ready func(*Loop)) error {
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

// Unwatch stops watching fd and returns once the loop will call its ready
// no more, so the caller may close fd. Safe to call from any goroutine but
// the loop's own.
func (l *Loop) Unwatch(fd int) {
	done := make(chan struct{})
	if !l.post(func() {
		defer close(done)
		for i, w := range l.watches {
			if w != nil && w.fd == fd {
				unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, fd, nil)
				l.watches[i] = nil
			}
		}
	}) {
		return // a closed loop watches nothing
	}
	<-done
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
