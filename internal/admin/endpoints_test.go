package admin

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestHealthzAndReadyz(t *testing.T) {
	ctl := &fakeControl{ready: true}
	s := serve(t, ctl, Options{})
	a := s.do(t, "GET", "/healthz", "")
	if m := a.json(t); a.status != 200 || m["status"] != "ok" {
		t.Fatalf("healthz: %d %s", a.status, a.body)
	}
	wantCalls(t, ctl) // the process serves: nothing to ask
	a = s.do(t, "GET", "/readyz", "")
	if m := a.json(t); a.status != 200 || m["ready"] != true {
		t.Fatalf("readyz ready: %d %s", a.status, a.body)
	}
	ctl.ready, ctl.why = false, "draining"
	a = s.do(t, "GET", "/readyz", "")
	if m := a.json(t); a.status != 503 || m["ready"] != false || m["why"] != "draining" {
		t.Fatalf("readyz draining: %d %s", a.status, a.body)
	}
	wantCalls(t, ctl, "Ready", "Ready")
}

func TestMetricsServedByTheHandlerGiven(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		io.WriteString(w, "pier_up 1\n")
	})
	s := serve(t, &fakeControl{}, Options{Metrics: h})
	a := s.do(t, "GET", "/metrics", "")
	if a.status != 200 || string(a.body) != "pier_up 1\n" || !strings.HasPrefix(a.header.Get("Content-Type"), "text/plain") {
		t.Fatalf("metrics: %d %q %q", a.status, a.header.Get("Content-Type"), a.body)
	}
	none := serve(t, &fakeControl{}, Options{})
	wantError(t, none.do(t, "GET", "/metrics", ""), http.StatusNotFound, "")
}

func sampleRoute() Route {
	return Route{
		Name: "db", Listen: []string{":5432"}, Addrs: []string{"0.0.0.0:5432"}, MaxConnections: 100, Live: 3, Refused: 2,
		Filters: []Filter{{Name: "latency", Options: map[string]any{"delay": "10ms"}, Overlay: true}},
		Members: []Member{{Name: "[::1]:5432", Addr: "[::1]:5432", Weight: 3, FileWeight: 1, Up: true, Live: 3,
			Overlay: &Steering{Weight: ptr(3)}}},
		Overlay:            true,
		Match:              &Match{SNI: []string{"db.example.com"}, Matched: map[string]uint64{"sni:db.example.com": 4}},
		PeekTimeoutSeconds: 5,
		ProxyProtocol:      &ProxyProtocol{Accept: "v2", Trusted: []string{"10.1.0.0/16"}, Required: true, TimeoutSeconds: 3},
		SendProxy:          "v1",
		Deny:               []string{"10.6.6.0/24"},
		Limits: &Limits{AcceptRate: &Rate{PerSecond: 1000, Burst: 2000},
			PerClient: &PerClient{MaxConnections: 20, IPv4Prefix: 32, IPv6Prefix: 64, MaxTracked: 65536, Tracked: 2}},
	}
}

var memberKeys = []string{"name", "addr", "weight", "file_weight", "backup", "up", "ejected", "draining", "disabled",
	"last_check_error", "live", "connect_failures", "overlay"}

