package relay

import (
	"log/slog"
	"net"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// watchWait bounds every wait in this file: far beyond what a healthy loop needs.
const watchWait = 10 * time.Second

// Unwatch never waits for the loop: with the loop stuck (in a log handler
// that blocks, say) it returns at once, and calls dropped only once the
// loop is back and can no longer call ready. On a loop that has stopped,
// dropped runs at once. Watch, likewise, returns a channel the caller
// waits on with a bound of its own.
func TestUnwatchNeverWaitsForTheLoop(t *testing.T) {
	l, stop := startLoop(t)
	_, fd := listenerFD(t)
	select {
	case err := <-l.Watch(fd, func(*Loop) {}):
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(watchWait):
		t.Fatal("a healthy loop did not take up a watch")
	}

	// Stick the loop, as a log handler that blocks would.
	stuck, unstick := make(chan struct{}), make(chan struct{})
	l.post(func() {
		close(stuck)
		<-unstick
	})
	<-stuck
	watched := l.Watch(fd+1000, func(*Loop) {}) // answered only when the loop is back
	dropped := make(chan struct{})
	returned := make(chan struct{})
	go func() {
		l.Unwatch(fd, func() { close(dropped) })
		close(returned)
	}()
	select {
	case <-returned:
	case <-time.After(watchWait):
		close(unstick)
		t.Fatal("Unwatch waits for a stuck loop")
	}
	select {
	case <-dropped:
		t.Fatal("dropped ran while the loop may still call ready")
	case <-watched:
		t.Fatal("a stuck loop answered Watch")
	default:
	}
	close(unstick)
	select {
	case <-dropped:
	case <-time.After(watchWait):
		t.Fatal("dropped never ran once the loop was back")
	}
	select {
	case err := <-watched:
		if err == nil {
			t.Error("watching a descriptor that is not open succeeded")
		}
	case <-time.After(watchWait):
		t.Error("Watch never answered once the loop was back")
	}

	stop()
	after := false
	l.Unwatch(fd, func() { after = true })
	if !after {
		t.Error("Unwatch on a stopped loop did not call dropped at once")
	}
	if err := <-l.Watch(fd, func(*Loop) {}); err == nil {
		t.Error("a stopped loop took up a watch")
	}
}

// A stopped loop's epoll descriptor is closed, and its number may belong
// to another loop's epoll by the time an Unwatch comes: Unwatch on a
// stopped loop must then touch nothing, or it takes the other loop's watch
// of the same listener away and that loop never accepts again.
func TestUnwatchOnStoppedLoopSparesAnotherLoop(t *testing.T) {
	ln, fd := listenerFD(t)

	a, stopA := startLoop(t)
	if err := <-a.Watch(fd, func(*Loop) {}); err != nil {
		t.Fatal(err)
	}
	stopA()
	if t.Failed() {
		t.FailNow() // a's Run failed
	}

	b, err := New(slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if b.epfd != a.epfd {
		// Give b's epoll the number a's had, as the kernel would have
		// if nothing else had opened a descriptor in between.
		if err := unix.Dup3(b.epfd, a.epfd, unix.O_CLOEXEC); err != nil {
			t.Fatal(err)
		}
		unix.Close(b.epfd)
		b.epfd = a.epfd
	}
	ranB := make(chan error, 1)
	go func() { ranB <- b.Run() }()
	defer func() {
		dropped := make(chan struct{})
		b.Unwatch(fd, func() { close(dropped) })
		<-dropped
		b.Close()
		if err := <-ranB; err != nil {
			t.Error(err)
		}
	}()
	accepted := make(chan struct{}, 1)
	if err := <-b.Watch(fd, func(*Loop) {
		for {
			nfd, _, err := unix.Accept4(fd, unix.SOCK_CLOEXEC)
			if err != nil {
				return
			}
			unix.Close(nfd)
			select {
			case accepted <- struct{}{}:
			default:
			}
		}
	}); err != nil {
		t.Fatal(err)
	}

	dropped := false
	a.Unwatch(fd, func() { dropped = true })
	if !dropped {
		t.Fatal("Unwatch on a stopped loop did not call dropped at once")
	}
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	select {
	case <-accepted:
	case <-time.After(watchWait):
		t.Fatal("the other loop stopped accepting: Unwatch on a stopped loop removed its watch")
	}
}
