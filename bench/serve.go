package bench

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"syscall"
	"time"
)

// Echo serves ln until ctx is done. Every connection gets back every byte it
// sends; when the client half-closes, Echo half-closes too, so the client
// reads the echo to EOF. It is the upstream of every column, the same
// program for all of them.
func Echo(ctx context.Context, ln net.Listener) error {
	return serve(ctx, ln, echoConn)
}

func echoConn(c *net.TCPConn) {
	// Between two bare *net.TCPConn io.Copy splices, so the upstream costs
	// the same little CPU under every proxy.
	if _, err := io.Copy(c, c); err == nil {
		c.CloseWrite()
	}
}

// GoCopy serves ln until ctx is done as the plainest Go forwarder: for each
// client it dials upstream and runs io.Copy in each direction, one in the
// connection's goroutine and one in a second, turning a FIN into CloseWrite
// on the other side. It is the baseline pier has to beat: io.Copy between
// bare TCP conns already splices on Linux.
func GoCopy(ctx context.Context, ln net.Listener, upstream string) error {
	d := net.Dialer{Timeout: 5 * time.Second}
	return serve(ctx, ln, func(client *net.TCPConn) {
		c, err := d.DialContext(ctx, "tcp", upstream)
		if err != nil {
			return
		}
		up := c.(*net.TCPConn)
		defer up.Close()
		done := make(chan struct{})
		go func() {
			defer close(done)
			clientToUpstream(up, client)
		}()
		upstreamToClient(client, up)
		<-done
	})
}

// clientToUpstream and upstreamToClient are named so a stack dump of
// gocopy reads like its data path.
func clientToUpstream(up, client *net.TCPConn) { copyHalf(up, client) }
func upstreamToClient(client, up *net.TCPConn) { copyHalf(client, up) }

// copyHalf moves src to dst until EOF, then half-closes dst. On an error
// (a reset, say) it closes both, so the other direction ends too instead of
// waiting forever.
func copyHalf(dst, src *net.TCPConn) {
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		src.Close()
		return
	}
	dst.CloseWrite()
}

// serve accepts on ln and runs handle in a goroutine per connection, which
// it closes when handle returns. When ctx is done it closes ln and every
// open connection, and returns once all handlers have.
func serve(ctx context.Context, ln net.Listener, handle func(*net.TCPConn)) error {
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		conns  = make(map[net.Conn]struct{})
		closed bool
	)
	stop := context.AfterFunc(ctx, func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		closed = true
		for c := range conns {
			c.Close()
		}
	})
	defer stop()
	defer wg.Wait()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			// Out of descriptors: back off rather than spin, and go on
			// once some connection has closed.
			if errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			return err
		}
		mu.Lock()
		if closed {
			mu.Unlock()
			c.Close()
			return nil
		}
		conns[c] = struct{}{}
		mu.Unlock()
		wg.Go(func() {
			defer func() {
				c.Close()
				mu.Lock()
				delete(conns, c)
				mu.Unlock()
			}()
			handle(c.(*net.TCPConn))
		})
	}
}

// dial connects to addr with a bounded wait.
func dial(ctx context.Context, addr string) (*net.TCPConn, error) {
	d := net.Dialer{Timeout: 5 * time.Second}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	return c.(*net.TCPConn), nil
}

// conn is a connection of a load: a *net.TCPConn, or a *tls.Conn over one
// for a TLS target. Both half-close with CloseWrite (TLS: close_notify).
type conn interface {
	net.Conn
	CloseWrite() error
}

// dialConn connects to addr and, with conf, completes a TLS handshake
// within opTimeout.
func dialConn(ctx context.Context, addr string, conf *tls.Config) (conn, error) {
	c, err := dial(ctx, addr)
	if err != nil {
		return nil, err
	}
	if conf == nil {
		return c, nil
	}
	return handshake(ctx, c, conf)
}

// handshake runs a TLS client handshake on c within opTimeout; on failure
// it closes c.
func handshake(ctx context.Context, c *net.TCPConn, conf *tls.Config) (*tls.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	tc := tls.Client(c, conf)
	if err := tc.HandshakeContext(ctx); err != nil {
		c.Close()
		return nil, fmt.Errorf("tls handshake: %w", err)
	}
	return tc, nil
}

// TLSEcho serves ln like Echo, over TLS with cert: the direct-tls column,
// a Go TLS server with no proxy, the baseline of bench/tls. A client's
// close_notify is its half-close: TLSEcho answers with its own.
func TLSEcho(ctx context.Context, ln net.Listener, cert tls.Certificate) error {
	return tlsEcho(ctx, ln, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
}

// tlsEcho is TLSEcho with the server configuration given.
func tlsEcho(ctx context.Context, ln net.Listener, conf *tls.Config) error {
	return serve(ctx, ln, func(c *net.TCPConn) {
		tc := tls.Server(c, conf)
		hctx, cancel := context.WithTimeout(ctx, opTimeout)
		err := tc.HandshakeContext(hctx)
		cancel()
		if err != nil {
			return
		}
		buf := make([]byte, 32<<10)
		for {
			n, err := tc.Read(buf)
			if n > 0 {
				if _, werr := tc.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				if errors.Is(err, io.EOF) {
					tc.CloseWrite()
				}
				return
			}
		}
	})
}
