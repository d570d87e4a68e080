package app

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/pierproxy/pier/config"
	_ "github.com/pierproxy/pier/filter/builtin"
	"github.com/pierproxy/pier/internal/admin"
)

// fakeLive counts live sessions from maps; what is not in them has none.
type fakeLive struct {
	routes  map[string]int64
	members map[string]int64 // by "route/member"
}

func (f fakeLive) Route(name string) int64           { return f.routes[name] }
func (f fakeLive) Member(route, member string) int64 { return f.members[route+"/"+member] }

var planLive = fakeLive{
	routes:  map[string]int64{"web": 7, "db": 12},
	members: map[string]int64{"web/10.0.0.1:80": 3, "web/10.0.0.2:80": 4, "db/10.0.1.1:5432": 12},
}

// planBase is the configuration in force of the plan tests; each case
// edits it with replacements.
const planBase = `grace_period: 10s
routes:
  - name: web
    listen: ["127.0.0.1:8080", "127.0.0.1:8081"]
    upstreams:
      - address: 10.0.0.1:80
      - address: 10.0.0.2:80
        weight: 2
    filters:
      - pass
      - limit: {bytes: 100}
  - name: db
    listen: ["127.0.0.1:5432"]
    upstreams: [{address: "10.0.1.1:5432"}]
    max_connections: 10
`

// edit returns planBase with each pair of olds[i], olds[i+1] replaced; an
// old text that is not there fails the test, so a case cannot pass by
// changing nothing.
func edit(t *testing.T, doc string, pairs ...string) string {
	t.Helper()
	for i := 0; i < len(pairs); i += 2 {
		if !strings.Contains(doc, pairs[i]) {
			t.Fatalf("edit: %q not in the document", pairs[i])
		}
		doc = strings.Replace(doc, pairs[i], pairs[i+1], 1)
	}
	return doc
}

func parsePlan(t *testing.T, doc string) *config.Config {
	t.Helper()
	cfg, err := config.Parse("test.yaml", []byte(doc))
	if err != nil {
		t.Fatalf("%v\n%s", err, doc)
	}
	return cfg
}

// want is a change expected, its Effect checked to hold every one of
// effect's phrases.
type want struct {
	kind, action, route, name string
	fields                    []string
	live                      int64
	effect                    []string
}

func (w want) String() string {
	return fmt.Sprintf("%s %s %s %s %v live=%d", w.kind, w.action, w.route, w.name, w.fields, w.live)
}

func changeString(c admin.Change) string {
	return fmt.Sprintf("%s %s %s %s %v live=%d", c.Kind, c.Action, c.Route, c.Name, c.Fields, c.LiveSessions)
}

func checkPlan(t *testing.T, got []admin.Change, wants []want) {
	t.Helper()
	var gs, ws []string
	for _, c := range got {
		gs = append(gs, changeString(c))
	}
	for _, w := range wants {
		ws = append(ws, w.String())
	}
	if !slices.Equal(gs, ws) {
		t.Fatalf("plan:\n  %s\nwant:\n  %s", strings.Join(gs, "\n  "), strings.Join(ws, "\n  "))
	}
	for i, w := range wants {
		if got[i].Effect == "" {
			t.Errorf("%s: no effect", ws[i])
		}
		for _, p := range w.effect {
			if !strings.Contains(got[i].Effect, p) {
				t.Errorf("%s: effect %q does not say %q", ws[i], got[i].Effect, p)
			}
		}
	}
}

