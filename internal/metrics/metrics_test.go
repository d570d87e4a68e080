package metrics

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fixed is a Source that always answers the same Snapshot.
type fixed Snapshot

func (f fixed) Snapshot() Snapshot { return Snapshot(f) }

// reloadTime is 2024-01-02T03:04:05.5Z, a value a float64 holds exactly in seconds.
var reloadTime = time.Unix(1704164645, 500_000_000)

// fullSnapshot has every metric at least once, with every key the app fills.
func fullSnapshot() Snapshot {
	return Snapshot{
		Routes: []Route{{
			Name:    "web",
			Started: 10,
			Ended: map[string]uint64{
				"done": 6, "client_reset": 1, "no_upstream": 1, "admin": 0,
			},
			Live: 2,
			States: map[string]int64{
				"connecting": 0, "open": 1, "half_closed_client": 1, "half_closed_upstream": 0,
			},
			ToUpstream: 1234, ToClient: 5678,
			ConnectTime: Histogram{Bounds: []float64{0.001, 0.01, 0.1}, Counts: []uint64{3, 4, 1, 1}, Sum: 0.75},
			Duration:    Histogram{Bounds: []float64{1, 60}, Counts: []uint64{5, 2, 1}, Sum: 300.5},
			Refused: map[string]uint64{"limit": 2, "no_upstream": 1, "local_error": 0,
				"denied": 4, "client_limit": 1, "rate_limit": 0},
			Retries: 3,
			Members: []Member{
				{Name: "a", Addr: "127.0.0.1:8001", Up: true, Weight: 2, Live: 2,
					ConnectFailures: 1, ChecksPassed: 40, ChecksFailed: 1},
				{Name: "b", Addr: "127.0.0.1:8002", Ejected: true, Draining: true, Disabled: true, Weight: 1,
					ConnectFailures: 5, ChecksPassed: 0, ChecksFailed: 41},
			},
			Matched: map[string]uint64{"sni:*.example.com": 7, "default": 3},
			Clients: &Clients{Tracked: 3, Evicted: 1, Untracked: 0},
		}},
		Listeners: []Listener{{Route: "web", Addr: "127.0.0.1:8080",
			Pauses:  map[string]uint64{"accept_error": 0, "descriptors": 3, "local_error": 1},
			Refused: map[string]uint64{"denied": 5, "no_route": 1, "proxy_untrusted": 0, "proxy_error": 0, "rate_limit": 0, "client_limit": 0},
			Peeks:   map[string]uint64{"tls": 9, "not_tls": 1, "timeout": 0, "too_large": 0, "closed": 0},
			Headers: map[string]uint64{"v1": 0, "v2": 10, "local": 2, "absent": 0},
			Peeking: 1}},
		Clients:               &Clients{Tracked: 5, Evicted: 0, Untracked: 0},
		LogRefusalsSuppressed: 2,
		Filters:               []Filter{{Route: "web", Name: "pcap", Index: 1, DroppedBytes: 4096, DroppedWrites: 2}},
		ReloadsOK:             4,
		ReloadsFailed:         1,
		LastReloadOK:          reloadTime,
		LogDroppedAccess:      7,
		LogDroppedOther:       0,
		UDP: &UDP{ToUpstream: 30, ToClient: 29, Refused: 1,
			Dropped: map[string]uint64{"too_big": 1, "queue_full": 0, "filter": 2, "other": 0}},
	}
}

func pedanticGather(t *testing.T, s Snapshot) []*dto.MetricFamily {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(NewCollector(fixed(s)))
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("a pedantic registry failed to gather: %v", err)
	}
	return mfs
}

// pierName is the naming rule every pier metric follows: the pier_ prefix, a subsystem,
// lower-case snake case.
var pierName = regexp.MustCompile(`^pier_(route|member|listener|clients|config|filter|log|udp)_[a-z_]+$`)

