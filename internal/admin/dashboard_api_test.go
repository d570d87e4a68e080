package admin

import (
	"errors"
	"net/http"
	"testing"
	"time"
)

// A route's stats are its totals, every key present, the reason maps {}
// when empty (never null).
func TestRouteStats(t *testing.T) {
	r := sampleRoute()
	r.Stats = RouteStats{Started: 5, ToUpstream: 100, ToClient: 200,
		Refused: map[string]uint64{"limit": 1, "no_upstream": 2, "local_error": 0}, Ended: map[string]uint64{"done": 4}}
	ctl := &fakeControl{routes: []Route{r, {Name: "empty"}}}
	s := serve(t, ctl, Options{})
	a := s.do(t, "GET", "/api/v1/routes", "")
	routes := a.json(t)["routes"].([]any)
	st := routes[0].(map[string]any)["stats"].(map[string]any)
	wantKeys(t, "stats", st, "started", "to_upstream", "to_client", "refused", "ended")
	if st["started"] != 5.0 || st["to_upstream"] != 100.0 || st["to_client"] != 200.0 {
		t.Fatalf("stats %s", a.body)
	}
	wantKeys(t, "refused", st["refused"], "limit", "no_upstream", "local_error")
	if st["refused"].(map[string]any)["no_upstream"] != 2.0 || st["ended"].(map[string]any)["done"] != 4.0 {
		t.Fatalf("stats %s", a.body)
	}
	empty := routes[1].(map[string]any)["stats"].(map[string]any)
	for _, k := range []string{"refused", "ended"} {
		if m, ok := empty[k].(map[string]any); !ok || len(m) != 0 {
			t.Fatalf("empty route's stats.%s: %v, want {}", k, empty[k])
		}
	}
}

// The history answers the Control's samples with its JSON names; no
// samples yet is empty lists, never null.
func TestHistory(t *testing.T) {
	ctl := &fakeControl{history: History{Interval: 1, Times: []int64{100, 101},
		Routes: []RouteHistory{{Name: "web", SessionsPerSec: []float64{1, 2}, ToUpstreamBps: []float64{10, 20},
			ToClientBps: []float64{30, 40}, Live: []int64{3, 4}}, {Name: "idle"}}}}
	s := serve(t, ctl, Options{})
	a := s.do(t, "GET", "/api/v1/history", "")
	m := a.json(t)
	wantKeys(t, "history", m, "interval_seconds", "times", "routes")
	if m["interval_seconds"] != 1.0 || len(m["times"].([]any)) != 2 {
		t.Fatalf("history %s", a.body)
	}
	routes := m["routes"].([]any)
	web := routes[0].(map[string]any)
	wantKeys(t, "route history", web, "name", "sessions_per_second", "bytes_to_upstream_per_second", "bytes_to_client_per_second", "live")
	if web["bytes_to_client_per_second"].([]any)[1] != 40.0 || web["live"].([]any)[0] != 3.0 {
		t.Fatalf("history %s", a.body)
	}
	idle := routes[1].(map[string]any)
	for _, k := range []string{"sessions_per_second", "bytes_to_upstream_per_second", "bytes_to_client_per_second", "live"} {
		if l, ok := idle[k].([]any); !ok || len(l) != 0 {
			t.Fatalf("idle route's %s: %v, want []", k, idle[k])
		}
	}
	wantCalls(t, ctl, "History")
	ctl.history = History{}
	if a := s.do(t, "GET", "/api/v1/history", ""); string(a.body) != `{"interval_seconds":0,"times":[],"routes":[]}`+"\n" {
		t.Fatalf("no history: %s", a.body)
	}
}