// Every kind of change a reload can make is listed with the live sessions
// it touches and what happens to them, as apply does it.
func TestPlanListsEveryChange(t *testing.T) {
	cases := []struct {
		name  string
		edits []string
		want  []want
	}{
		{
			name: "nothing changes",
		},
		{
			name:  "a listen address added and one removed",
			edits: []string{`["127.0.0.1:8080", "127.0.0.1:8081"]`, `["127.0.0.1:8081", "127.0.0.1:9090"]`},
			want: []want{
				{kind: "listener", action: "open", route: "web", name: "127.0.0.1:9090", effect: []string{"if it cannot bind, the reload fails and nothing changes"}},
				{kind: "listener", action: "close", route: "web", name: "127.0.0.1:8080", live: 7, effect: []string{"stops accepting", "7 live sessions of route web", "are not ended"}},
				{kind: "route", action: "change", route: "web", name: "web", fields: []string{"listen"}, live: 7, effect: []string{"listeners change as listed"}},
			},
		},
		{
			name:  "listen addresses reordered are no change",
			edits: []string{`["127.0.0.1:8080", "127.0.0.1:8081"]`, `["127.0.0.1:8081", "127.0.0.1:8080"]`},
		},
		{
			// route.Key: an address is its own key, so it passes to the
			// renamed route without closing.
			name:  "a route renamed keeps its listeners open",
			edits: []string{"name: db", "name: pg"},
			want: []want{
				{kind: "listener", action: "change", route: "pg", name: "127.0.0.1:5432", fields: []string{"route"}, live: 12,
					effect: []string{"stays open: new clients on it go to route pg", "12 live sessions of route db are not ended and finish on db"}},
				{kind: "route", action: "remove", route: "db", name: "db", live: 12, effect: []string{"takes no new clients", "12 live sessions are not ended", "old route"}},
				{kind: "route", action: "add", route: "pg", name: "pg"},
			},
		},
		{
			name:  "a listen address changed",
			edits: []string{`["127.0.0.1:5432"]`, `["127.0.0.1:0"]`},
			want: []want{
				{kind: "listener", action: "open", route: "db", name: "127.0.0.1:0"},
				{kind: "listener", action: "close", route: "db", name: "127.0.0.1:5432", live: 12},
				{kind: "route", action: "change", route: "db", name: "db", fields: []string{"listen"}, live: 12},
			},
		},
		{
			name: "a route removed",
			edits: []string{`  - name: db
    listen: ["127.0.0.1:5432"]
    upstreams: [{address: "10.0.1.1:5432"}]
    max_connections: 10
`, ""},
			want: []want{
				{kind: "listener", action: "close", route: "db", name: "127.0.0.1:5432", live: 12},
				{kind: "route", action: "remove", route: "db", name: "db", live: 12, effect: []string{"its timeouts, members and filters"}},
			},
		},
		{
			name: "a route with filters removed closes them",
			edits: []string{`  - name: web
    listen: ["127.0.0.1:8080", "127.0.0.1:8081"]
    upstreams:
      - address: 10.0.0.1:80
      - address: 10.0.0.2:80
        weight: 2
    filters:
      - pass
      - limit: {bytes: 100}
`, ""},
			want: []want{
				{kind: "listener", action: "close", route: "web", name: "127.0.0.1:8080", live: 7},
				{kind: "listener", action: "close", route: "web", name: "127.0.0.1:8081", live: 7},
				{kind: "route", action: "remove", route: "web", name: "web", live: 7,
					effect: []string{"7 live sessions are not ended", "its filters are closed now, and what they can no longer write is counted as dropped"}},
			},
		},
		{
			name: "a route added, its members and filters not listed apart",
			edits: []string{"    max_connections: 10\n", `    max_connections: 10
  - name: cache
    listen: ["127.0.0.1:6379"]
    upstreams: [{address: "10.0.2.1:6379"}]
    filters: [pass]
`},
			want: []want{
				{kind: "listener", action: "open", route: "cache", name: "127.0.0.1:6379"},
				{kind: "route", action: "add", route: "cache", name: "cache", effect: []string{"filters are in force before its listeners open"}},
			},
		},
		{
			name: "timeouts and pool settings changed",
			edits: []string{"    max_connections: 10\n", `    max_connections: 10
    idle_timeout: 5m
    connect_timeout: 1s
    balance: least_conn
    retries: 0
`},
			want: []want{
				{kind: "route", action: "change", route: "db", name: "db",
					fields: []string{"balance", "retries", "connect_timeout", "connect_budget", "idle_timeout"}, live: 12,
					effect: []string{"new sessions take the new balance, retries, connect_timeout, connect_budget, idle_timeout; its 12 live sessions keep the old until they end"}},
			},
		},
		{
			name:  "max_connections lowered below the live count",
			edits: []string{"max_connections: 10", "max_connections: 5"},
			want: []want{
				{kind: "route", action: "change", route: "db", name: "db", fields: []string{"max_connections"}, live: 12,
					effect: []string{"max_connections 10 → 5 applies to new clients and counts the 12 live sessions, which are not ended", "no new client is admitted until fewer than 5 are live"}},
			},
		},
		{
			name:  "max_connections lifted",
			edits: []string{"    max_connections: 10\n", ""},
			want: []want{
				{kind: "route", action: "change", route: "db", name: "db", fields: []string{"max_connections"}, live: 12,
					effect: []string{"max_connections 10 → none"}},
			},
		},
		{
			name: "health and passive checks changed",
			edits: []string{"    max_connections: 10\n", `    max_connections: 10
    health_check: {interval: 1s}
    passive_check: {failures: 5}
    when_all_down: try_all
    half_close_timeout: 0s
`},
			want: []want{
				{kind: "route", action: "change", route: "db", name: "db",
					fields: []string{"health_check", "passive_check", "when_all_down", "half_close_timeout"}, live: 12,
					effect: []string{"new sessions take the new when_all_down, half_close_timeout;", "verdict starts over, as up", "ejections in force stay"}},
			},
		},
		{
			name: "members added, removed and changed",
			edits: []string{`      - address: 10.0.0.1:80
      - address: 10.0.0.2:80
        weight: 2
`, `      - address: 10.0.0.2:80
        weight: 3
        max_connections: 2
      - address: 10.0.0.3:80
      - address: 10.0.0.4:80
        backup: true
`},
			want: []want{
				{kind: "member", action: "remove", route: "web", name: "10.0.0.1:80", live: 3, effect: []string{"takes no new sessions; its 3 live sessions continue to their end"}},
				{kind: "member", action: "change", route: "web", name: "10.0.0.2:80", fields: []string{"weight", "max_connections"}, live: 4,
					effect: []string{"weight 3 (was 2)", "max_connections none → 2 applies to new sessions and counts its 4 live ones", "its 4 live sessions are not ended"}},
				{kind: "member", action: "add", route: "web", name: "10.0.0.3:80", effect: []string{"takes new sessions"}},
				{kind: "member", action: "add", route: "web", name: "10.0.0.4:80", effect: []string{"joins as a backup"}},
			},
		},
		{
			name:  "a member drained and one made a backup",
			edits: []string{"      - address: 10.0.0.1:80\n      - address: 10.0.0.2:80\n", "      - address: 10.0.0.1:80\n        drain: true\n      - address: 10.0.0.2:80\n        backup: true\n"},
			want: []want{
				{kind: "member", action: "change", route: "web", name: "10.0.0.1:80", fields: []string{"drain"}, live: 3,
					effect: []string{"takes no new sessions", "its 3 live sessions are not ended"}},
				{kind: "member", action: "change", route: "web", name: "10.0.0.2:80", fields: []string{"backup"}, live: 4,
					effect: []string{"becomes a backup"}},
			},
		},
		{
			name:  "members reordered are no change",
			edits: []string{"      - address: 10.0.0.1:80\n      - address: 10.0.0.2:80\n        weight: 2\n", "      - address: 10.0.0.2:80\n        weight: 2\n      - address: 10.0.0.1:80\n"},
		},
		{
			name:  "a filter's options changed",
			edits: []string{"limit: {bytes: 100}", "limit: {bytes: 200}"},
			want: []want{
				{kind: "filter", action: "change", route: "web", name: "limit[1]", fields: []string{"bytes"}, live: 7,
					effect: []string{"built anew with the new options, the old one (index 1) closed at the reload",
						"the route's 7 live sessions take up the new list at once", "filters kept stay open"}},
			},
		},
		{
			name:  "a filter inserted in front",
			edits: []string{"      - pass\n", "      - latency: {delay: 10ms}\n      - pass\n"},
			want: []want{
				{kind: "filter", action: "add", route: "web", name: "latency[0]", live: 7, effect: []string{"built new at index 0"}},
			},
		},
		{
			name:  "a filter removed",
			edits: []string{"      - pass\n", ""},
			want: []want{
				{kind: "filter", action: "remove", route: "web", name: "pass[0]", live: 7, effect: []string{"closed at the reload"}},
			},
		},
		{
			name:  "filters swapped",
			edits: []string{"      - pass\n      - limit: {bytes: 100}\n", "      - limit: {bytes: 100}\n      - pass\n"},
			want: []want{
				{kind: "filter", action: "change", route: "web", name: "pass[1]", fields: []string{"index"}, live: 7,
					effect: []string{"moves from index 0 to 1, the same filter kept"}},
			},
		},
		{
			name: "a route's filters all removed",
			edits: []string{`    filters:
      - pass
      - limit: {bytes: 100}
`, ""},
			want: []want{
				{kind: "filter", action: "remove", route: "web", name: "pass[0]", live: 7},
				{kind: "filter", action: "remove", route: "web", name: "limit[1]", live: 7},
			},
		},
		{
			name:  "grace period and resolver",
			edits: []string{"grace_period: 10s\n", "grace_period: 1m\nresolver: {servers: [10.0.0.53], interval: 1m}\n"},
			want: []want{
				{kind: "setting", action: "change", name: "grace_period", fields: []string{"grace_period"},
					effect: []string{"a stop lets live sessions finish for 1m0s (was 10s); no session is touched now"}},
				{kind: "setting", action: "change", name: "resolver", fields: []string{"servers", "interval"},
					effect: []string{"live sessions keep their upstream connections"}},
			},
		},
		{
			name:  "admin and toxiproxy added",
			edits: []string{"grace_period: 10s\n", "grace_period: 10s\nadmin: {listen: \"127.0.0.1:9901\"}\ntoxiproxy: {}\n"},
			want: []want{
				{kind: "setting", action: "add", name: "admin", effect: []string{"no proxied session is touched"}},
				{kind: "setting", action: "add", name: "toxiproxy"},
			},
		},
	}
	cur := parsePlan(t, planBase)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			next := parsePlan(t, edit(t, planBase, tc.edits...))
			checkPlan(t, Plan(cur, next, planLive), tc.want)
		})
	}
}

