package app

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pierproxy/pier/internal/admin"
	"github.com/pierproxy/pier/internal/testutil"
)

// adminPier is a Daemon with its admin server on 127.0.0.1:0, and a
// client for its API.
type adminPier struct {
	t    *testing.T
	d    *Daemon
	base string
	logs *testutil.Logs
	auth string // the bearer token sent, if any
}

func startAdmin(t *testing.T, doc string, opts Options) *adminPier {
	t.Helper()
	logs, log := testutil.NewLogs()
	if opts.Log == nil {
		opts.Log = log
	}
	if opts.Level == nil {
		opts.Level = new(slog.LevelVar)
	}
	d, err := Start(parse(t, doc), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Stop(context.Background()) })
	a := d.AdminAddr()
	if a == nil {
		t.Fatal("no admin server")
	}
	return &adminPier{t: t, d: d, base: "http://" + a.String(), logs: logs}
}

// do sends a request and returns the status and body.
func (p *adminPier) do(method, path, body string) (int, []byte) {
	p.t.Helper()
	req, err := http.NewRequest(method, p.base+path, strings.NewReader(body))
	if err != nil {
		p.t.Fatal(err)
	}
	if p.auth != "" {
		req.Header.Set("Authorization", "Bearer "+p.auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		p.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		p.t.Fatal(err)
	}
	return resp.StatusCode, b
}

// want sends a request, checks its status and decodes its JSON into v.
func (p *adminPier) want(status int, method, path, body string, v any) {
	p.t.Helper()
	got, b := p.do(method, path, body)
	if got != status {
		p.t.Fatalf("%s %s: %d %s, want %d", method, path, got, b, status)
	}
	if v != nil {
		if err := json.Unmarshal(b, v); err != nil {
			p.t.Fatalf("%s %s: %v in %s", method, path, err, b)
		}
	}
}

func routeDoc(admin string, routes ...string) string {
	return "admin: {" + admin + "}\nroutes:\n" + strings.Join(routes, "")
}

func oneRoute(name, upstream, extra string) string {
	return fmt.Sprintf("  - name: %s\n    listen: [\"127.0.0.1:0\"]\n    upstreams: [{address: %q}]\n%s", name, upstream, extra)
}

// dialEcho opens a session through addr and checks one echo.
func dialEcho(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	roundTrip(t, c)
	return c
}

// roundTrip writes a line and reads it back, and says how long it took.
func roundTrip(t *testing.T, c net.Conn) time.Duration {
	t.Helper()
	start := time.Now()
	c.SetDeadline(time.Now().Add(wait))
	if _, err := c.Write([]byte("ping\n")); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 5)
	if _, err := io.ReadFull(c, got); err != nil || string(got) != "ping\n" {
		t.Fatalf("echo: %q, %v", got, err)
	}
	return time.Since(start)
}

type sessionsAnswer struct {
	Sessions []struct {
		ID              uint64 `json:"id"`
		Route           string `json:"route"`
		State           string `json:"state"`
		BytesToUpstream int64  `json:"bytes_to_upstream"`
	} `json:"sessions"`
	Matched int     `json:"matched"`
	Next    *string `json:"next"`
	Partial bool    `json:"partial"`
}

// The whole loop through the API: a live session is listed with its
// bytes, and ending it closes the client's connection with reason=admin.
func TestAdminListsAndEndsASession(t *testing.T) {
	up := testutil.NewUpstream(t, testutil.Echo)
	p := startAdmin(t, routeDoc(`listen: "127.0.0.1:0"`, oneRoute("r", up.Addr(), "")), Options{})
	p.want(200, "GET", "/healthz", "", nil)
	p.want(200, "GET", "/readyz", "", nil)

	c := dialEcho(t, p.d.Addrs("r")[0].String())
	var got sessionsAnswer
	p.want(200, "GET", "/api/v1/sessions?route=r&limit=1", "", &got)
	if got.Next != nil {
		t.Fatalf("one session, a page of one: next is %q, want null", *got.Next)
	}
	if len(got.Sessions) != 1 || got.Sessions[0].State != "open" || got.Sessions[0].BytesToUpstream != 5 {
		t.Fatalf("sessions: %+v", got)
	}
	id := got.Sessions[0].ID
	p.want(204, "DELETE", fmt.Sprintf("/api/v1/sessions/%d?mode=close", id), "", nil)
	c.SetReadDeadline(time.Now().Add(wait))
	if n, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("the client read %d, %v after the session was ended; want EOF", n, err)
	}
	p.logs.WaitFor(t, wait, fmt.Sprintf("id=%d", id), "reason=admin")
	p.want(404, "DELETE", fmt.Sprintf("/api/v1/sessions/%d", id), "", nil)
}