// Routes answer {"routes":[...]} with every field snake_case, empty lists
// as [] (never null); one route by its percent-encoded name; 404 for an
// unknown one.
func TestRoutes(t *testing.T) {
	ctl := &fakeControl{routes: []Route{sampleRoute(), {Name: "a b"}}}
	s := serve(t, ctl, Options{})
	a := s.do(t, "GET", "/api/v1/routes", "")
	m := a.json(t)
	wantKeys(t, "answer", m, "routes")
	routes := m["routes"].([]any)
	if len(routes) != 2 {
		t.Fatalf("routes %s", a.body)
	}
	r := routes[0].(map[string]any)
	wantKeys(t, "route", r, "name", "protocol", "listen", "addrs", "max_connections", "responses", "max_flows", "live", "refused", "filters", "members", "overlay", "stats",
		"match", "peek_timeout_seconds", "proxy_protocol", "send_proxy", "allow", "deny", "limits")
	if r["max_connections"] != 100.0 || r["live"] != 3.0 || r["refused"] != 2.0 || r["overlay"] != true {
		t.Fatalf("route %s", a.body)
	}
	wantKeys(t, "match", r["match"], "sni", "alpn", "source", "default", "matched")
	if r["match"].(map[string]any)["matched"].(map[string]any)["sni:db.example.com"] != 4.0 {
		t.Fatalf("match %s", a.body)
	}
	wantKeys(t, "proxy_protocol", r["proxy_protocol"], "accept", "trusted", "required", "timeout_seconds")
	wantKeys(t, "limits", r["limits"], "accept_rate", "per_client")
	wantKeys(t, "per_client", r["limits"].(map[string]any)["per_client"], "max_connections", "rate", "ipv4_prefix",
		"ipv6_prefix", "max_tracked", "tracked", "evicted", "untracked")
	if r["send_proxy"] != "v1" || r["peek_timeout_seconds"] != 5.0 || r["limits"].(map[string]any)["per_client"].(map[string]any)["rate"] != nil {
		t.Fatalf("route %s", a.body)
	}
	f := r["filters"].([]any)[0]
	wantKeys(t, "filter", f, "name", "options", "overlay")
	mem := r["members"].([]any)[0].(map[string]any)
	wantKeys(t, "member", mem, memberKeys...)
	wantKeys(t, "member overlay", mem["overlay"], "weight")
	empty := routes[1].(map[string]any)
	for _, k := range []string{"listen", "addrs", "filters", "members", "allow", "deny"} {
		if l, ok := empty[k].([]any); !ok || len(l) != 0 {
			t.Fatalf("empty route's %s: %v, want []", k, empty[k])
		}
	}
	for _, k := range []string{"match", "proxy_protocol", "limits"} {
		if v, ok := empty[k]; !ok || v != nil {
			t.Fatalf("empty route's %s: %v, want null", k, empty[k])
		}
	}

	a = s.do(t, "GET", "/api/v1/routes/a%20b", "")
	if m := a.json(t); a.status != 200 || m["name"] != "a b" {
		t.Fatalf("route a b: %d %s", a.status, a.body)
	}
	wantError(t, s.do(t, "GET", "/api/v1/routes/nope", ""), http.StatusNotFound, "")
	ctl.routes = nil
	if a := s.do(t, "GET", "/api/v1/routes", ""); string(a.body) != `{"routes":[]}`+"\n" {
		t.Fatalf("no routes: %s", a.body)
	}
}