// Everything at once comes in the documented order: listeners (open,
// moved, closed), routes, members, filters, settings; and the same
// configurations give the same plan every time (no map order leaks in).
func TestPlanOrderIsStable(t *testing.T) {
	cur := parsePlan(t, planBase)
	next := parsePlan(t, edit(t, planBase,
		"grace_period: 10s\n", "grace_period: 20s\n",
		"name: db", "name: pg",
		`["127.0.0.1:8080", "127.0.0.1:8081"]`, `["127.0.0.1:8081", "127.0.0.1:9090"]`,
		"      - address: 10.0.0.1:80\n", "",
		"limit: {bytes: 100}", "limit: {bytes: 200}",
		"    max_connections: 10\n", "    max_connections: 10\n  - name: cache\n    listen: [\"127.0.0.1:6379\"]\n    upstreams: [{address: \"10.0.2.1:6379\"}]\n",
	))
	wants := []want{
		{kind: "listener", action: "open", route: "web", name: "127.0.0.1:9090"},
		{kind: "listener", action: "open", route: "cache", name: "127.0.0.1:6379"},
		{kind: "listener", action: "change", route: "pg", name: "127.0.0.1:5432", fields: []string{"route"}, live: 12},
		{kind: "listener", action: "close", route: "web", name: "127.0.0.1:8080", live: 7},
		{kind: "route", action: "remove", route: "db", name: "db", live: 12},
		{kind: "route", action: "change", route: "web", name: "web", fields: []string{"listen"}, live: 7},
		{kind: "route", action: "add", route: "pg", name: "pg"},
		{kind: "route", action: "add", route: "cache", name: "cache"},
		{kind: "member", action: "remove", route: "web", name: "10.0.0.1:80", live: 3},
		{kind: "filter", action: "change", route: "web", name: "limit[1]", fields: []string{"bytes"}, live: 7},
		{kind: "setting", action: "change", name: "grace_period", fields: []string{"grace_period"}},
	}
	first := Plan(cur, next, planLive)
	checkPlan(t, first, wants)
	for range 20 {
		if again := Plan(cur, next, planLive); !slices.EqualFunc(first, again, func(a, b admin.Change) bool {
			return changeString(a) == changeString(b) && a.Effect == b.Effect
		}) {
			t.Fatal("the same configurations gave another plan")
		}
	}
}