func TestMetricNamesFollowPrometheusConventions(t *testing.T) {
	mfs := pedanticGather(t, fullSnapshot())
	problems, err := promlint.NewWithMetricFamilies(mfs).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
	for _, mf := range mfs {
		name := mf.GetName()
		if !pierName.MatchString(name) {
			t.Errorf("%s does not match %s", name, pierName)
		}
		if counter := mf.GetType() == dto.MetricType_COUNTER; counter != strings.HasSuffix(name, "_total") {
			t.Errorf("%s is a %s: only counters, and all of them, end in _total", name, mf.GetType())
		}
		if mf.GetHelp() == "" {
			t.Errorf("%s has no help", name)
		}
	}
}

// docTable reads the metric table of docs/admin.md.
func docTable(t *testing.T) (path string, rows map[string]docRow) {
	t.Helper()
	for _, p := range []string{"../../docs/admin.md"} {
		data, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		rows := parseMetricTable(t, data)
		if len(rows) > 0 {
			return p, rows
		}
	}
	t.Fatal("no metric table in docs/admin.md")
	return "", nil
}

type docRow struct {
	Type   string
	Labels []string
}

var (
	tableRow = regexp.MustCompile("^\\|\\s*`(pier_[a-z_]+)`\\s*\\|\\s*([a-z]+)\\s*\\|([^|]*)\\|")
	backtick = regexp.MustCompile("`([a-z_]+)`")
)

func parseMetricTable(t *testing.T, data []byte) map[string]docRow {
	rows := map[string]docRow{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		m := tableRow.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		var labels []string
		for _, l := range backtick.FindAllStringSubmatch(m[3], -1) {
			labels = append(labels, l[1])
		}
		sort.Strings(labels)
		if _, dup := rows[m[1]]; dup {
			t.Errorf("%s is documented twice", m[1])
		}
		rows[m[1]] = docRow{Type: m[2], Labels: labels}
	}
	return rows
}

// TestEveryMetricIsDocumented pins the metric table to the code both ways: a metric
// pier exposes is in the table with its type and labels, and the table lists nothing
// pier does not expose.
func TestEveryMetricIsDocumented(t *testing.T) {
	path, documented := docTable(t)
	exposed := map[string]docRow{}
	for _, mf := range pedanticGather(t, fullSnapshot()) {
		var labels []string
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if !slices.Contains(labels, lp.GetName()) {
					labels = append(labels, lp.GetName())
				}
			}
		}
		sort.Strings(labels)
		exposed[mf.GetName()] = docRow{Type: strings.ToLower(mf.GetType().String()), Labels: labels}
	}
	if diff := cmp.Diff(exposed, documented); diff != "" {
		t.Errorf("metrics exposed (-) differ from the table in %s (+):\n%s", path, diff)
	}
}

// TestDocExampleScrapeIsReal: the example scrape in the docs is, line for line and in
// order, what pier exposes for the route of fullSnapshot.
func TestDocExampleScrapeIsReal(t *testing.T) {
	path, _ := docTable(t)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var example []string
	in := false
	for l := range strings.Lines(string(data)) {
		l = strings.TrimSuffix(l, "\n")
		switch {
		case strings.HasPrefix(l, "$ curl -s") && strings.Contains(l, "/metrics"):
			in = true
		case in && strings.HasPrefix(l, "```"):
			in = false
		case in:
			example = append(example, l)
		}
	}
	if len(example) == 0 {
		t.Fatalf("no example scrape in %s", path)
	}
	var real []string
	for l := range strings.Lines(exposition(t, pedanticGather(t, fullSnapshot()))) {
		if strings.HasPrefix(l, "pier_route") {
			real = append(real, strings.TrimSuffix(l, "\n"))
		}
	}
	if diff := cmp.Diff(real, example); diff != "" {
		t.Errorf("the example scrape in %s (+) is not what pier exposes (-):\n%s", path, diff)
	}
}