// The sessions query reaches the Control as parsed (a single IP as its
// own prefix, the default limit 100, a 2 s deadline), and the page comes
// back with next as a string or null.
func TestSessionsList(t *testing.T) {
	ctl := &fakeControl{page: SessionPage{
		Sessions: []Session{{ID: 9, Route: "db", Client: "10.1.2.3:40000", Upstream: "db1:5432", Dialed: "10.0.0.9:5432",
			AgeSeconds: 1.5, BytesToUpstream: 10, BytesToClient: 20, State: "open", Filters: []string{"latency"},
			Peer: "127.0.0.1:6000", Proxy: "v2", SNI: "db.example.com", ALPN: []string{"postgresql"}, Match: "sni:db.example.com",
			TLVs: &TLVs{Authority: "db.example.com"}, TLS: &SessionTLS{Client: &TLSHandshake{Version: "TLS 1.3", SNI: "db.example.com"}}}},
		Matched: 7, Next: 9,
	}}
	s := serve(t, ctl, Options{})
	a := s.do(t, "GET", "/api/v1/sessions?route=db&member=db1%3A5432&client=10.1.2.3&after=5&limit=1", "")
	m := a.json(t)
	wantKeys(t, "page", m, "sessions", "sort", "matched", "next", "partial")
	if m["matched"] != 7.0 || m["next"] != "9" || m["partial"] != false || m["sort"] != "id" {
		t.Fatalf("page %s", a.body)
	}
	sess := m["sessions"].([]any)[0]
	wantKeys(t, "session", sess, "id", "route", "client", "upstream", "dialed", "age_seconds", "bytes_to_upstream",
		"bytes_to_client", "state", "filters", "peer", "proxy", "sni", "alpn", "match", "tlvs", "tls")
	wantKeys(t, "tlvs", sess.(map[string]any)["tlvs"], "authority")
	wantKeys(t, "tls", sess.(map[string]any)["tls"], "client", "upstream", "truncated")
	wantKeys(t, "tls.client", sess.(map[string]any)["tls"].(map[string]any)["client"], "version", "cipher", "sni", "alpn", "peer", "resumed")
	if se := sess.(map[string]any); se["peer"] != "127.0.0.1:6000" || se["sni"] != "db.example.com" || se["match"] != "sni:db.example.com" {
		t.Fatalf("session %s", a.body)
	}
	want := SessionQuery{Route: "db", Member: "db1:5432", Client: netip.MustParsePrefix("10.1.2.3/32"), Sort: SortID, After: 5, Limit: 1}
	if ctl.query != want {
		t.Fatalf("query %+v, want %+v", ctl.query, want)
	}
	if ctl.deadline <= 0 || ctl.deadline > sessionWait {
		t.Fatalf("sessions deadline in %v, want within %v", ctl.deadline, sessionWait)
	}

	ctl.page = SessionPage{Partial: true}
	a = s.do(t, "GET", "/api/v1/sessions?client=10.9.0.0/16", "")
	if string(a.body) != `{"sessions":[],"sort":"id","matched":0,"next":null,"partial":true}`+"\n" {
		t.Fatalf("last page: %s", a.body)
	}
	want = SessionQuery{Client: netip.MustParsePrefix("10.9.0.0/16"), Sort: SortID, Limit: 100}
	if ctl.query != want {
		t.Fatalf("query %+v, want %+v", ctl.query, want)
	}
	ctl.Calls()

	for q, field := range map[string]string{
		"limit=0": "limit", "limit=1001": "limit", "limit=x": "limit", "limit=": "limit", "after=-1": "after",
		"after=x": "after", "client=10.0.0.0/33": "client", "client=db": "client", "client=fe80::1%25eth0": "client",
		"route=a&route=b": "route", "mode=reset": "mode", "colour=red": "colour",
	} {
		wantError(t, s.do(t, "GET", "/api/v1/sessions?"+q, ""), http.StatusBadRequest, field)
	}
	wantCalls(t, ctl)
	ctl.err = &Error{Status: 404, Msg: "no route \"x\""}
	wantError(t, s.do(t, "GET", "/api/v1/sessions?route=x", ""), http.StatusNotFound, "")
}

// sort picks the order and the one cursor it pages by: after (id, the
// default), before (age), offset (bytes, 0..10000); a cursor of another
// sort, an unknown sort or an offset out of range is a 400 naming the
// parameter, and reaches no loop. The answer says the sort in force.
func TestSessionsSort(t *testing.T) {
	ctl := &fakeControl{page: SessionPage{Sessions: []Session{{ID: 3}}, Matched: 40, Next: 150}}
	s := serve(t, ctl, Options{})
	for raw, want := range map[string]SessionQuery{
		"sort=id&after=4":                  {Sort: SortID, After: 4, Limit: 100},
		"sort=age":                         {Sort: SortAge, Limit: 100},
		"sort=age&before=77&limit=50":      {Sort: SortAge, Before: 77, Limit: 50},
		"sort=bytes":                       {Sort: SortBytes, Limit: 100},
		"sort=bytes&offset=100&limit=50":   {Sort: SortBytes, Offset: 100, Limit: 50},
		"sort=bytes&offset=10000&route=db": {Route: "db", Sort: SortBytes, Offset: 10000, Limit: 100},
	} {
		a := s.do(t, "GET", "/api/v1/sessions?"+raw, "")
		m := a.json(t)
		if a.status != 200 || m["sort"] != want.Sort || m["next"] != "150" {
			t.Fatalf("%s: %d %s", raw, a.status, a.body)
		}
		if ctl.query != want {
			t.Errorf("%s: query %+v, want %+v", raw, ctl.query, want)
		}
	}
	// The page after offset 10000 is not one a query may ask for: none.
	ctl.page.Next = 10100
	if m := s.do(t, "GET", "/api/v1/sessions?sort=bytes&offset=10000", "").json(t); m["next"] != nil {
		t.Errorf("next after offset 10000: %v, want null", m["next"])
	}
	ctl.Calls()
	for raw, field := range map[string]string{
		"sort=size": "sort", "sort=": "sort", "sort=AGE": "sort", "sort=id&sort=age": "sort",
		"sort=age&after=3": "after", "sort=bytes&after=3": "after", "before=3": "before", "sort=bytes&before=3": "before",
		"offset=5": "offset", "sort=age&offset=5": "offset", "sort=bytes&offset=-1": "offset",
		"sort=bytes&offset=10001": "offset", "sort=bytes&offset=x": "offset", "sort=age&before=-2": "before",
	} {
		m := wantError(t, s.do(t, "GET", "/api/v1/sessions?"+raw, ""), http.StatusBadRequest, field)
		t.Logf("%s: %v", raw, m["error"])
	}
	wantCalls(t, ctl)
}