// Draining a member through the API stops new sessions to it; a reload
// of the same file keeps the drain (the overlay), and dropping the
// overlay undoes it.
func TestAdminDrainKeptOnReload(t *testing.T) {
	up := testutil.NewUpstream(t, testutil.Echo)
	dir := t.TempDir()
	file := filepath.Join(dir, "pier.yaml")
	doc := routeDoc(`listen: "127.0.0.1:0"`, oneRoute("r", up.Addr(), ""))
	if err := os.WriteFile(file, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startAdmin(t, doc, Options{ConfigFile: file})
	addr := p.d.Addrs("r")[0].String()
	member := up.Addr()

	var m struct {
		Draining bool `json:"draining"`
	}
	p.want(200, "POST", "/api/v1/routes/r/members/"+member+"/drain", "", &m)
	if !m.Draining {
		t.Fatal("the member's answer does not say draining")
	}
	refused := func() bool {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(wait))
		c.Write([]byte("ping\n"))
		_, err = c.Read(make([]byte, 1))
		return err != nil
	}
	if !refused() {
		t.Fatal("a drained member still took a new session")
	}
	p.logs.WaitFor(t, wait, "reason=no_upstream")

	var rr struct {
		OK      bool `json:"ok"`
		Overlay struct {
			Kept []string `json:"kept"`
		} `json:"overlay"`
	}
	p.want(200, "POST", "/api/v1/reload", "", &rr)
	if !rr.OK || len(rr.Overlay.Kept) != 1 {
		t.Fatalf("reload: %+v", rr)
	}
	p.logs.WaitFor(t, wait, "overlay kept on reload", "kept=1")
	if !refused() {
		t.Fatal("after a reload the drained member took a new session")
	}

	p.want(200, "DELETE", "/api/v1/overlay", "", nil)
	dialEcho(t, addr)
}

// A latency filter added through the API reaches a session already open,
// and removing it takes it away again, on the same connection.
func TestAdminFilterReachesLiveSession(t *testing.T) {
	up := testutil.NewUpstream(t, testutil.Echo)
	p := startAdmin(t, routeDoc(`listen: "127.0.0.1:0"`, oneRoute("r", up.Addr(), "")), Options{})
	c := dialEcho(t, p.d.Addrs("r")[0].String())

	const delay = 150 * time.Millisecond
	p.want(200, "POST", "/api/v1/routes/r/filters", `[{"latency": {"delay": "150ms"}}]`, nil)
	// The idle session takes the new set up at once, before any byte
	// moves: the listing shows it running the filter.
	deadline := time.Now().Add(wait)
	for {
		var got struct {
			Sessions []struct {
				Filters []string `json:"filters"`
			} `json:"sessions"`
		}
		p.want(200, "GET", "/api/v1/sessions?route=r", "", &got)
		if len(got.Sessions) == 1 && slices.Equal(got.Sessions[0].Filters, []string{"latency"}) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the idle session never took up the new filters: %+v", got)
		}
		time.Sleep(5 * time.Millisecond)
	}
	// Its very next round trip is delayed, and the first after the
	// removal is not.
	if rtt := roundTrip(t, c); rtt < delay {
		t.Fatalf("round trip %v after a latency filter of %v was added", rtt, delay)
	}
	p.want(200, "DELETE", "/api/v1/routes/r/filters/0", "", nil)
	if rtt := roundTrip(t, c); rtt >= delay {
		t.Fatalf("round trip %v after the latency filter was removed", rtt)
	}

	var bad struct {
		Problems []struct {
			Field string `json:"field"`
			Line  int    `json:"line"`
		} `json:"problems"`
	}
	p.want(400, "PUT", "/api/v1/routes/r/filters", `[{"pass": {}}, {"latency": {"delay": "soon"}}]`, &bad)
	if len(bad.Problems) != 1 || bad.Problems[0].Line == 0 || bad.Problems[0].Field != "filters[1].delay" {
		t.Fatalf("a bad option's error is not placed and named: %+v", bad)
	}
	p.want(400, "POST", "/api/v1/routes/r/filters", `{"latency": {"delay": "soon"}}`, &bad)
	if len(bad.Problems) != 1 || bad.Problems[0].Field != "filters[0].delay" {
		t.Fatalf("an appended filter's error is not named: %+v", bad)
	}
}