// The ends query reaches the Control as parsed (limit 100 by default, a
// 2 s deadline); a limit out of 1..500 or an unknown parameter is a 400
// naming it, before the Control is asked; ErrPartial answers 503.
func TestEnds(t *testing.T) {
	at := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	ctl := &fakeControl{ends: EndsPage{Ends: []End{{ID: 7, Route: "web", Client: "127.0.0.1:5000", Upstream: "a", Dialed: "127.0.0.1:80",
		Time: at, DurationSeconds: 1.5, BytesToUpstream: 10, BytesToClient: 20, Reason: "connect_failed", Error: "refused"}}}}
	s := serve(t, ctl, Options{})
	a := s.do(t, "GET", "/api/v1/ends?route=web&reason=connect_failed&limit=500", "")
	m := a.json(t)
	wantKeys(t, "page", m, "ends")
	e := m["ends"].([]any)[0]
	wantKeys(t, "end", e, "id", "route", "client", "upstream", "dialed", "time", "duration_seconds",
		"bytes_to_upstream", "bytes_to_client", "reason", "error")
	if em := e.(map[string]any); em["time"] != "2025-01-02T03:04:05Z" || em["reason"] != "connect_failed" || em["id"] != 7.0 {
		t.Fatalf("end %s", a.body)
	}
	if ctl.endsQ != (EndsQuery{Route: "web", Reason: "connect_failed", Limit: 500}) {
		t.Fatalf("query %+v", ctl.endsQ)
	}
	if ctl.deadline <= 0 || ctl.deadline > sessionWait {
		t.Fatalf("deadline %v, want within %v", ctl.deadline, sessionWait)
	}
	s.do(t, "GET", "/api/v1/ends", "")
	if ctl.endsQ != (EndsQuery{Limit: defaultEndsPage}) {
		t.Fatalf("default query %+v", ctl.endsQ)
	}
	wantCalls(t, ctl, "Ends", "Ends")
	for _, bad := range []struct{ query, field string }{
		{"limit=0", "limit"}, {"limit=501", "limit"}, {"limit=x", "limit"},
		{"member=a", "member"}, {"route=a&route=b", "route"},
	} {
		wantError(t, s.do(t, "GET", "/api/v1/ends?"+bad.query, ""), http.StatusBadRequest, bad.field)
	}
	wantCalls(t, ctl)
	ctl.ends = EndsPage{}
	if a := s.do(t, "GET", "/api/v1/ends", ""); string(a.body) != `{"ends":[]}`+"\n" {
		t.Fatalf("no ends: %s", a.body)
	}
	ctl.err = ErrPartial
	if a := s.do(t, "GET", "/api/v1/ends", ""); a.status != http.StatusServiceUnavailable {
		t.Fatalf("partial: %d %s", a.status, a.body)
	}
	ctl.err = errors.New("boom")
	wantError(t, s.do(t, "GET", "/api/v1/ends", ""), http.StatusInternalServerError, "")
}

// The filter specs answer {"filters":[...]}, each option with every key
// and choices [] when it has none; options_declared tells a filter that
// takes no options from one that declares none.
func TestFilterSpecs(t *testing.T) {
	ctl := &fakeControl{specs: []FilterSpec{{Name: "latency", Help: "delays bytes", FlagKey: "latency", OptionsDeclared: true,
		Options: []OptionSpec{{Name: "delay", Kind: "duration", Default: "", Help: "how long", Required: true},
			{Name: "direction", Kind: "direction", Default: "both", Help: "which way", Choices: []string{"up", "down", "both"}}}},
		{Name: "bare"}, {Name: "none", OptionsDeclared: true}}}
	s := serve(t, ctl, Options{})
	a := s.do(t, "GET", "/api/v1/filter_specs", "")
	m := a.json(t)
	wantKeys(t, "answer", m, "filters")
	fs := m["filters"].([]any)
	wantKeys(t, "spec", fs[0], "name", "help", "flag_key", "options", "options_declared")
	for i, want := range []bool{true, false, true} {
		if got := fs[i].(map[string]any)["options_declared"]; got != want {
			t.Errorf("spec %d: options_declared %v, want %v", i, got, want)
		}
	}
	opts := fs[0].(map[string]any)["options"].([]any)
	wantKeys(t, "option", opts[0], "name", "kind", "default", "help", "required", "choices")
	if o := opts[0].(map[string]any); o["required"] != true || o["kind"] != "duration" || len(o["choices"].([]any)) != 0 {
		t.Fatalf("option %s", a.body)
	}
	if o := opts[1].(map[string]any); len(o["choices"].([]any)) != 3 || o["default"] != "both" {
		t.Fatalf("option %s", a.body)
	}
	if o, ok := fs[1].(map[string]any)["options"].([]any); !ok || len(o) != 0 {
		t.Fatalf("bare spec %s", a.body)
	}
	wantCalls(t, ctl, "FilterSpecs")
	ctl.specs = nil
	if a := s.do(t, "GET", "/api/v1/filter_specs", ""); string(a.body) != `{"filters":[]}`+"\n" {
		t.Fatalf("no specs: %s", a.body)
	}
}