// TestExposition pins the exact text a fixed Snapshot becomes, histograms included:
// buckets are cumulative sums of the per-bucket counts and _count is their total, so
// the +Inf bucket equals _count.
func TestExposition(t *testing.T) {
	const want = `# HELP pier_clients_tracked Clients (addresses or prefixes) in the top level's per-client table now.
# TYPE pier_clients_tracked gauge
pier_clients_tracked 5
# HELP pier_config_last_reload_success_timestamp_seconds Unix time of the last configuration load that succeeded (the start's included).
# TYPE pier_config_last_reload_success_timestamp_seconds gauge
pier_config_last_reload_success_timestamp_seconds 1.7041646455e+09
# HELP pier_filter_dropped_bytes_total Bytes a filter (dump, pcap) could not write to its output and dropped.
# TYPE pier_filter_dropped_bytes_total counter
pier_filter_dropped_bytes_total{filter="pcap",index="1",route="web"} 4096
# HELP pier_listener_clients_refused_total Clients the listener refused before a route took them, by why: denied, no_route, proxy_untrusted, proxy_error, rate_limit, client_limit.
# TYPE pier_listener_clients_refused_total counter
pier_listener_clients_refused_total{listener="127.0.0.1:8080",why="client_limit"} 0
pier_listener_clients_refused_total{listener="127.0.0.1:8080",why="denied"} 5
pier_listener_clients_refused_total{listener="127.0.0.1:8080",why="no_route"} 1
pier_listener_clients_refused_total{listener="127.0.0.1:8080",why="proxy_error"} 0
pier_listener_clients_refused_total{listener="127.0.0.1:8080",why="proxy_untrusted"} 0
pier_listener_clients_refused_total{listener="127.0.0.1:8080",why="rate_limit"} 0
# HELP pier_listener_sessions_peeking Sessions on the listener reading their first bytes (PROXY header, ClientHello) before a route is chosen.
# TYPE pier_listener_sessions_peeking gauge
pier_listener_sessions_peeking{listener="127.0.0.1:8080"} 1
# HELP pier_member_health_checks_total Health checks of the member, by result: pass, fail.
# TYPE pier_member_health_checks_total counter
pier_member_health_checks_total{addr="127.0.0.1:8001",member="a",result="fail",route="web"} 1
pier_member_health_checks_total{addr="127.0.0.1:8001",member="a",result="pass",route="web"} 40
pier_member_health_checks_total{addr="127.0.0.1:8002",member="b",result="fail",route="web"} 41
pier_member_health_checks_total{addr="127.0.0.1:8002",member="b",result="pass",route="web"} 0
# HELP pier_member_up 1 when the member's health check passes (or it is unchecked), 0 when it is down.
# TYPE pier_member_up gauge
pier_member_up{addr="127.0.0.1:8001",member="a",route="web"} 1
pier_member_up{addr="127.0.0.1:8002",member="b",route="web"} 0
# HELP pier_route_clients_refused_total Clients refused once the route was known, by why: limit (max_connections), no_upstream, local_error, denied, client_limit, rate_limit.
# TYPE pier_route_clients_refused_total counter
pier_route_clients_refused_total{route="web",why="client_limit"} 1
pier_route_clients_refused_total{route="web",why="denied"} 4
pier_route_clients_refused_total{route="web",why="limit"} 2
pier_route_clients_refused_total{route="web",why="local_error"} 0
pier_route_clients_refused_total{route="web",why="no_upstream"} 1
pier_route_clients_refused_total{route="web",why="rate_limit"} 0
# HELP pier_route_connect_duration_seconds Time from the start of the dial that succeeded to the upstream connection being ready.
# TYPE pier_route_connect_duration_seconds histogram
pier_route_connect_duration_seconds_bucket{route="web",le="0.001"} 3
pier_route_connect_duration_seconds_bucket{route="web",le="0.01"} 7
pier_route_connect_duration_seconds_bucket{route="web",le="0.1"} 8
pier_route_connect_duration_seconds_bucket{route="web",le="+Inf"} 9
pier_route_connect_duration_seconds_sum{route="web"} 0.75
pier_route_connect_duration_seconds_count{route="web"} 9
# HELP pier_route_sessions Live sessions of the route by state: connecting, open, half_closed_client, half_closed_upstream.
# TYPE pier_route_sessions gauge
pier_route_sessions{route="web",state="connecting"} 0
pier_route_sessions{route="web",state="half_closed_client"} 1
pier_route_sessions{route="web",state="half_closed_upstream"} 0
pier_route_sessions{route="web",state="open"} 1
# HELP pier_route_sessions_ended_total Sessions the route finished, by close reason (as the access log's reason=).
# TYPE pier_route_sessions_ended_total counter
pier_route_sessions_ended_total{reason="admin",route="web"} 0
pier_route_sessions_ended_total{reason="client_reset",route="web"} 1
pier_route_sessions_ended_total{reason="done",route="web"} 6
pier_route_sessions_ended_total{reason="no_upstream",route="web"} 1
# HELP pier_route_sessions_matched_total Sessions the route took on a shared address, by the configured match key that chose it (sni:..., alpn:..., source:..., default).
# TYPE pier_route_sessions_matched_total counter
pier_route_sessions_matched_total{match="default",route="web"} 3
pier_route_sessions_matched_total{match="sni:*.example.com",route="web"} 7
`
	names := []string{
		"pier_config_last_reload_success_timestamp_seconds",
		"pier_filter_dropped_bytes_total",
		"pier_member_health_checks_total",
		"pier_member_up",
		"pier_route_clients_refused_total",
		"pier_route_connect_duration_seconds",
		"pier_route_sessions",
		"pier_route_sessions_ended_total",
		"pier_route_sessions_matched_total",
		"pier_listener_clients_refused_total",
		"pier_listener_sessions_peeking",
		"pier_clients_tracked",
	}
	got := exposition(t, pedanticGather(t, fullSnapshot()), names...)
	if diff := cmp.Diff(strings.Split(want, "\n"), strings.Split(got, "\n")); diff != "" {
		t.Errorf("exposition (-want +got):\n%s", diff)
	}
}

