package relay

import (
	"log/slog"
	"net"
	"testing"
	"time"
)

// watchWait bounds every wait in this file: far beyond what a healthy loop needs.
const watchWait = 10 * time.Second

// Unwatch never waits for the loop: with the loop stuck (in a log handler
// that blocks, say) it returns at once, and calls dropped only once the
// loop is back and can no longer call ready. On a loop that has stopped,
// dropped runs at once. Watch, likewise, returns a channel the caller
// waits on with a bound of its own.
func TestUnwatchNeverWaitsForTheLoop(t *testing.T) {
	l, err := New(slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ran := make(chan error, 1)
	go func() { ran <- l.Run() }()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	f, err := ln.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fd := int(f.Fd())
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

	l.Close()
	if err := <-ran; err != nil {
		t.Error(err)
	}
	after := false
	l.Unwatch(fd, func() { after = true })
	if !after {
		t.Error("Unwatch on a stopped loop did not call dropped at once")
	}
	if err := <-l.Watch(fd, func(*Loop) {}); err == nil {
		t.Error("a stopped loop took up a watch")
	}
}