// LiveSessions is the route's count for route, listener and filter
// changes and the member's for member changes: a route with none live says
// 0, and a member's count is not its route's.
func TestPlanLiveSessionsFromTheirOwner(t *testing.T) {
	cur := parsePlan(t, planBase)
	next := parsePlan(t, edit(t, planBase,
		"        weight: 2\n", "        weight: 5\n",
		"max_connections: 10", "max_connections: 11",
		"- pass\n", "- limit: {bytes: 1}\n",
	))
	live := fakeLive{
		routes:  map[string]int64{"web": 100},
		members: map[string]int64{"web/10.0.0.2:80": 40},
	}
	checkPlan(t, Plan(cur, next, live), []want{
		{kind: "route", action: "change", route: "db", name: "db", fields: []string{"max_connections"}, live: 0,
			effect: []string{"counts the 0 live sessions"}},
		{kind: "member", action: "change", route: "web", name: "10.0.0.2:80", fields: []string{"weight"}, live: 40,
			effect: []string{"its 40 live sessions are not ended"}},
		{kind: "filter", action: "remove", route: "web", name: "pass[0]", live: 100},
		{kind: "filter", action: "add", route: "web", name: "limit[0]", live: 100},
	})
}

// A member listed twice is two members of one name: removing one of them
// is one removal, not a change of both.
func TestPlanMemberListedTwice(t *testing.T) {
	cur := parsePlan(t, edit(t, planBase, "      - address: 10.0.0.1:80\n", "      - address: 10.0.0.1:80\n      - address: 10.0.0.1:80\n        weight: 9\n"))
	next := parsePlan(t, planBase)
	checkPlan(t, Plan(cur, next, planLive), []want{
		{kind: "member", action: "remove", route: "web", name: "10.0.0.1:80", live: 3},
	})
}

