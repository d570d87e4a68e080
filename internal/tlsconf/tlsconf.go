// Package tlsconf turns a route's TLS settings into crypto/tls configurations:
// certificates chosen by SNI and re-read when their files change, rotating
// session-ticket keys, and per-member client configurations with session resumption.
//
// It stands between the config (which parses the YAML into ServerSettings and
// ClientSettings) and the relay (which handshakes with the *tls.Config values
// it is given). Nothing here runs on a relay loop: files are read by NewServer,
// NewClient and Refresh, which a Watcher calls from its own goroutine; the
// hooks a handshake calls (GetCertificate, GetConfigForClient,
// VerifyConnection, GetClientCertificate) only load an atomic pointer.
//
//	srv, err := tlsconf.NewServer(tlsconf.ServerSettings{
//		Certificates: []tlsconf.Pair{{Cert: "site.pem", Key: "site.key"}},
//	}, log)
//	w := tlsconf.NewWatcher(0, log) // re-reads changed files every second
//	w.Set([]tlsconf.Refresher{srv})
//	defer w.Stop()
//	conn := tls.Server(raw, srv.Config())
package tlsconf

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
)

// Pair names the PEM files of a certificate (with its chain) and its key.
type Pair struct{ Cert, Key string }

// ErrSettings marks settings that can never work (no certificate, half a
// client pair, ...): fix the configuration.
var ErrSettings = errors.New("tlsconf: bad settings")

// A fileStamp tells whether a file changed since it was read: a renewal job
// that renames a new file over the old one changes the inode, one that
// rewrites it in place changes the size or the modification time.
type fileStamp struct {
	size  int64
	mtime int64 // nanoseconds
	ino   uint64
	dev   uint64
	err   string // why stat failed; "" when it did not
}

func stampOf(path string) fileStamp {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{err: err.Error()}
	}
	s := fileStamp{size: fi.Size(), mtime: fi.ModTime().UnixNano()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		s.ino, s.dev = st.Ino, uint64(st.Dev)
	}
	return s
}

// A watched remembers the stamps of a group of files (a pair, a CA bundle) as
// last loaded, and as last failed to load, so an unchanged bad file is not
// parsed again every second and reports the same error value (a Watcher logs
// a failure once per change by comparing error values).
type watched struct {
	paths   []string
	loaded  []fileStamp
	failed  []fileStamp // nil: the last attempt did not fail
	failErr error
}

func newWatched(paths ...string) *watched {
	w := &watched{paths: paths}
	w.loaded = w.stamps()
	return w
}

func (w *watched) stamps() []fileStamp {
	s := make([]fileStamp, len(w.paths))
	for i, p := range w.paths {
		s[i] = stampOf(p)
	}
	return s
}

// check stats the files and calls load when any changed since the last load
// or the last failure. It reports whether load ran and succeeded, and the
// error of the files as they are now (the remembered one when they are still
// the ones that failed).
func (w *watched) check(load func() error) (changed bool, err error) {
	now := w.stamps()
	if equalStamps(now, w.loaded) {
		w.failed, w.failErr = nil, nil
		return false, nil
	}
	if w.failed != nil && equalStamps(now, w.failed) {
		return false, w.failErr
	}
	if err := load(); err != nil {
		w.failed, w.failErr = now, err
		return false, err
	}
	w.loaded, w.failed, w.failErr = now, nil, nil
	return true, nil
}

func equalStamps(a, b []fileStamp) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// An errSet joins the errors of one Refresh: nil, the only one, or all of
// them. It returns the previous value unchanged when the parts are the same
// values, so the error stays the same while the same files keep failing.
type errSet struct {
	parts  []error
	joined error
}

func (e *errSet) set(errs []error) error {
	if len(errs) == len(e.parts) {
		same := true
		for i := range errs {
			if errs[i] != e.parts[i] {
				same = false
				break
			}
		}
		if same {
			return e.joined
		}
	}
	e.parts = errs
	switch len(errs) {
	case 0:
		e.joined = nil
	case 1:
		e.joined = errs[0]
	default:
		e.joined = errors.Join(errs...)
	}
	return e.joined
}

// KernelTLS reports whether the kernel offers the "tls" upper-layer protocol
// (kTLS), which would let a terminated session move record encryption into
// the kernel and splice again. pier detects it but always uses crypto/tls in
// user space today.
func KernelTLS() bool {
	b, err := os.ReadFile("/proc/sys/net/ipv4/tcp_available_ulp")
	if err != nil {
		return false
	}
	return hasULP(string(b), "tls")
}

func hasULP(list, name string) bool {
	for _, f := range strings.Fields(list) {
		if f == name {
			return true
		}
	}
	return false
}

func fileErr(what, path string, err error) error {
	return fmt.Errorf("tlsconf: %s %s: %w", what, path, err)
}