// DELETE of one session: 204 with the mode passed (close by default),
// 404 when no loop has it, 503 {"partial":true} when a loop was silent.
func TestEndSession(t *testing.T) {
	ctl := &fakeControl{}
	s := serve(t, ctl, Options{})
	for q, mode := range map[string]string{"": "close", "?mode=close": "close", "?mode=reset": "reset"} {
		a := s.do(t, "DELETE", "/api/v1/sessions/42"+q, "")
		if a.status != http.StatusNoContent || len(a.body) != 0 {
			t.Fatalf("%s: %d %s", q, a.status, a.body)
		}
		wantCalls(t, ctl, "EndSession 42 "+mode)
		if ctl.deadline <= 0 || ctl.deadline > sessionWait {
			t.Fatalf("deadline in %v", ctl.deadline)
		}
	}
	for path, field := range map[string]string{
		"/api/v1/sessions/x": "id", "/api/v1/sessions/0": "id", "/api/v1/sessions/-1": "id",
		"/api/v1/sessions/99999999999999999999": "id", "/api/v1/sessions/1?mode=kill": "mode",
		"/api/v1/sessions/1?mode=": "mode", "/api/v1/sessions/1?route=a": "route",
	} {
		wantError(t, s.do(t, "DELETE", path, ""), http.StatusBadRequest, field)
	}
	wantCalls(t, ctl)
	ctl.err = fmt.Errorf("app: %w", ErrNotFound)
	wantError(t, s.do(t, "DELETE", "/api/v1/sessions/42", ""), http.StatusNotFound, "")
	ctl.err = ErrPartial
	if m := wantError(t, s.do(t, "DELETE", "/api/v1/sessions/42", ""), http.StatusServiceUnavailable, ""); m["partial"] != true {
		t.Fatalf("partial: %v", m)
	}
	ctl.err = fmt.Errorf("boom")
	wantError(t, s.do(t, "DELETE", "/api/v1/sessions/42", ""), http.StatusInternalServerError, "")
}

// DELETE of matching sessions needs a filter, passes the query and mode,
// and answers the count (partial when a loop was silent).
func TestEndSessions(t *testing.T) {
	ctl := &fakeControl{ended: 3}
	s := serve(t, ctl, Options{})
	wantError(t, s.do(t, "DELETE", "/api/v1/sessions", ""), http.StatusBadRequest, "route")
	wantError(t, s.do(t, "DELETE", "/api/v1/sessions?mode=reset", ""), http.StatusBadRequest, "route")
	wantError(t, s.do(t, "DELETE", "/api/v1/sessions?route=db&limit=5", ""), http.StatusBadRequest, "limit")
	wantError(t, s.do(t, "DELETE", "/api/v1/sessions?route=db&mode=x", ""), http.StatusBadRequest, "mode")
	wantCalls(t, ctl)
	a := s.do(t, "DELETE", "/api/v1/sessions?route=db&member=db1&mode=reset", "")
	if string(a.body) != `{"ended":3,"partial":false}`+"\n" || a.status != 200 {
		t.Fatalf("%d %s", a.status, a.body)
	}
	wantCalls(t, ctl, "EndSessions reset")
	if want := (SessionQuery{Route: "db", Member: "db1"}); ctl.query != want {
		t.Fatalf("query %+v", ctl.query)
	}
	a = s.do(t, "DELETE", "/api/v1/sessions?client=::1", "")
	wantCalls(t, ctl, "EndSessions close")
	if want := (SessionQuery{Client: netip.MustParsePrefix("::1/128")}); ctl.query != want {
		t.Fatalf("query %+v", ctl.query)
	}
	ctl.err = ErrPartial
	if a := s.do(t, "DELETE", "/api/v1/sessions?route=db", ""); string(a.body) != `{"ended":3,"partial":true}`+"\n" {
		t.Fatalf("partial: %s", a.body)
	}
	ctl.err = &Error{Status: 404, Msg: "no route"}
	wantError(t, s.do(t, "DELETE", "/api/v1/sessions?route=db", ""), http.StatusNotFound, "")
}