// exposition encodes the families named (all when none) as text format 0.0.4.
func exposition(t *testing.T, mfs []*dto.MetricFamily, names ...string) string {
	t.Helper()
	var buf bytes.Buffer
	enc := expfmt.NewEncoder(&buf, expfmt.NewFormat(expfmt.TypeTextPlain).WithEscapingScheme(model.NoEscaping))
	for _, mf := range mfs {
		if len(names) > 0 && !slices.Contains(names, mf.GetName()) {
			continue
		}
		if err := enc.Encode(mf); err != nil {
			t.Fatal(err)
		}
	}
	return buf.String()
}

func find(mfs []*dto.MetricFamily, name string) *dto.MetricFamily {
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf
		}
	}
	return nil
}

// TestHistogramFromPerBucketCounts pins how Counts that do not have len(Bounds)+1
// entries are read: missing ones are zero, extra ones lie above the last bound, and
// _count is always the total of every count given.
func TestHistogramFromPerBucketCounts(t *testing.T) {
	for _, tc := range []struct {
		name       string
		h          Histogram
		cumulative []uint64 // per bound
		count      uint64
	}{
		{"as the data path keeps it", Histogram{Bounds: []float64{1, 2}, Counts: []uint64{1, 2, 3}}, []uint64{1, 3}, 6},
		{"nothing above the last bound", Histogram{Bounds: []float64{1, 2}, Counts: []uint64{4, 0, 0}}, []uint64{4, 4}, 4},
		{"empty", Histogram{Bounds: []float64{1, 2}}, []uint64{0, 0}, 0},
		{"short counts", Histogram{Bounds: []float64{1, 2, 3}, Counts: []uint64{2}}, []uint64{2, 2, 2}, 2},
		{"long counts", Histogram{Bounds: []float64{1}, Counts: []uint64{1, 2, 3}}, []uint64{1}, 6},
		{"no bounds", Histogram{Counts: []uint64{5}}, nil, 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := Snapshot{Routes: []Route{{Name: "r", ConnectTime: tc.h}}}
			mf := find(pedanticGather(t, s), "pier_route_connect_duration_seconds")
			if mf == nil {
				t.Fatal("no connect histogram")
			}
			h := mf.GetMetric()[0].GetHistogram()
			var got []uint64
			for _, b := range h.GetBucket() {
				got = append(got, b.GetCumulativeCount())
			}
			if !slices.Equal(got, tc.cumulative) {
				t.Errorf("cumulative buckets %v, want %v", got, tc.cumulative)
			}
			if h.GetSampleCount() != tc.count {
				t.Errorf("count %d, want %d", h.GetSampleCount(), tc.count)
			}
		})
	}
}