// With a token file, every request needs the token; a reload reads the
// file again, so a rotated token takes effect.
func TestAdminTokenRereadOnReload(t *testing.T) {
	up := testutil.NewUpstream(t, testutil.Echo)
	dir := t.TempDir()
	token := filepath.Join(dir, "token")
	if err := os.WriteFile(token, []byte("first-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "pier.yaml")
	doc := routeDoc(fmt.Sprintf(`listen: "127.0.0.1:0", token_file: %q`, token), oneRoute("r", up.Addr(), ""))
	if err := os.WriteFile(file, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startAdmin(t, doc, Options{ConfigFile: file})
	p.want(401, "GET", "/healthz", "", nil)
	p.auth = "first-token"
	p.want(200, "GET", "/healthz", "", nil)

	if err := os.WriteFile(token, []byte("second-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := p.d.ReloadFile(); err != nil {
		t.Fatal(err)
	}
	p.want(401, "GET", "/healthz", "", nil)
	p.auth = "second-token"
	p.want(200, "GET", "/healthz", "", nil)
}

// While Stop drains a live session, readiness answers 503 and liveness
// 200.
func TestAdminReadyzDrains(t *testing.T) {
	up := testutil.NewUpstream(t, testutil.Echo)
	p := startAdmin(t, "grace_period: 30s\n"+routeDoc(`listen: "127.0.0.1:0"`, oneRoute("r", up.Addr(), "")), Options{})
	c := dialEcho(t, p.d.Addrs("r")[0].String())
	stopped := make(chan error, 1)
	go func() { stopped <- p.d.Stop(context.Background()) }()
	deadline := time.Now().Add(wait)
	for {
		status, _ := p.do("GET", "/readyz", "")
		if status == 503 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("readyz still %d while draining", status)
		}
		time.Sleep(10 * time.Millisecond)
	}
	p.want(200, "GET", "/healthz", "", nil)
	c.Close()
	select {
	case <-stopped:
	case <-time.After(wait):
		t.Fatal("Stop did not return after the last session closed")
	}
}

// The log level changes at run time: debug records appear only after the
// API set it.
func TestAdminLogLevel(t *testing.T) {
	up := testutil.NewUpstream(t, testutil.Echo)
	var level slog.LevelVar
	var buf testutil.Buffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: &level}))
	p := startAdmin(t, routeDoc(`listen: "127.0.0.1:0"`, oneRoute("r", up.Addr(), "")), Options{Log: log, Level: &level})
	log.Debug("before")
	p.want(200, "PUT", "/api/v1/log_level", `{"level":"debug"}`, nil)
	log.Debug("after")
	if s := buf.String(); strings.Contains(s, "msg=before") || !strings.Contains(s, "msg=after") {
		t.Fatalf("log: %s", s)
	}
}

// jsonBody is v as a request body.
func jsonBody(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(bytes.TrimSpace(b))
}