// Each steering call reaches Steer with the route and the member by its
// configured name (percent-decoded) and exactly the fields it changes,
// and answers the member's status.
func TestMemberSteering(t *testing.T) {
	ctl := &fakeControl{member: sampleRoute().Members[0]}
	s := serve(t, ctl, Options{})
	const base = "/api/v1/routes/db/members/%5B%3A%3A1%5D%3A5432"
	for _, c := range []struct {
		method, path, body string
		want               Steering
	}{
		{"POST", base + "/drain", "", Steering{Drain: ptr(true)}},
		{"POST", base + "/undrain", "", Steering{Drain: ptr(false)}},
		{"POST", base + "/disable", "", Steering{Disabled: ptr(true)}},
		{"POST", base + "/enable", "", Steering{Disabled: ptr(false)}},
		{"PUT", base + "/weight", `{"weight": 7}`, Steering{Weight: ptr(7)}},
		{"PATCH", base, `{"drain":true,"disabled":false,"weight":1000}`, Steering{Drain: ptr(true), Disabled: ptr(false), Weight: ptr(1000)}},
		{"PATCH", base, `{"weight":1, "drain": null}`, Steering{Weight: ptr(1)}},
		{"POST", "/api/v1/routes/db/members/[::1]:5432/drain", "", Steering{Drain: ptr(true)}},
	} {
		a := s.do(t, c.method, c.path, c.body)
		if a.status != 200 {
			t.Fatalf("%s %s: %d %s", c.method, c.path, a.status, a.body)
		}
		wantKeys(t, "member", a.json(t), memberKeys...)
		wantCalls(t, ctl, "Steer db [::1]:5432")
		if !reflect.DeepEqual(ctl.steering, c.want) {
			t.Fatalf("%s %s: steering %s, want %s", c.method, c.path, show(ctl.steering), show(c.want))
		}
	}
	s.do(t, "POST", "/api/v1/routes/d%2Fb/members/srv.internal%2F1/disable", "")
	wantCalls(t, ctl, "Steer d/b srv.internal/1")
	ctl.err = ErrNotFound
	wantError(t, s.do(t, "POST", "/api/v1/routes/db/members/nope/drain", ""), http.StatusNotFound, "")
	ctl.err = nil
	ctl.Calls()
	for _, c := range []struct{ method, path, body, field string }{
		{"PUT", base + "/weight", `{"weight":0}`, "weight"},
		{"PUT", base + "/weight", `{"weight":1001}`, "weight"},
		{"PUT", base + "/weight", `{"weight":-1}`, "weight"},
		{"PUT", base + "/weight", `{"weight":1.5}`, "weight"},
		{"PUT", base + "/weight", `{"weight":"3"}`, "weight"},
		{"PUT", base + "/weight", `{}`, "weight"},
		{"PUT", base + "/weight", `{"weight":null}`, "weight"},
		{"PUT", base + "/weight", ``, "body"},
		{"PUT", base + "/weight", `{"Weight":3}`, "Weight"},
		{"PUT", base + "/weight", `{"weight":3,"weight":4}`, "weight"},
		{"PUT", base + "/weight", `{"weight":3,"drain":true}`, "drain"},
		{"PATCH", base, `{}`, "drain"},
		{"PATCH", base, `{"drain":"yes"}`, "drain"},
		{"PATCH", base, `{"drain":true,"weight":0}`, "weight"},
		{"PATCH", base, `{"drained":true}`, "drained"},
	} {
		wantError(t, s.do(t, c.method, c.path, c.body), http.StatusBadRequest, c.field)
	}
	for _, body := range []string{`{"weight":3}{}`, `{"weight":3} x`, `[3]`, `null`, `3`, `{"weight":3`, `{weight:3}`} {
		wantError(t, s.do(t, "PUT", base+"/weight", body), http.StatusBadRequest, "")
	}
	wantCalls(t, ctl)
}