func TestLastReloadTimestampAbsentWhenNeverLoaded(t *testing.T) {
	s := fullSnapshot()
	s.LastReloadOK = time.Time{}
	mfs := pedanticGather(t, s)
	if mf := find(mfs, "pier_config_last_reload_success_timestamp_seconds"); mf != nil {
		t.Errorf("a zero LastReloadOK exposed %v", mf)
	}
	if find(mfs, "pier_config_reloads_total") == nil {
		t.Error("reloads_total went missing with the timestamp")
	}
}

// countingSource counts Snapshot calls and changes its numbers on each, so concurrent
// scrapes read a moving source.
type countingSource struct{ calls atomic.Uint64 }

func (c *countingSource) Snapshot() Snapshot {
	n := c.calls.Add(1)
	s := fullSnapshot()
	s.Routes[0].Started = n
	return s
}

func TestCollectReadsOneSnapshotPerScrape(t *testing.T) {
	var src countingSource
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(NewCollector(&src))
	for i := 1; i <= 3; i++ {
		if _, err := reg.Gather(); err != nil {
			t.Fatal(err)
		}
		if got := src.calls.Load(); got != uint64(i) {
			t.Fatalf("after %d scrapes Snapshot was called %d times", i, got)
		}
	}
}

// serve starts Handler(reg) on 127.0.0.1:0 and returns its URL.
func serve(t *testing.T, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(h)
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	return srv.URL + "/metrics"
}

func scrape(t *testing.T, client *http.Client, url string) (status int, contentType, body string) {
	t.Helper()
	resp, err := client.Get(url)
	if err != nil {
		t.Error(err)
		return 0, "", ""
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Error(err)
	}
	return resp.StatusCode, resp.Header.Get("Content-Type"), string(data)
}