// The filter matching follows compileFilters' reuse: the first unused
// equal entry is kept, whatever its index, so a duplicate removed at the
// front closes one filter, and the kept ones that stay in order are not
// reported as moved.
func TestPlanFiltersMatchReuse(t *testing.T) {
	mk := func(names ...string) []config.Filter {
		var fs []config.Filter
		for _, n := range names {
			fs = append(fs, config.Filter{Name: n})
		}
		return fs
	}
	cases := []struct {
		a, b []string
		want []string // Action Name Fields
	}{
		{[]string{"pass", "pass"}, []string{"pass"}, []string{"remove pass[1] []"}},
		{[]string{"a", "b", "c"}, []string{"c", "a", "b"}, []string{"change c[0] [index]"}},
		{[]string{"a", "b", "c"}, []string{"a", "x", "c"}, []string{"remove b[1] []", "add x[1] []"}},
		{[]string{"a", "b"}, []string{"b", "a", "a"}, []string{"change a[1] [index]", "add a[2] []"}},
		{nil, []string{"a"}, []string{"add a[0] []"}},
	}
	for _, tc := range cases {
		got := planFilters(&config.Route{Name: "r", Filters: mk(tc.a...)}, &config.Route{Name: "r", Filters: mk(tc.b...)}, fakeLive{})
		var gs []string
		for _, c := range got {
			gs = append(gs, fmt.Sprintf("%s %s %v", c.Action, c.Name, c.Fields))
		}
		if !slices.Equal(gs, tc.want) {
			t.Errorf("%v → %v: %q, want %q", tc.a, tc.b, gs, tc.want)
		}
	}
}