func show(s Steering) string {
	f := func(p any) string {
		switch v := p.(type) {
		case *bool:
			if v != nil {
				return fmt.Sprint(*v)
			}
		case *int:
			if v != nil {
				return fmt.Sprint(*v)
			}
		}
		return "nil"
	}
	return fmt.Sprintf("{drain:%s disabled:%s weight:%s}", f(s.Drain), f(s.Disabled), f(s.Weight))
}

// A mistake in a JSON body is placed by line and column.
func TestBodyErrorsPlaced(t *testing.T) {
	s := serve(t, &fakeControl{}, Options{})
	a := s.do(t, "PUT", "/api/v1/log_level", "{\n  \"level\": \"debug\",\n  \"colour\": 1\n}")
	m := wantError(t, a, http.StatusBadRequest, "colour")
	p := m["problems"].([]any)[0].(map[string]any)
	if p["line"] != 3.0 || p["col"] != 3.0 {
		t.Fatalf("problem %v, want line 3 col 3", p)
	}
	if !strings.HasPrefix(m["error"].(string), "body:3:3: colour: unknown field") {
		t.Fatalf("error %q", m["error"])
	}
}

// Filter edits pass the body raw with the operation and index; the
// Control's own errors come back with their status and problems.
func TestFilters(t *testing.T) {
	ctl := &fakeControl{filters: []Filter{{Name: "latency", Options: map[string]any{"delay": "10ms"}}}}
	s := serve(t, ctl, Options{})
	const base = "/api/v1/routes/db/filters"
	body := "- latency: {delay: 10ms}\n"
	for _, c := range []struct {
		method, path, body string
		want               FilterEdit
	}{
		{"PUT", base, body, FilterEdit{Op: "replace", Body: []byte(body)}},
		{"POST", base, body, FilterEdit{Op: "append", Body: []byte(body)}},
		{"POST", base + "?at=2", body, FilterEdit{Op: "insert", Index: 2, Body: []byte(body)}},
		{"PUT", base + "/1", body, FilterEdit{Op: "set", Index: 1, Body: []byte(body)}},
		{"DELETE", base + "/3", "", FilterEdit{Op: "delete", Index: 3}},
	} {
		a := s.do(t, c.method, c.path, c.body)
		if a.status != 200 {
			t.Fatalf("%s %s: %d %s", c.method, c.path, a.status, a.body)
		}
		if string(a.body) != `{"filters":[{"name":"latency","options":{"delay":"10ms"},"overlay":false}]}`+"\n" {
			t.Fatalf("answer %s", a.body)
		}
		wantCalls(t, ctl, fmt.Sprintf("EditFilters db %s %d", c.want.Op, c.want.Index))
		if !reflect.DeepEqual(ctl.edit, c.want) {
			t.Fatalf("%s %s: edit %+v, want %+v", c.method, c.path, ctl.edit, c.want)
		}
	}
	a := s.do(t, "GET", base, "")
	if a.status != 200 || !strings.HasPrefix(string(a.body), `{"filters":[`) {
		t.Fatalf("GET: %d %s", a.status, a.body)
	}
	wantCalls(t, ctl, "Filters db")
	for _, c := range []struct{ method, path, body, field string }{
		{"PUT", base, "", "body"},
		{"PUT", base, " \n", "body"},
		{"POST", base + "?at=-1", body, "at"},
		{"POST", base + "?at=x", body, "at"},
		{"POST", base + "?index=1", body, "index"},
		{"PUT", base + "/x", body, "index"},
		{"DELETE", base + "/-2", "", "index"},
	} {
		wantError(t, s.do(t, c.method, c.path, c.body), http.StatusBadRequest, c.field)
	}
	wantCalls(t, ctl)
	ctl.err = &Error{Status: 400, Msg: "body:1:22: filters[0].delay: not a duration",
		Problems: []Problem{{Field: "filters[0].delay", Message: "not a duration", Line: 1, Col: 22}}}
	a = s.do(t, "PUT", base, `[{"latency":{"delay":"soon"}}]`)
	m := wantError(t, a, 400, "filters[0].delay")
	if string(a.body) != `{"error":"body:1:22: filters[0].delay: not a duration","problems":[{"field":"filters[0].delay","message":"not a duration","line":1,"col":22}]}`+"\n" {
		t.Fatalf("error body %s (%v)", a.body, m)
	}
	ctl.err = ErrNotFound
	wantError(t, s.do(t, "GET", base, ""), http.StatusNotFound, "")
	wantError(t, s.do(t, "DELETE", base+"/9", ""), http.StatusNotFound, "")
}