func testClient(t *testing.T) *http.Client {
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// TestHandlerServesTextExposition scrapes the served handler as Prometheus does and
// finds pier's metrics beside the Go runtime's and the process's.
func TestHandlerServesTextExposition(t *testing.T) {
	url := serve(t, Handler(NewRegistry(fixed(fullSnapshot()))))
	status, ctype, body := scrape(t, testClient(t), url)
	if status != http.StatusOK {
		t.Fatalf("status %d: %s", status, body)
	}
	if !strings.HasPrefix(ctype, "text/plain; version=0.0.4") {
		t.Errorf("Content-Type %q, want the text exposition format", ctype)
	}
	for _, line := range []string{
		`pier_route_sessions_started_total{route="web"} 10`,
		`pier_route_bytes_total{direction="to_upstream",route="web"} 1234`,
		`pier_route_session_duration_seconds_bucket{route="web",le="60"} 7`,
		`pier_listener_accept_pauses_total{listener="127.0.0.1:8080",route="web",why="descriptors"} 3`,
		`pier_log_dropped_records_total{kind="access"} 7`,
		`# TYPE go_goroutines gauge`,
		`# TYPE process_cpu_seconds_total counter`,
	} {
		if !strings.Contains(body, "\n"+line+"\n") {
			t.Errorf("the scrape has no line %q", line)
		}
	}
}

// TestHandlerReportsABadSeriesAndServesTheRest: a label value client_golang refuses
// (not UTF-8) neither panics nor empties the scrape; the handler counts the error.
func TestHandlerReportsABadSeriesAndServesTheRest(t *testing.T) {
	s := fullSnapshot()
	s.Routes[0].Members[1].Name = "b\xff"
	reg := NewRegistry(fixed(s))
	if _, err := reg.Gather(); err == nil {
		t.Fatal("gathering a non-UTF-8 label value reported no error")
	}
	client := testClient(t)
	url := serve(t, Handler(reg))
	status, _, body := scrape(t, client, url)
	if status != http.StatusOK {
		t.Fatalf("status %d: %s", status, body)
	}
	if !strings.Contains(body, `pier_route_sessions_started_total{route="web"} 10`) {
		t.Error("the good series were not served")
	}
	_, _, body = scrape(t, client, url)
	if !strings.Contains(body, `promhttp_metric_handler_errors_total{cause="gathering"} 1`) {
		t.Errorf("the gathering error was not counted:\n%s", grepLines(body, "promhttp_metric_handler_errors_total"))
	}
}

func grepLines(body, prefix string) string {
	var out []string
	for l := range strings.Lines(body) {
		if strings.HasPrefix(l, prefix) {
			out = append(out, strings.TrimSuffix(l, "\n"))
		}
	}
	return strings.Join(out, "\n")
}

// TestConcurrentScrapes scrapes one handler from as many clients as it admits at
// once, over a source whose numbers move; -race checks the collector shares nothing
// unsafely, and every scrape must read its own Snapshot.
func TestConcurrentScrapes(t *testing.T) {
	const scrapers, each = maxScrapesInFlight, 10
	var src countingSource
	url := serve(t, Handler(NewRegistry(&src)))
	client := testClient(t)
	var wg sync.WaitGroup
	for range scrapers {
		wg.Go(func() {
			for range each {
				status, _, body := scrape(t, client, url)
				if status != http.StatusOK || !strings.Contains(body, "pier_route_sessions_started_total{") {
					t.Errorf("status %d, body:\n%.300s", status, body)
					return
				}
			}
		})
	}
	wg.Wait()
	if got := src.calls.Load(); got != scrapers*each {
		t.Errorf("%d scrapes called Snapshot %d times", scrapers*each, got)
	}
}

// benchSnapshot is 50 routes of 4 members each, a listener and a filter per route.
func benchSnapshot() Snapshot {
	base := fullSnapshot()
	var s Snapshot
	for i := range 50 {
		r := base.Routes[0]
		r.Name = fmt.Sprintf("route%02d", i)
		r.Members = nil
		for j := range 4 {
			m := base.Routes[0].Members[j%2]
			m.Name = fmt.Sprintf("m%d", j)
			m.Addr = fmt.Sprintf("10.0.%d.%d:80", i, j)
			r.Members = append(r.Members, m)
		}
		r.ConnectTime = Histogram{Bounds: make([]float64, 13), Counts: make([]uint64, 14)}
		r.Duration = Histogram{Bounds: make([]float64, 12), Counts: make([]uint64, 13)}
		for k := range r.ConnectTime.Bounds {
			r.ConnectTime.Bounds[k] = 0.0005 * float64(int(1)<<k)
		}
		for k := range r.Duration.Bounds {
			r.Duration.Bounds[k] = 0.001 * float64(int(1)<<(2*k))
		}
		s.Routes = append(s.Routes, r)
		l := base.Listeners[0]
		l.Route = r.Name
		s.Listeners = append(s.Listeners, l)
		f := base.Filters[0]
		f.Route = r.Name
		s.Filters = append(s.Filters, f)
	}
	s.ReloadsOK, s.LastReloadOK = 1, reloadTime
	return s
}

// BenchmarkCollect is one scrape's Collect of 50 routes × 4 members, without the
// registry's sorting and encoding.
func BenchmarkCollect(b *testing.B) {
	c := NewCollector(fixed(benchSnapshot()))
	ch := make(chan prometheus.Metric, 8192)
	var n int
	b.ReportAllocs()
	for b.Loop() {
		c.Collect(ch)
		for n = 0; len(ch) > 0; n++ {
			<-ch
		}
	}
	b.ReportMetric(float64(n), "metrics/op")
}

// BenchmarkScrape is one whole scrape of pier's collector: Gather and text encoding.
func BenchmarkScrape(b *testing.B) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(NewCollector(fixed(benchSnapshot())))
	h := Handler(reg)
	req := httptest.NewRequest("GET", "/metrics", nil)
	b.ReportAllocs()
	for b.Loop() {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != http.StatusOK {
			b.Fatal(w.Code)
		}
	}
}
