package bench

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// serverNameOf hands hello to a crypto/tls server and returns the server
// name it read from it (the handshake is stopped right there).
func serverNameOf(t *testing.T, hello []byte) string {
	t.Helper()
	var name string
	stop := errors.New("stop")
	conn := &replay{r: bytes.NewReader(hello)}
	err := tls.Server(conn, &tls.Config{GetConfigForClient: func(chi *tls.ClientHelloInfo) (*tls.Config, error) {
		name = chi.ServerName
		return nil, stop
	}}).Handshake()
	if !errors.Is(err, stop) {
		t.Fatalf("crypto/tls did not read a ClientHello: %v", err)
	}
	return name
}

// replay is a net.Conn that reads from r and drops writes.
type replay struct {
	recorder
	r io.Reader
}

func (c *replay) Read(b []byte) (int, error)  { return c.r.Read(b) }
func (c *replay) Write(b []byte) (int, error) { return len(b), nil }

// TestClientHelloNamesTheServer: the bytes ClientHello captures are one
// whole TLS handshake record that crypto/tls's server reads as a
// ClientHello for the name asked.
func TestClientHelloNamesTheServer(t *testing.T) {
	for _, name := range []string{"db.example.com", "a.b.c.example.org"} {
		hello, err := ClientHello(name)
		if err != nil {
			t.Fatal(err)
		}
		if len(hello) < 5 || hello[0] != 22 || int(hello[3])<<8|int(hello[4]) != len(hello)-5 {
			t.Fatalf("%s: not one handshake record (%d bytes, % x...)", name, len(hello), hello[:min(5, len(hello))])
		}
		if got := serverNameOf(t, hello); got != name {
			t.Errorf("server name %q, want %q", got, name)
		}
	}
	if _, err := ClientHello(""); err == nil {
		t.Error("no server name: no error")
	}
}

// helloFirst is an echo that insists on hello as the first bytes of each
// connection (as pier-sni's route does, with its upstream echoing them):
// anything else and it closes the connection at once.
func helloFirst(hello []byte) func(context.Context, net.Listener) error {
	return func(ctx context.Context, ln net.Listener) error {
		return serve(ctx, ln, func(c *net.TCPConn) {
			c.SetDeadline(time.Now().Add(opTimeout))
			first := make([]byte, len(hello))
			if _, err := io.ReadFull(c, first); err != nil || !bytes.Equal(first, hello) {
				return
			}
			c.SetDeadline(time.Time{})
			if _, err := c.Write(first); err != nil {
				return
			}
			echoConn(c)
		})
	}
}

// TestLoadsSendHelloFirst: with a Hello, CPS and RR send it first on each
// connection and read past its echo (they pass against an upstream that
// wants it first); without one, that upstream fails them, and a damaged
// echo of the hello is caught as corruption.
func TestLoadsSendHelloFirst(t *testing.T) {
	hello, err := ClientHello("db.example.com")
	if err != nil {
		t.Fatal(err)
	}
	addr := start(t, helloFirst(hello))
	with := []Target{{Column: "sni", Addr: addr, Hello: hello}}
	c := CPS(t.Context(), CPSConfig{Workers: 2, Duration: 100 * time.Millisecond}, with)
	if c[0].Error != "" || c[0].Ops == 0 || c[0].Errors != 0 {
		t.Errorf("CPS with the hello: error %q, %d ops, %d errors (%s)", c[0].Error, c[0].Ops, c[0].Errors, c[0].FirstError)
	}
	r := RR(t.Context(), RRConfig{Clients: 2, Duration: 100 * time.Millisecond}, with)
	if r[0].Error != "" || r[0].Ops == 0 || r[0].Errors != 0 {
		t.Errorf("RR with the hello: error %q, %d ops, %d errors (%s)", r[0].Error, r[0].Ops, r[0].Errors, r[0].FirstError)
	}
	without := []Target{{Column: "plain", Addr: addr}}
	if c := CPS(t.Context(), CPSConfig{Workers: 1, Duration: 50 * time.Millisecond}, without); c[0].Ops != 0 {
		t.Errorf("CPS without the hello passed %d ops against an upstream that wants one", c[0].Ops)
	}
	echo := start(t, Echo)
	bad := []Target{{Column: "bad", Hello: hello,
		Addr: start(t, mangling(echo, at(7, func(b []byte, i int) []byte { b[i] ^= 1; return b })))}}
	if r := RR(t.Context(), RRConfig{Clients: 1, Duration: 50 * time.Millisecond}, bad); r[0].Ops != 0 ||
		!strings.Contains(r[0].FirstError, ErrCorrupt.Error()) {
		t.Errorf("RR over a damaged hello echo: %d ops, first error %q", r[0].Ops, r[0].FirstError)
	}
	if c := CPS(t.Context(), CPSConfig{Workers: 1, Duration: 50 * time.Millisecond}, bad); c[0].Ops != 0 ||
		!strings.Contains(c[0].FirstError, ErrCorrupt.Error()) {
		t.Errorf("CPS over a damaged hello echo: %d ops, first error %q", c[0].Ops, c[0].FirstError)
	}
}
