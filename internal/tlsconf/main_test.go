package tlsconf

import (
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// handshakeTimeout bounds every wait of a test handshake.
const handshakeTimeout = 10 * time.Second

// A shake is what both ends of one test connection saw.
type shake struct {
	client    tls.ConnectionState
	clientErr error // the handshake's, or reading the server's first byte
	server    tls.ConnectionState
	serverErr error
}

// handshake connects a tls.Client over 127.0.0.1 to a tls.Server, has the
// server send one byte (which makes the client read the TLS 1.3 session
// tickets sent before it) and closes, returning what each end saw.
func handshake(t *testing.T, serverCfg, clientCfg *tls.Config) shake {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type serverSide struct {
		state tls.ConnectionState
		err   error
	}
	served := make(chan serverSide, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			served <- serverSide{err: err}
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(handshakeTimeout))
		tc := tls.Server(c, serverCfg)
		err = tc.Handshake()
		if err == nil {
			_, err = tc.Write([]byte("x"))
		}
		if err == nil {
			// Until the client's close_notify: a client-certificate failure
			// in TLS 1.3 shows on the server after the first write.
			_, err = io.Copy(io.Discard, tc)
		}
		served <- serverSide{state: tc.ConnectionState(), err: err}
	}()

	var sh shake
	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	raw.SetDeadline(time.Now().Add(handshakeTimeout))
	tc := tls.Client(raw, clientCfg)
	sh.clientErr = tc.Handshake()
	if sh.clientErr == nil {
		var b [1]byte
		_, sh.clientErr = io.ReadFull(tc, b[:])
	}
	sh.client = tc.ConnectionState()
	tc.Close()
	select {
	case s := <-served:
		sh.server, sh.serverErr = s.state, s.err
	case <-time.After(handshakeTimeout):
		t.Fatal("the server side did not finish")
	}
	return sh
}

// discard is a logger for tests that do not read the log.
func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

func mustOK(t *testing.T, sh shake) {
	t.Helper()
	if sh.clientErr != nil || sh.serverErr != nil {
		t.Fatalf("handshake failed: client: %v; server: %v", sh.clientErr, sh.serverErr)
	}
}

func mustFail(t *testing.T, sh shake) {
	t.Helper()
	if sh.clientErr == nil && sh.serverErr == nil {
		t.Fatal("handshake succeeded; want it refused")
	}
	if errors.Is(sh.clientErr, io.EOF) && sh.serverErr == nil {
		t.Fatalf("client saw EOF without a server error")
	}
}

func TestHasULP(t *testing.T) {
	for _, c := range []struct {
		list string
		want bool
	}{
		{"cubic reno tls\n", true},
		{"tls", true},
		{"espintcp mptcp\n", false},
		{"tlsx ktls", false},
		{"", false},
	} {
		if got := hasULP(c.list, "tls"); got != c.want {
			t.Errorf("hasULP(%q) = %v, want %v", c.list, got, c.want)
		}
	}
	t.Logf("KernelTLS() on this machine: %v", KernelTLS())
}
