package admin

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// TestMain fails the package if a goroutine outlives its tests: a
// server's or a client connection's.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// wait bounds every wait of these tests.
const wait = 10 * time.Second

// fakeControl answers what its fields say and records each call with its
// arguments, so a test checks both the answer and what reached pier.
type fakeControl struct {
	mu    sync.Mutex
	calls []string

	ready    bool
	why      string
	routes   []Route
	page     SessionPage
	query    SessionQuery  // the last Sessions or EndSessions query
	deadline time.Duration // how far the last sessions call's ctx deadline was
	err      error         // returned by every method that returns an error
	ended    int
	member   Member
	steering Steering // the last Steer's
	filters  []Filter
	edit     FilterEdit // the last EditFilters'
	overlay  Overlay
	reload   ReloadResult
	checked  []byte // the last Check's
	preview  Preview
	// filePreview is PreviewReload's answer.
	filePreview Preview
	config      map[string][]byte
	level       slog.Level
	history     History
	ends        EndsPage
	endsQ       EndsQuery // the last Ends query
	specs       []FilterSpec
	clients     ClientsPage
	clientsQ    ClientsQuery // the last Clients query
}

func (f *fakeControl) record(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, fmt.Sprintf(format, args...))
}

// Calls returns the calls so far and forgets them.
func (f *fakeControl) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.calls
	f.calls = nil
	return c
}

func (f *fakeControl) since(ctx context.Context) time.Duration {
	d, ok := ctx.Deadline()
	if !ok {
		return -1
	}
	return time.Until(d)
}

func (f *fakeControl) Ready() (bool, string) { f.record("Ready"); return f.ready, f.why }
func (f *fakeControl) Routes() []Route       { f.record("Routes"); return f.routes }

func (f *fakeControl) Sessions(ctx context.Context, q SessionQuery) (SessionPage, error) {
	f.record("Sessions")
	f.mu.Lock()
	f.query, f.deadline = q, f.since(ctx)
	f.mu.Unlock()
	return f.page, f.err
}

func (f *fakeControl) EndSession(ctx context.Context, id uint64, mode string) error {
	f.record("EndSession %d %s", id, mode)
	f.mu.Lock()
	f.deadline = f.since(ctx)
	f.mu.Unlock()
	return f.err
}

func (f *fakeControl) EndSessions(ctx context.Context, q SessionQuery, mode string) (int, error) {
	f.record("EndSessions %s", mode)
	f.mu.Lock()
	f.query, f.deadline = q, f.since(ctx)
	f.mu.Unlock()
	return f.ended, f.err
}

func (f *fakeControl) Steer(route, member string, s Steering) (Member, error) {
	f.record("Steer %s %s", route, member)
	f.mu.Lock()
	f.steering = s
	f.mu.Unlock()
	return f.member, f.err
}

func (f *fakeControl) Filters(route string) ([]Filter, error) {
	f.record("Filters %s", route)
	return f.filters, f.err
}

func (f *fakeControl) EditFilters(route string, e FilterEdit) ([]Filter, error) {
	f.record("EditFilters %s %s %d", route, e.Op, e.Index)
	f.mu.Lock()
	f.edit = e
	f.mu.Unlock()
	return f.filters, f.err
}

func (f *fakeControl) Overlay() Overlay { f.record("Overlay"); return f.overlay }

func (f *fakeControl) DropOverlay() (Overlay, error) {
	f.record("DropOverlay")
	return f.overlay, f.err
}

func (f *fakeControl) Reload() ReloadResult { f.record("Reload"); return f.reload }

func (f *fakeControl) Check(yaml []byte) Preview {
	f.record("Check")
	f.mu.Lock()
	f.checked = yaml
	f.mu.Unlock()
	return f.preview
}

func (f *fakeControl) PreviewReload() Preview {
	f.record("PreviewReload")
	return f.filePreview
}

func (f *fakeControl) Config(format string) ([]byte, error) {
	f.record("Config %s", format)
	return f.config[format], f.err
}

func (f *fakeControl) LogLevel() slog.Level { f.record("LogLevel"); return f.level }

func (f *fakeControl) SetLogLevel(l slog.Level) {
	f.record("SetLogLevel %s", l)
	f.mu.Lock()
	f.level = l
	f.mu.Unlock()
}

func (f *fakeControl) History() History { f.record("History"); return f.history }

func (f *fakeControl) Clients(q ClientsQuery) (ClientsPage, error) {
	f.record("Clients %s %d", q.Route, q.Limit)
	f.mu.Lock()
	f.clientsQ = q
	f.mu.Unlock()
	return f.clients, f.err
}

func (f *fakeControl) Ends(ctx context.Context, q EndsQuery) (EndsPage, error) {
	f.record("Ends")
	f.mu.Lock()
	f.endsQ, f.deadline = q, f.since(ctx)
	f.mu.Unlock()
	return f.ends, f.err
}

func (f *fakeControl) FilterSpecs() []FilterSpec { f.record("FilterSpecs"); return f.specs }

// served is an admin server on 127.0.0.1:0 and a client for it.
type served struct {
	*Server
	ctl    *fakeControl
	base   string // http://127.0.0.1:port
	addr   string // 127.0.0.1:port
	client *http.Client
}

// serve starts s.Serve on a loopback listener; the test's cleanup shuts it
// down and waits for Serve to return.
func serve(t *testing.T, ctl *fakeControl, o Options) *served {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	o.Control = ctl
	if o.ListenAddr == "" {
		o.ListenAddr = ln.Addr().String()
	}
	s := New(o)
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	tr := &http.Transport{}
	t.Cleanup(func() {
		tr.CloseIdleConnections()
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve after Shutdown: %v, want nil", err)
			}
		case <-time.After(wait):
			t.Error("Serve did not return after Shutdown")
		}
	})
	return &served{Server: s, ctl: ctl, base: "http://" + ln.Addr().String(), addr: ln.Addr().String(),
		client: &http.Client{Transport: tr, Timeout: wait}}
}
