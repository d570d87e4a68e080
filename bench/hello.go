package bench

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// ClientHello returns the first flight of a TLS client that asks for
// serverName: one ClientHello record, as crypto/tls writes it (TLS 1.2
// and 1.3 offered, the runtime's key shares, no ALPN). The pier-sni column
// sends it first on each connection so that pier routes by it; the echo
// upstream sends it back, and the load reads past it before its own
// bytes. It is captured once per target: the same bytes on every
// connection, so every connection costs pier the same parse.
func ClientHello(serverName string) ([]byte, error) {
	if serverName == "" {
		return nil, errors.New("bench: ClientHello needs a server name")
	}
	rec := &recorder{}
	err := tls.Client(rec, &tls.Config{ServerName: serverName, InsecureSkipVerify: true}).Handshake()
	if rec.buf.Len() == 0 {
		return nil, fmt.Errorf("bench: crypto/tls wrote no ClientHello: %v", err)
	}
	return rec.buf.Bytes(), nil
}

// recorder is a net.Conn that keeps what is written to it and ends the
// handshake at its first read, so all it holds is the client's first
// flight.
type recorder struct{ buf bytes.Buffer }

func (r *recorder) Write(b []byte) (int, error)     { return r.buf.Write(b) }
func (r *recorder) Read([]byte) (int, error)        { return 0, io.EOF }
func (r *recorder) Close() error                    { return nil }
func (r *recorder) LocalAddr() net.Addr             { return &net.TCPAddr{} }
func (r *recorder) RemoteAddr() net.Addr            { return &net.TCPAddr{} }
func (r *recorder) SetDeadline(time.Time) error     { return nil }
func (r *recorder) SetReadDeadline(time.Time) error { return nil }
func (r *recorder) SetWriteDeadline(t time.Time) error {
	return nil
}
