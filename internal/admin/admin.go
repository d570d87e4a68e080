// Package admin serves pier's admin API over HTTP: health and readiness
// probes, Prometheus metrics, the routes, members and live sessions, and
// the calls that steer a running pier (end sessions, drain or weigh
// members, edit filters, reload, preview a config, set the log level).
//
// It stands in the application layer's reach but knows nothing of pier's
// insides: everything goes through the Control interface, which the
// application implements. It imports only the standard library.
//
//	srv := admin.New(admin.Options{Control: ctl, Metrics: h, Log: log, ListenAddr: "127.0.0.1:9901"})
//	srv.SetToken(token) // nil: no token (a loopback address only)
//	go srv.Serve(ln)
//	...
//	srv.Shutdown(ctx)
//
// Every request passes, in order: the body limit (1 MiB, 413), the bearer
// token when one is set (401), the Host check when none is (403: DNS
// rebinding), and cross-origin protection for state-changing methods
// (403: CSRF). docs/admin.md describes each endpoint.
package admin

import (
	"context"
	"crypto/sha256"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"
)

// maxBody bounds a request's body: the largest is a config file for
// /api/v1/config/check, and pier's files are a few KiB.
const maxBody = 1 << 20

// sessionWait bounds how long a sessions call waits for the relay loops
// (posted work); a loop silent that long makes the answer partial.
const sessionWait = 2 * time.Second

// Options configure a Server.
type Options struct {
	Control Control
	// Metrics serves GET /metrics; nil: 404.
	Metrics http.Handler
	// Log gets state-changing requests (Info) and the HTTP server's own
	// errors (Warn); nil: discarded.
	Log *slog.Logger
	// ListenAddr is the address the server listens on as configured
	// (host:port): without a token, a request's Host must be a loopback
	// IP, localhost, or this address's host.
	ListenAddr string
}

// Server is the admin HTTP server.
type Server struct {
	ctl     Control
	metrics http.Handler
	log     *slog.Logger
	listen  string
	token   atomic.Pointer[[sha256.Size]byte] // nil: no token
	handler http.Handler
	srv     *http.Server
}

// New builds a Server; Serve starts it.
func New(o Options) *Server {
	s := &Server{ctl: o.Control, metrics: o.Metrics, log: o.Log, listen: o.ListenAddr}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.handler = s.limitBody(s.authenticate(s.checkHost(s.crossOrigin(s.routes()))))
	s.srv = &http.Server{
		Handler: s.handler,
		// A slow or silent client holds one goroutine at most this long.
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	return s
}

// SetToken sets the bearer token every request must carry; nil or empty:
// none. Only its SHA-256 digest is kept. Safe while serving (a reload
// re-reads the token file).
func (s *Server) SetToken(token []byte) {
	if len(token) == 0 {
		s.token.Store(nil)
		return
	}
	sum := sha256.Sum256(token)
	s.token.Store(&sum)
}

// Handler is the admin API with all its checks, for a caller that serves
// it itself (and for tests).
func (s *Server) Handler() http.Handler { return s.handler }

// Serve serves ln until Shutdown, then returns nil; any other error ends
// it early.
func (s *Server) Serve(ln net.Listener) error {
	if err := s.srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// Shutdown stops accepting, waits for requests in flight until ctx ends,
// then closes what is left.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	if err != nil {
		s.srv.Close()
	}
	return err
}