// A reload whose admin server cannot open on its new address changes
// nothing: not the routes, not the server.
func TestReloadFailsWholeWhenAdminCannotMove(t *testing.T) {
	up := testutil.NewUpstream(t, testutil.Echo)
	p := startAdmin(t, routeDoc(`listen: "127.0.0.1:0"`, oneRoute("r", up.Addr(), "")), Options{})
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	next := routeDoc(fmt.Sprintf("listen: %q", busy.Addr().String()), oneRoute("r", up.Addr(), ""), oneRoute("b", up.Addr(), ""))
	if err := p.d.Reload(parse(t, next)); err == nil {
		t.Fatal("a reload whose admin address is taken succeeded")
	}
	if got := p.d.Addrs("b"); len(got) != 0 {
		t.Fatalf("the failed reload's new route listens on %v", got)
	}
	p.want(200, "GET", "/healthz", "", nil)
	m := p.scrape()
	if m[`pier_config_reloads_total{result="error"}`] != 1 || m[`pier_config_reloads_total{result="ok"}`] != 1 {
		t.Fatalf("reload counts: ok %v, error %v", m[`pier_config_reloads_total{result="ok"}`], m[`pier_config_reloads_total{result="error"}`])
	}
}

// A member listed twice is one series, and scrapes carry no error.
func TestMetricsMemberListedTwice(t *testing.T) {
	up := testutil.NewUpstream(t, testutil.Echo)
	p := startAdmin(t, routeDoc(`listen: "127.0.0.1:0"`,
		fmt.Sprintf("  - name: r\n    listen: [\"127.0.0.1:0\"]\n    upstreams: [{address: %q}, {address: %q}]\n", up.Addr(), up.Addr())), Options{})
	p.scrape()
	m := p.scrape()
	if v := m[`promhttp_metric_handler_errors_total{cause="gathering"}`]; v != 0 {
		t.Fatalf("gathering errors: %v", v)
	}
	if _, ok := m[fmt.Sprintf(`pier_member_up{addr=%q,member=%q,route="r"}`, up.Addr(), up.Addr())]; !ok {
		t.Fatal("no series for the member")
	}
}

// What the dashboard reads: a route's totals in its view, the recent ends
// with their reason, the history's samples, and the filters' specs.
func TestAdminDashboardViews(t *testing.T) {
	up := testutil.NewUpstream(t, testutil.Echo)
	p := startAdmin(t, routeDoc(`listen: "127.0.0.1:0"`, oneRoute("r", up.Addr(), ""), oneRoute("dead", testutil.RefusedAddr(t), "")), Options{})
	c := dialEcho(t, p.d.Addrs("r")[0].String())
	c.Close()
	closedAtOnce(t, p.d.Addrs("dead")[0].String())
	p.logs.WaitFor(t, wait, "reason=connect_failed")
	p.logs.WaitFor(t, wait, "reason=done")

	var r struct {
		Stats struct {
			Started    uint64            `json:"started"`
			ToUpstream uint64            `json:"to_upstream"`
			Ended      map[string]uint64 `json:"ended"`
		} `json:"stats"`
	}
	p.want(200, "GET", "/api/v1/routes/r", "", &r)
	if r.Stats.Started != 1 || r.Stats.ToUpstream != 5 || r.Stats.Ended["done"] != 1 {
		t.Fatalf("route r's stats: %+v", r.Stats)
	}

	var ends struct {
		Ends []struct {
			Route  string `json:"route"`
			Reason string `json:"reason"`
			Error  string `json:"error"`
		} `json:"ends"`
	}
	p.want(200, "GET", "/api/v1/ends?reason=connect_failed", "", &ends)
	if len(ends.Ends) != 1 || ends.Ends[0].Route != "dead" || ends.Ends[0].Error == "" {
		t.Fatalf("connect_failed ends: %+v", ends)
	}
	p.want(400, "GET", "/api/v1/ends?reason=tired", "", nil)

	var h struct {
		Times  []int64 `json:"times"`
		Routes []struct {
			Name     string    `json:"name"`
			Sessions []float64 `json:"sessions_per_second"`
		} `json:"routes"`
	}
	deadline := time.Now().Add(wait)
	for {
		p.want(200, "GET", "/api/v1/history", "", &h)
		if len(h.Times) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no history sample within the wait")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(h.Routes) != 2 || h.Routes[0].Name != "r" || len(h.Routes[0].Sessions) != len(h.Times) {
		t.Fatalf("history: %+v", h)
	}

	var specs struct {
		Filters []struct {
			Name string `json:"name"`
		} `json:"filters"`
	}
	p.want(200, "GET", "/api/v1/filter_specs", "", &specs)
	names := make([]string, 0, len(specs.Filters))
	for _, s := range specs.Filters {
		names = append(names, s.Name)
	}
	if !slices.Contains(names, "latency") || !slices.Contains(names, "dump") {
		t.Fatalf("filter specs: %v", names)
	}
}

