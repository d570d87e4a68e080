package tlsconf

import (
	"crypto/tls"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/pierproxy/pier/internal/testutil"
	"github.com/pierproxy/pier/internal/tlsconf/tlstest"
)

// scripted is a Refresher that answers from a script, then (false, last error).
type scripted struct {
	mu     sync.Mutex
	script []result
	last   error
	calls  chan struct{}
}

type result struct {
	changed bool
	err     error
}

func (s *scripted) Refresh() (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := result{err: s.last}
	if len(s.script) > 0 {
		r, s.script = s.script[0], s.script[1:]
		s.last = r.err
	}
	select {
	case s.calls <- struct{}{}:
	default:
	}
	return r.changed, r.err
}

func (s *scripted) done() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.script) == 0
}

func TestWatcherLogsReloadsAndEachFailureOnce(t *testing.T) {
	logs, log := testutil.NewLogs()
	bad, worse := errors.New("tlsconf: cert a.pem: bad"), errors.New("tlsconf: cert a.pem: worse")
	r := &scripted{calls: make(chan struct{}, 1), script: []result{
		{changed: true},
		{err: bad}, {err: bad}, {err: bad}, // one failure, refreshed three times
		{err: worse},
		{changed: true},
		{err: bad}, // failing again after a success is news
	}}
	w := NewWatcher(time.Millisecond, log)
	defer w.Stop()
	w.Set([]Refresher{r})
	deadline := time.After(10 * time.Second)
	for !r.done() {
		select {
		case <-r.calls:
		case <-deadline:
			t.Fatal("the watcher did not run the script")
		}
	}
	w.Stop()
	if n := logs.Count("tls files reloaded"); n != 2 {
		t.Errorf("%d reload lines, want 2", n)
	}
	if n := logs.Count("tls files not reloaded, keeping the old ones", "bad"); n != 2 {
		t.Errorf("%d lines for the failure repeated three times then again later, want 2", n)
	}
	if n := logs.Count("tls files not reloaded, keeping the old ones", "worse"); n != 1 {
		t.Errorf("%d lines for the changed failure, want 1", n)
	}
}

func TestWatcherStopWaitsAndSetReplaces(t *testing.T) {
	first := &scripted{calls: make(chan struct{}, 1)}
	second := &scripted{calls: make(chan struct{}, 1)}
	w := NewWatcher(time.Millisecond, discard())
	w.Set([]Refresher{first})
	waitCall(t, first.calls)
	w.Set([]Refresher{second})
	waitCall(t, second.calls)
	// Drain a call of first that may have been under way when Set returned.
	select {
	case <-first.calls:
	default:
	}
	waitCall(t, second.calls)
	select {
	case <-first.calls:
		t.Error("a Refresher no longer in the set was refreshed")
	default:
	}
	w.Stop()
	w.Stop() // twice is fine
	select {
	case <-second.calls:
	default:
	}
	select {
	case <-second.calls:
		t.Error("refreshed after Stop returned")
	default:
	}
}

func waitCall(t *testing.T, calls chan struct{}) {
	t.Helper()
	select {
	case <-calls:
	case <-time.After(10 * time.Second):
		t.Fatal("no Refresh within 10s")
	}
}

// TestWatcherServesRenewedCertificate: a certificate replaced on disk is
// served to new handshakes without anyone calling Refresh.
func TestWatcherServesRenewedCertificate(t *testing.T) {
	ca := tlstest.NewCA(t)
	old := ca.Leaf(t, tlstest.ECDSA, "www.example.com")
	srv := newServer(t, ServerSettings{Certificates: []Pair{pairOf(old)}})
	logs, log := testutil.NewLogs()
	w := NewWatcher(10*time.Millisecond, log)
	defer w.Stop()
	w.Set([]Refresher{srv})

	renewed := ca.Leaf(t, tlstest.ECDSA, "www.example.com")
	renewed.WriteTo(t, old.CertFile, old.KeyFile)
	logs.WaitFor(t, 10*time.Second, "tls files reloaded", "files="+old.CertFile)
	client := &tls.Config{ServerName: "www.example.com", RootCAs: ca.Pool}
	if got := peer(t, handshake(t, srv.Config(), client)); got != renewed.Cert.SerialNumber.String() {
		t.Error("the renewed certificate is not served")
	}
}