func TestOverlay(t *testing.T) {
	ctl := &fakeControl{overlay: Overlay{Members: []OverlayMember{{Route: "db", Member: "db1", Steering: Steering{Drain: ptr(true)}}}, Filters: []string{"web"}}}
	s := serve(t, ctl, Options{})
	const want = `{"members":[{"route":"db","member":"db1","steering":{"drain":true}}],"filters":["web"]}`
	if a := s.do(t, "GET", "/api/v1/overlay", ""); a.status != 200 || string(a.body) != want+"\n" {
		t.Fatalf("GET: %d %s", a.status, a.body)
	}
	if a := s.do(t, "DELETE", "/api/v1/overlay", ""); a.status != 200 || string(a.body) != `{"dropped":`+want+"}\n" {
		t.Fatalf("DELETE: %d %s", a.status, a.body)
	}
	wantCalls(t, ctl, "Overlay", "DropOverlay")
	ctl.overlay = Overlay{}
	if a := s.do(t, "GET", "/api/v1/overlay", ""); string(a.body) != `{"members":[],"filters":[]}`+"\n" {
		t.Fatalf("empty: %s", a.body)
	}
}

// A reload answers 200 when it took, 422 with its errors when not, or
// the status the Control chose (409: no file).
func TestReload(t *testing.T) {
	ctl := &fakeControl{reload: ReloadResult{OK: true, Kept: []string{"db/db1 drain"}}}
	s := serve(t, ctl, Options{})
	a := s.do(t, "POST", "/api/v1/reload", "")
	if a.status != 200 || string(a.body) != `{"ok":true,"errors":[],"overlay":{"kept":["db/db1 drain"],"dropped":[]}}`+"\n" {
		t.Fatalf("ok: %d %s", a.status, a.body)
	}
	ctl.reload = ReloadResult{Errors: []string{"pier.yaml:3:5: routes[0].name: required"}}
	a = s.do(t, "POST", "/api/v1/reload", "")
	if a.status != 422 || string(a.body) != `{"ok":false,"errors":["pier.yaml:3:5: routes[0].name: required"],"overlay":{"kept":[],"dropped":[]}}`+"\n" {
		t.Fatalf("failed: %d %s", a.status, a.body)
	}
	ctl.reload = ReloadResult{Errors: []string{"no config file to reload"}, Status: 409}
	if a := s.do(t, "POST", "/api/v1/reload", ""); a.status != 409 {
		t.Fatalf("no file: %d", a.status)
	}
	wantCalls(t, ctl, "Reload", "Reload", "Reload")
}

func TestConfigCheck(t *testing.T) {
	ctl := &fakeControl{preview: Preview{OK: true, Changes: []Change{{Kind: "member", Action: "remove", Route: "db", Name: "db2", LiveSessions: 4, Effect: "live sessions finish on it"}}}}
	s := serve(t, ctl, Options{})
	yaml := "routes:\n  - name: db\n"
	a := s.do(t, "POST", "/api/v1/config/check", yaml)
	m := a.json(t)
	wantKeys(t, "preview", m, "ok", "problems", "changes")
	wantKeys(t, "change", m["changes"].([]any)[0], "kind", "action", "route", "name", "fields", "live_sessions", "effect")
	if a.status != 200 || string(ctl.checked) != yaml {
		t.Fatalf("%d %s; checked %q", a.status, a.body, ctl.checked)
	}
	ctl.preview = Preview{Problems: []Problem{{Field: "routes[0].listen", Message: "required", Line: 2, Col: 5}}}
	a = s.do(t, "POST", "/api/v1/config/check", yaml)
	if a.status != 200 || string(a.body) != `{"ok":false,"problems":[{"field":"routes[0].listen","message":"required","line":2,"col":5}],"changes":[]}`+"\n" {
		t.Fatalf("problems: %d %s", a.status, a.body)
	}
	wantCalls(t, ctl, "Check", "Check")
	wantError(t, s.do(t, "POST", "/api/v1/config/check", ""), http.StatusBadRequest, "body")
	wantCalls(t, ctl)
}

