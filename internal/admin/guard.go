package admin

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// limitBody refuses a body over maxBody: at once when its length is
// declared, else when a handler reads past it (readBody answers 413).
func (s *Server) limitBody(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > maxBody {
			writeError(w, &Error{Status: http.StatusRequestEntityTooLarge, Msg: tooLarge})
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxBody)
		next.ServeHTTP(w, r)
	})
}

const tooLarge = "request body larger than 1 MiB"

// authenticate asks every request, probes and metrics included, for the
// bearer token when one is set; but for the dashboard's page and assets,
// which must load for the page to ask for the token. The digests are compared, not the
// tokens, so the comparison takes the same time whatever the length of
// the token sent.
func (s *Server) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		want := s.token.Load()
		if want == nil || isPage(r) {
			next.ServeHTTP(w, r)
			return
		}
		token, ok := bearer(r.Header.Values("Authorization"))
		got := sha256.Sum256(token)
		if !ok || subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="pier"`)
			writeError(w, &Error{Status: http.StatusUnauthorized, Msg: "a valid bearer token is required (Authorization: Bearer TOKEN)"})
			return
		}
		next.ServeHTTP(w, r)
	})
}

// bearer takes the token of one Authorization header value of the form
// "Bearer TOKEN" (RFC 6750 section 2.1: the scheme in any case, then
// spaces). More than one header, another scheme, or no token: not ok.
func bearer(values []string) (token []byte, ok bool) {
	if len(values) != 1 {
		return nil, false
	}
	v := values[0]
	const scheme = "bearer "
	if len(v) < len(scheme) || !strings.EqualFold(v[:len(scheme)], scheme) {
		return nil, false
	}
	t := strings.TrimLeft(v[len(scheme):], " ")
	if t == "" {
		return nil, false
	}
	return []byte(t), true
}

// checkHost refuses, when there is no token, a request whose Host is not
// this machine's: a web page whose name an attacker re-points at
// 127.0.0.1 (DNS rebinding) reaches a loopback server with its own name
// as Host. A token defeats that by itself (the page does not have it).
func (s *Server) checkHost(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.token.Load() == nil && !s.localHost(r.Host) {
			writeError(w, &Error{Status: http.StatusForbidden, Msg: "host " + quote(r.Host) + " not allowed: use a loopback address, localhost or the admin listen address (or set a token)"})
			return
		}
		next.ServeHTTP(w, r)
	})
}

// localHost reports whether host (a Host header: name or IP, maybe a
// port) is a loopback IP, localhost, or the listen address's host.
func (s *Server) localHost(host string) bool {
	name := hostOnly(host)
	if name == "" {
		return false
	}
	if strings.EqualFold(strings.TrimSuffix(name, "."), "localhost") {
		return true
	}
	if ip, err := netip.ParseAddr(name); err == nil && ip.Unmap().IsLoopback() {
		return true
	}
	listen := hostOnly(s.listen)
	return listen != "" && strings.EqualFold(name, listen)
}

// hostOnly is host:port's host without brackets, or host itself when it
// has no port.
func hostOnly(hostport string) string {
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		return h
	}
	return strings.TrimSuffix(strings.TrimPrefix(hostport, "["), "]")
}

// crossOrigin refuses a browser's cross-site request with a method that
// changes state (Sec-Fetch-Site, else Origin against Host); GET, HEAD and
// OPTIONS pass, and so does a request from a page the admin server
// served itself (same origin), or from a program (no such headers).
func (s *Server) crossOrigin(next http.Handler) http.Handler {
	c := http.NewCrossOriginProtection()
	c.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, &Error{Status: http.StatusForbidden, Msg: "cross-origin request refused: state-changing requests must come from the same origin or from a program"})
	}))
	return c.Handler(next)
}

// readBody reads a request's body; a body over maxBody answers 413.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	data, err := readAll(r)
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, &Error{Status: http.StatusRequestEntityTooLarge, Msg: tooLarge})
		} else {
			writeError(w, &Error{Status: http.StatusBadRequest, Msg: "reading the body: " + err.Error()})
		}
		return nil, false
	}
	return data, true
}