// GET /api/v1/reload/preview answers the Control's preview of the file,
// 200 whether the file loads or not (ok and problems say), and changes
// nothing: only PreviewReload is called. POST is not it.
func TestReloadPreview(t *testing.T) {
	ctl := &fakeControl{filePreview: Preview{OK: true, Changes: []Change{{Kind: "route", Action: "add", Name: "extra", LiveSessions: 0}}}}
	s := serve(t, ctl, Options{})
	a := s.do(t, "GET", "/api/v1/reload/preview", "")
	m := a.json(t)
	if a.status != http.StatusOK || m["ok"] != true {
		t.Fatalf("%d %s", a.status, a.body)
	}
	wantKeys(t, "preview", m, "ok", "problems", "changes")
	if c := m["changes"].([]any); len(c) != 1 || c[0].(map[string]any)["name"] != "extra" {
		t.Fatalf("changes %s", a.body)
	}
	wantCalls(t, ctl, "PreviewReload")

	ctl.filePreview = Preview{Problems: []Problem{{Message: "open /etc/pier.yaml: no such file or directory"}}}
	a = s.do(t, "GET", "/api/v1/reload/preview", "")
	if m := a.json(t); a.status != http.StatusOK || m["ok"] != false || len(m["problems"].([]any)) != 1 || len(m["changes"].([]any)) != 0 {
		t.Fatalf("missing file: %d %s", a.status, a.body)
	}
	wantCalls(t, ctl, "PreviewReload")
	wantError(t, s.do(t, "POST", "/api/v1/reload/preview", ""), http.StatusMethodNotAllowed, "")
	wantCalls(t, ctl)
}

// The clients query reaches the Control as parsed (the top level's table
// without route, limit 100 by default); the page has every field, its
// clients [] when empty and limits null without a table; a bad limit or
// an unknown parameter is a 400 naming it, an unknown route a 404.
func TestClients(t *testing.T) {
	seen := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	ctl := &fakeControl{clients: ClientsPage{Scope: "db", Tracked: 2, Evicted: 1,
		Limits:  &PerClient{MaxConnections: 3, Rate: &Rate{PerSecond: 20, Burst: 40}, IPv4Prefix: 32, IPv6Prefix: 64, MaxTracked: 100, Tracked: 2, Evicted: 1},
		Clients: []Client{{Prefix: "2001:db8::/64", Live: 3, Tokens: 12.5, LastSeen: seen}, {Prefix: "10.0.0.1/32", Live: 0, Tokens: 40, LastSeen: seen}}}}
	s := serve(t, ctl, Options{})
	a := s.do(t, "GET", "/api/v1/clients?route=db&limit=1000", "")
	m := a.json(t)
	wantKeys(t, "page", m, "scope", "limits", "tracked", "evicted", "untracked", "clients")
	c := m["clients"].([]any)[0]
	wantKeys(t, "client", c, "prefix", "live", "tokens", "last_seen")
	if m["scope"] != "db" || m["tracked"] != 2.0 || c.(map[string]any)["prefix"] != "2001:db8::/64" ||
		c.(map[string]any)["last_seen"] != "2026-01-02T03:04:05Z" {
		t.Fatalf("page %s", a.body)
	}
	if ctl.clientsQ != (ClientsQuery{Route: "db", Limit: 1000}) {
		t.Fatalf("query %+v", ctl.clientsQ)
	}
	s.do(t, "GET", "/api/v1/clients", "")
	if ctl.clientsQ != (ClientsQuery{Limit: defaultClientsPage}) {
		t.Fatalf("default query %+v", ctl.clientsQ)
	}
	wantCalls(t, ctl, "Clients db 1000", "Clients  100")
	for _, bad := range []struct{ query, field string }{
		{"limit=0", "limit"}, {"limit=1001", "limit"}, {"limit=x", "limit"}, {"route=", "route"},
		{"scope=global", "scope"}, {"route=a&route=b", "route"},
	} {
		wantError(t, s.do(t, "GET", "/api/v1/clients?"+bad.query, ""), http.StatusBadRequest, bad.field)
	}
	ctl.clients = ClientsPage{Scope: "global"}
	if a := s.do(t, "GET", "/api/v1/clients", ""); string(a.body) != `{"scope":"global","limits":null,"tracked":0,"evicted":0,"untracked":0,"clients":[]}`+"\n" {
		t.Fatalf("no table: %s", a.body)
	}
	ctl.err = ErrNotFound
	wantError(t, s.do(t, "GET", "/api/v1/clients?route=nope", ""), http.StatusNotFound, "")
}