// route.Key: an address on port 0 (any free port) is keyed by its route
// too, so renaming its route closes its listener and opens another.
func TestPlanRenamedRouteOnPortZero(t *testing.T) {
	doc := edit(t, planBase, `["127.0.0.1:5432"]`, `["127.0.0.1:0"]`)
	cur := parsePlan(t, doc)
	next := parsePlan(t, edit(t, doc, "name: db", "name: pg"))
	checkPlan(t, Plan(cur, next, planLive), []want{
		{kind: "listener", action: "open", route: "pg", name: "127.0.0.1:0"},
		{kind: "listener", action: "close", route: "db", name: "127.0.0.1:0", live: 12, effect: []string{"12 live sessions of route db"}},
		{kind: "route", action: "remove", route: "db", name: "db", live: 12},
		{kind: "route", action: "add", route: "pg", name: "pg"},
	})
}

// Where a value is written is no change: a file with every line moved
// (positions in routes, filters, options and checks all differ) plans
// nothing.
func TestPlanIgnoresPositions(t *testing.T) {
	doc := edit(t, planBase, "    max_connections: 10\n", "    max_connections: 10\n    health_check: {interval: 1s, send: PING}\n")
	cur := parsePlan(t, doc)
	next := parsePlan(t, "# moved\n\n"+edit(t, doc, "limit: {bytes: 100}", "limit:   {bytes:  100}"))
	checkPlan(t, Plan(cur, next, planLive), nil)
}

// The edge's settings are listed: a route's match, PROXY protocol both
// ways, lists and limits as "new sessions only", a per-client table that
// is regrouped as starting over; the top level's lists and limits as
// settings; a member's send_proxy as a member change.
func TestPlanEdgeFields(t *testing.T) {
	cur := edit(t, planBase, "    max_connections: 10\n", "    max_connections: 10\n    limits: {per_client: {max_connections: 5}}\n")
	next := edit(t, cur,
		"grace_period: 10s\n", "grace_period: 10s\ndeny: [10.6.6.0/24]\nlimits: {accept_rate: {rate: 100/s}}\n",
		`    upstreams: [{address: "10.0.1.1:5432"}]`, `    upstreams: [{address: "10.0.1.1:5432", send_proxy: v1}]`,
		"    limits: {per_client: {max_connections: 5}}\n",
		"    limits: {per_client: {max_connections: 5, ipv4_prefix: 24}}\n    send_proxy: v2\n    allow: [10.0.0.0/8]\n"+
			"    proxy_protocol: {trusted: [10.1.0.0/16]}\n    match: {sni: [db.example.com]}\n")
	checkPlan(t, Plan(parsePlan(t, cur), parsePlan(t, next), planLive), []want{
		{kind: kindRoute, action: actionChange, route: "db", name: "db",
			fields: []string{"match", "proxy_protocol", "send_proxy", "allow", "limits"}, live: 12,
			effect: []string{"new sessions take the new match, proxy_protocol, send_proxy, allow", "the per-client table starts over"}},
		{kind: kindMember, action: actionChange, route: "db", name: "10.0.1.1:5432", fields: []string{"send_proxy"}, live: 12,
			effect: []string{"send_proxy v1 (was as the route)"}},
		{kind: kindSetting, action: actionChange, name: "access", fields: []string{"deny"},
			effect: []string{"new clients of every route are checked against the new lists"}},
		{kind: kindSetting, action: actionChange, name: "limits", fields: []string{"limits"},
			effect: []string{"the new accept rate and per-client limits apply to new clients"}},
	})
}
