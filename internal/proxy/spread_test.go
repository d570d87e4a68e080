package proxy_test

import (
	"io"
	"net"
	"slices"
	"testing"

	"github.com/pierproxy/pier/internal/proxy"
	"github.com/pierproxy/pier/internal/testutil"
)

// Clients that arrive one after another are spread over the loops: a loop
// keeps a client it accepted only while no other loop holds two sessions
// fewer. Without that, the loop the kernel wakes takes them all, and one
// core does the work of every persistent connection.
func TestSessionsSpreadOverLoops(t *testing.T) {
	up, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer up.Close()
	go func() {
		for {
			c, err := up.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
	_, log := testutil.NewRecords()
	srv, err := proxy.New(proxy.Options{Log: log, Loops: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { shutdown(t, srv) })
	if err := srv.Apply(table(t, newRoute(t, "r", up.Addr().String()))); err != nil {
		t.Fatal(err)
	}
	const clients = 16
	for i := range clients {
		c := dial(t, srv, "r")
		// An echo back means the session is relaying, on its loop.
		if _, err := c.Write([]byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
			t.Fatal(err)
		}
	}
	n := proxy.LoopSessions(srv)
	if n[0]+n[1] != clients || slices.Max(n)-slices.Min(n) > 2 {
		t.Fatalf("sessions per loop %v: want %d, at most 2 apart", n, clients)
	}
}