// The reload's preview reads the file as a reload would, and plans it;
// without a file it says there is none.
func TestPreviewReloadReadsTheFile(t *testing.T) {
	up := testutil.NewUpstream(t, testutil.Echo)
	dir := t.TempDir()
	file := filepath.Join(dir, "pier.yaml")
	doc := routeDoc(`listen: "127.0.0.1:0"`, oneRoute("r", up.Addr(), ""))
	if err := os.WriteFile(file, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startAdmin(t, doc, Options{ConfigFile: file})
	if pv := (control{p.d}).PreviewReload(); !pv.OK || len(pv.Changes) != 0 {
		t.Fatalf("preview of the unchanged file: %+v", pv)
	}
	if err := os.WriteFile(file, []byte(routeDoc(`listen: "127.0.0.1:0"`, oneRoute("r", up.Addr(), ""), oneRoute("b", up.Addr(), ""))), 0o600); err != nil {
		t.Fatal(err)
	}
	pv := (control{p.d}).PreviewReload()
	if !pv.OK || !slices.ContainsFunc(pv.Changes, func(c admin.Change) bool { return c.Kind == "route" && c.Action == "add" && c.Route == "b" }) {
		t.Fatalf("preview of the file with a new route: %+v", pv)
	}
	if err := os.WriteFile(file, []byte("routes: [\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if pv := (control{p.d}).PreviewReload(); pv.OK || len(pv.Problems) == 0 || pv.Problems[0].Line == 0 {
		t.Fatalf("preview of a broken file: %+v", pv)
	}
	q := startAdmin(t, doc, Options{})
	if pv := (control{q.d}).PreviewReload(); pv.OK || len(pv.Problems) != 1 {
		t.Fatalf("preview without a file: %+v", pv)
	}
}

// A session behind a trusted PROXY header lists the header's client and
// the peer it came through.
func TestAdminSessionShowsItsEdge(t *testing.T) {
	up := testutil.NewUpstream(t, testutil.Echo)
	p := startAdmin(t, routeDoc(`listen: "127.0.0.1:0"`,
		oneRoute("r", up.Addr(), "    proxy_protocol: {accept: v1, trusted: [\"127.0.0.1/32\"]}\n")), Options{})
	c, err := net.Dial("tcp", p.d.Addrs("r")[0].String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("PROXY TCP4 192.0.2.7 192.0.2.1 40000 5432\r\n")); err != nil {
		t.Fatal(err)
	}
	roundTrip(t, c)
	var got struct {
		Sessions []struct {
			Client string `json:"client"`
			Peer   string `json:"peer"`
			Proxy  string `json:"proxy"`
		} `json:"sessions"`
	}
	p.want(200, "GET", "/api/v1/sessions?route=r", "", &got)
	if len(got.Sessions) != 1 || got.Sessions[0].Client != "192.0.2.7:40000" || got.Sessions[0].Proxy != "v1" ||
		!strings.HasPrefix(got.Sessions[0].Peer, "127.0.0.1:") {
		t.Fatalf("sessions: %+v", got.Sessions)
	}
}