func TestConfig(t *testing.T) {
	ctl := &fakeControl{config: map[string][]byte{"yaml": []byte("routes: []\n"), "json": []byte(`{"config":{}}`)}}
	s := serve(t, ctl, Options{})
	for q, want := range map[string]string{"": "application/yaml", "?format=yaml": "application/yaml", "?format=json": "application/json"} {
		a := s.do(t, "GET", "/api/v1/config"+q, "")
		format := strings.TrimPrefix(want, "application/")
		if a.status != 200 || a.header.Get("Content-Type") != want || string(a.body) != string(ctl.config[format]) {
			t.Fatalf("%s: %d %q %s", q, a.status, a.header.Get("Content-Type"), a.body)
		}
		wantCalls(t, ctl, "Config "+format)
	}
	wantError(t, s.do(t, "GET", "/api/v1/config?format=toml", ""), http.StatusBadRequest, "format")
	wantError(t, s.do(t, "GET", "/api/v1/config?fmt=json", ""), http.StatusBadRequest, "fmt")
	wantCalls(t, ctl)
	ctl.err = fmt.Errorf("config: marshal: boom")
	wantError(t, s.do(t, "GET", "/api/v1/config", ""), http.StatusInternalServerError, "")
}

func TestLogLevel(t *testing.T) {
	ctl := &fakeControl{level: slog.LevelInfo}
	s := serve(t, ctl, Options{})
	if a := s.do(t, "GET", "/api/v1/log_level", ""); string(a.body) != `{"level":"info"}`+"\n" {
		t.Fatalf("GET: %s", a.body)
	}
	a := s.do(t, "PUT", "/api/v1/log_level", `{"level":"DEBUG"}`)
	if a.status != 200 || string(a.body) != `{"new":"debug","old":"info"}`+"\n" {
		t.Fatalf("PUT: %d %s", a.status, a.body)
	}
	wantCalls(t, ctl, "LogLevel", "LogLevel", "SetLogLevel DEBUG")
	for body, field := range map[string]string{
		`{"level":"verbose"}`: "level", `{"level":"debug+1"}`: "level", `{"level":4}`: "level", `{}`: "level",
		`{"lvl":"debug"}`: "lvl", ``: "body", `"debug"`: "",
	} {
		wantError(t, s.do(t, "PUT", "/api/v1/log_level", body), http.StatusBadRequest, field)
	}
	wantCalls(t, ctl)
}

// Shutdown stops the server and Serve returns nil (serve's cleanup
// checks it); a request in flight finishes first.
func TestShutdownWaitsForRequestInFlight(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-release
		io.WriteString(w, "done")
	})
	s := serve(t, &fakeControl{}, Options{Metrics: h})
	got := make(chan answer, 1)
	go func() {
		resp, err := s.client.Get(s.base + "/metrics")
		if err != nil {
			got <- answer{status: -1, body: []byte(err.Error())}
			return
		}
		defer resp.Body.Close()
		data, _ := io.ReadAll(resp.Body)
		got <- answer{status: resp.StatusCode, body: data}
	}()
	select {
	case <-entered:
	case <-time.After(wait):
		t.Fatal("request did not arrive")
	}
	stopped := make(chan error, 1)
	go func() { stopped <- s.Shutdown(t.Context()) }()
	close(release)
	select {
	case a := <-got:
		if a.status != 200 || string(a.body) != "done" {
			t.Fatalf("in flight: %d %s", a.status, a.body)
		}
	case <-time.After(wait):
		t.Fatal("request in flight did not finish")
	}
	select {
	case err := <-stopped:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(wait):
		t.Fatal("Shutdown did not return")
	}
}

// Each request that changes state is logged once, with its method, path,
// status and client; reads are not.
func TestStateChangesLogged(t *testing.T) {
	var buf syncBuffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	s := serve(t, &fakeControl{reload: ReloadResult{OK: true}}, Options{Log: log})
	s.do(t, "GET", "/api/v1/overlay", "")
	s.do(t, "POST", "/api/v1/reload", "")
	s.do(t, "PUT", "/api/v1/log_level", `{"level":"x"}`)
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], `msg="admin request" method=POST path=/api/v1/reload status=200 client=127.0.0.1:`) ||
		!strings.Contains(lines[1], "method=PUT path=/api/v1/log_level status=400") {
		t.Fatalf("log:\n%s", buf.String())
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
