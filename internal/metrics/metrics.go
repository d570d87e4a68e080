// Package metrics exposes pier's counters to Prometheus. It is the only pier package
// that imports client_golang: the data path keeps its own counters (internal/stats, the
// pool's, the listeners'), the application layer copies them into a Snapshot when
// scraped, and this package turns that Snapshot into const metrics. Nothing here runs
// on a relay loop or touches one.
//
// Use:
//
//	reg := metrics.NewRegistry(daemon) // daemon implements Source
//	mux.Handle("GET /metrics", metrics.Handler(reg))
//
// Every metric is listed in docs/admin.md; a test checks the list both ways.
package metrics

import (
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Source gives the numbers of one scrape. Snapshot is called once per scrape, from the
// HTTP server's goroutine, possibly by several scrapes at once: it must be safe for
// concurrent use and must not wait on a relay loop.
type Source interface{ Snapshot() Snapshot }

// Snapshot is everything one scrape exposes. Every key of its maps is emitted, zeros
// included, so the Source fills each map with all the keys it knows (every close reason,
// every state, every why) and a series never appears only after its first event.
type Snapshot struct {
	Routes                   []Route
	Listeners                []Listener
	Filters                  []Filter
	ReloadsOK, ReloadsFailed uint64
	// LastReloadOK is when the configuration was last loaded without error (the start
	// counts as a load). Zero: never, and pier_config_last_reload_success_timestamp_seconds
	// is then not emitted rather than claiming 1970.
	LastReloadOK                      time.Time
	LogDroppedAccess, LogDroppedOther uint64
	// Clients is the top level's per-client table; nil: the top level has no per_client
	// limits, and its series are not emitted.
	Clients *Clients
	// LogRefusalsSuppressed counts refusal log lines not written because refusals came
	// faster than the log's rate for them (every refusal is still counted).
	LogRefusalsSuppressed uint64
	// UDP is the UDP server's datagram counts; nil: no udp route is configured, and its series
	// are not emitted. (Each udp route's flows are its sessions in Routes.)
	UDP *UDP
}

// UDP is the datagram counts of every udp route together.
type UDP struct {
	ToUpstream, ToClient uint64            // datagrams delivered
	Dropped              map[string]uint64 // datagrams not delivered, by why: too_big, queue_full, filter, other
	Refused              uint64            // datagrams from clients refused a flow
}

// Clients is a per-client table's counts (a scope's: the top level's or a route's).
type Clients struct {
	Tracked   int    // clients (addresses or prefixes) in the table now
	Evicted   uint64 // least recently seen clients dropped to make room
	Untracked uint64 // clients admitted untracked: the table was full of live clients
}

// Route is one route's totals, summed over the relay loops.
type Route struct {
	Name    string
	Started uint64
	Ended   map[string]uint64 // by close reason name
	Live    int64
	States  map[string]int64 // live sessions by state name
	// ToUpstream and ToClient are bytes delivered, live sessions' included.
	ToUpstream, ToClient  uint64
	ConnectTime, Duration Histogram         // seconds
	Refused               map[string]uint64 // by why: limit, no_upstream, local_error
	Retries               uint64            // dials beyond the first
	Members               []Member
	// Matched counts sessions by the configured match key that chose the route
	// ("sni:*.example.com", "default"); nil: the route has no match.
	Matched map[string]uint64
	// Clients is the route's per-client table; nil: the route has no per_client limits.
	Clients *Clients
}

// Histogram is a histogram's buckets as the data path keeps them: per bucket, not
// cumulative. Counts has len(Bounds)+1 entries, the last counting what lies above the
// last bound; a shorter Counts is read as zeros, a longer one's extra entries count
// above the last bound. The count exposed is the sum of Counts, so the +Inf bucket and
// _count always agree.
type Histogram struct {
	Bounds []float64 // upper bounds in seconds, ascending
	Counts []uint64
	Sum    float64 // seconds
}

// Member is one pool member of a route.
type Member struct {
	Name, Addr                                  string
	Up, Ejected, Draining, Disabled             bool
	Weight                                      int
	Live                                        int64
	ConnectFailures, ChecksPassed, ChecksFailed uint64
}

// Listener is one listening socket of a route.
type Listener struct {
	Route, Addr string
	Pauses      map[string]uint64 // by why: accept_error, descriptors, local_error
	// The edge's counts: clients refused before a route by why (denied, no_route,
	// proxy_untrusted, proxy_error, rate_limit, client_limit), ClientHello peeks by
	// result (tls, not_tls, timeout, too_large, closed), PROXY headers from trusted
	// clients by result (v1, v2, local, absent), and sessions reading their first bytes
	// now. Nil maps emit nothing.
	Refused, Peeks, Headers map[string]uint64
	Peeking                 int64
}

// Filter is one filter of a route that can drop what it could not write (dump, pcap).
type Filter struct {
	Route, Name   string
	Index         int // its place in the route's filter list, from 0
	DroppedBytes  uint64
	DroppedWrites uint64
}

var (
	routeLabels    = []string{"route"}
	memberLabels   = []string{"route", "member", "addr"}
	listenerLabels = []string{"route", "listener", "why"}
	filterLabels   = []string{"route", "filter", "index"}
)

func newDesc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(name, help, labels, nil)
}

func with(labels []string, more ...string) []string {
	return append(append([]string(nil), labels...), more...)
}

// collector turns a Snapshot into const metrics. It holds no state of its own besides
// the descriptions, so concurrent scrapes need nothing more than a concurrent Source.
type collector struct {
	src Source

	started, ended, live, states, bytes     *prometheus.Desc
	connectTime, duration                   *prometheus.Desc
	refused, retries                        *prometheus.Desc
	up, ejected, draining, disabled, weight *prometheus.Desc
	memberLive, connectFailures, checks     *prometheus.Desc
	acceptPauses                            *prometheus.Desc
	reloads, lastReload                     *prometheus.Desc
	filterBytes, filterWrites, logDropped   *prometheus.Desc

	listenerRefused, peeks, headers, peeking             *prometheus.Desc
	matched                                              *prometheus.Desc
	tracked, evicted, untracked                          *prometheus.Desc
	routeTracked, routeEvicted, routeUntracked, suppress *prometheus.Desc
	udpDatagrams, udpDropped, udpRefused                 *prometheus.Desc
}

// NewCollector returns a collector that calls src.Snapshot once per scrape. Its metrics
// are const metrics: they carry no state between scrapes.
func NewCollector(src Source) prometheus.Collector {
	return &collector{
		src: src,

		started: newDesc("pier_route_sessions_started_total",
			"Sessions the route admitted (a client refused by the limit is not one).", routeLabels...),
		ended: newDesc("pier_route_sessions_ended_total",
			"Sessions the route finished, by close reason (as the access log's reason=).", with(routeLabels, "reason")...),
		live: newDesc("pier_route_sessions_live",
			"Sessions of the route open now.", routeLabels...),
		states: newDesc("pier_route_sessions",
			"Live sessions of the route by state: connecting, open, half_closed_client, half_closed_upstream.", with(routeLabels, "state")...),
		bytes: newDesc("pier_route_bytes_total",
			"Bytes the route delivered, live sessions' included, by direction: to_upstream, to_client.", with(routeLabels, "direction")...),
		connectTime: newDesc("pier_route_connect_duration_seconds",
			"Time from the start of the dial that succeeded to the upstream connection being ready.", routeLabels...),
		duration: newDesc("pier_route_session_duration_seconds",
			"Duration of finished sessions.", routeLabels...),
		refused: newDesc("pier_route_clients_refused_total",
			"Clients refused once the route was known, by why: limit (max_connections), no_upstream, local_error, denied, client_limit, rate_limit.", with(routeLabels, "why")...),
		retries: newDesc("pier_route_connect_retries_total",
			"Upstream dials beyond each session's first.", routeLabels...),

		up: newDesc("pier_member_up",
			"1 when the member's health check passes (or it is unchecked), 0 when it is down.", memberLabels...),
		ejected: newDesc("pier_member_ejected",
			"1 while the member is ejected after connect failures.", memberLabels...),
		draining: newDesc("pier_member_draining",
			"1 while the member is draining: it keeps its sessions but gets no new one.", memberLabels...),
		disabled: newDesc("pier_member_disabled",
			"1 while the member is disabled.", memberLabels...),
		weight: newDesc("pier_member_weight",
			"The member's weight in force (the file's or the admin overlay's).", memberLabels...),
		memberLive: newDesc("pier_member_sessions_live",
			"Sessions connected to the member now.", memberLabels...),
		connectFailures: newDesc("pier_member_connect_failures_total",
			"Dials to the member that failed.", memberLabels...),
		checks: newDesc("pier_member_health_checks_total",
			"Health checks of the member, by result: pass, fail.", with(memberLabels, "result")...),

		acceptPauses: newDesc("pier_listener_accept_pauses_total",
			"Times the listener stopped accepting for a while, by why: accept_error, descriptors (EMFILE and friends), local_error.", listenerLabels...),

		listenerRefused: newDesc("pier_listener_clients_refused_total",
			"Clients the listener refused before a route took them, by why: denied, no_route, proxy_untrusted, proxy_error, rate_limit, client_limit.", "listener", "why"),
		peeks: newDesc("pier_listener_peeks_total",
			"TLS ClientHello peeks on the listener, by result: tls, not_tls, timeout, too_large, closed.", "listener", "result"),
		headers: newDesc("pier_listener_proxy_headers_total",
			"What trusted clients sent for a PROXY protocol header, by result: v1, v2, local, absent.", "listener", "result"),
		peeking: newDesc("pier_listener_sessions_peeking",
			"Sessions on the listener reading their first bytes (PROXY header, ClientHello) before a route is chosen.", "listener"),
		matched: newDesc("pier_route_sessions_matched_total",
			"Sessions the route took on a shared address, by the configured match key that chose it (sni:..., alpn:..., source:..., default).", with(routeLabels, "match")...),
		tracked: newDesc("pier_clients_tracked",
			"Clients (addresses or prefixes) in the top level's per-client table now."),
		evicted: newDesc("pier_clients_evicted_total",
			"Least recently seen clients the top level's per-client table dropped to make room."),
		untracked: newDesc("pier_clients_untracked_total",
			"Clients admitted untracked because the top level's per-client table was full of clients with live sessions."),
		routeTracked: newDesc("pier_route_clients_tracked",
			"Clients (addresses or prefixes) in the route's per-client table now.", routeLabels...),
		routeEvicted: newDesc("pier_route_clients_evicted_total",
			"Least recently seen clients the route's per-client table dropped to make room.", routeLabels...),
		routeUntracked: newDesc("pier_route_clients_untracked_total",
			"Clients admitted untracked because the route's per-client table was full of clients with live sessions.", routeLabels...),
		udpDatagrams: newDesc("pier_udp_datagrams_total",
			"Datagrams the udp routes delivered, by direction: to_upstream, to_client.", "direction"),
		udpDropped: newDesc("pier_udp_datagrams_dropped_total",
			"Datagrams the udp routes did not deliver, by why: too_big (larger than the path allows, never cut), queue_full (a full socket buffer or filter queue), filter (a filter's loss, or its flow ended), other.", "why"),
		udpRefused: newDesc("pier_udp_datagrams_refused_total",
			"Datagrams from clients that were refused a flow (denied, rate_limit, client_limit, limit, no_route, no member)."),
		suppress: newDesc("pier_log_refusals_suppressed_total",
			"Refusal log lines not written because refusals came faster than their log rate (10/s, burst 100); each refusal is still counted."),

		reloads: newDesc("pier_config_reloads_total",
			"Configuration reloads, by result: ok, error.", "result"),
		lastReload: newDesc("pier_config_last_reload_success_timestamp_seconds",
			"Unix time of the last configuration load that succeeded (the start's included)."),

		filterBytes: newDesc("pier_filter_dropped_bytes_total",
			"Bytes a filter (dump, pcap) could not write to its output and dropped.", filterLabels...),
		filterWrites: newDesc("pier_filter_dropped_writes_total",
			"Writes a filter (dump, pcap) dropped because its output could not keep up.", filterLabels...),
		logDropped: newDesc("pier_log_dropped_records_total",
			"Log records dropped because the log writer could not keep up, by kind: access, other.", "kind"),
	}
}

func (c *collector) descs() []*prometheus.Desc {
	return []*prometheus.Desc{
		c.started, c.ended, c.live, c.states, c.bytes, c.connectTime, c.duration, c.refused, c.retries,
		c.up, c.ejected, c.draining, c.disabled, c.weight, c.memberLive, c.connectFailures, c.checks,
		c.acceptPauses, c.reloads, c.lastReload, c.filterBytes, c.filterWrites, c.logDropped,
		c.listenerRefused, c.peeks, c.headers, c.peeking, c.matched,
		c.tracked, c.evicted, c.untracked, c.routeTracked, c.routeEvicted, c.routeUntracked, c.suppress,
		c.udpDatagrams, c.udpDropped, c.udpRefused,
	}
}

// Describe sends every description, so a registry checks each scrape against them.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs() {
		ch <- d
	}
}

// Collect sends one scrape's metrics from a single Snapshot, so the numbers of one
// scrape are read together.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	s := c.src.Snapshot()
	e := emitter{ch: ch}
	for i := range s.Routes {
		c.collectRoute(e, &s.Routes[i])
	}
	for _, l := range s.Listeners {
		for why, n := range l.Pauses {
			e.counter(c.acceptPauses, n, l.Route, l.Addr, why)
		}
		for why, n := range l.Refused {
			e.counter(c.listenerRefused, n, l.Addr, why)
		}
		for result, n := range l.Peeks {
			e.counter(c.peeks, n, l.Addr, result)
		}
		for result, n := range l.Headers {
			e.counter(c.headers, n, l.Addr, result)
		}
		if l.Refused != nil {
			e.gauge(c.peeking, float64(l.Peeking), l.Addr)
		}
	}
	if t := s.Clients; t != nil {
		e.gauge(c.tracked, float64(t.Tracked))
		e.counter(c.evicted, t.Evicted)
		e.counter(c.untracked, t.Untracked)
	}
	e.counter(c.suppress, s.LogRefusalsSuppressed)
	if u := s.UDP; u != nil {
		e.counter(c.udpDatagrams, u.ToUpstream, "to_upstream")
		e.counter(c.udpDatagrams, u.ToClient, "to_client")
		for why, n := range u.Dropped {
			e.counter(c.udpDropped, n, why)
		}
		e.counter(c.udpRefused, u.Refused)
	}
	for _, f := range s.Filters {
		index := strconv.Itoa(f.Index)
		e.counter(c.filterBytes, f.DroppedBytes, f.Route, f.Name, index)
		e.counter(c.filterWrites, f.DroppedWrites, f.Route, f.Name, index)
	}
	e.counter(c.reloads, s.ReloadsOK, "ok")
	e.counter(c.reloads, s.ReloadsFailed, "error")
	if !s.LastReloadOK.IsZero() {
		e.gauge(c.lastReload, float64(s.LastReloadOK.UnixNano())/1e9)
	}
	e.counter(c.logDropped, s.LogDroppedAccess, "access")
	e.counter(c.logDropped, s.LogDroppedOther, "other")
}

func (c *collector) collectRoute(e emitter, r *Route) {
	name := r.Name
	e.counter(c.started, r.Started, name)
	for reason, n := range r.Ended {
		e.counter(c.ended, n, name, reason)
	}
	e.gauge(c.live, float64(r.Live), name)
	for state, n := range r.States {
		e.gauge(c.states, float64(n), name, state)
	}
	e.counter(c.bytes, r.ToUpstream, name, "to_upstream")
	e.counter(c.bytes, r.ToClient, name, "to_client")
	e.histogram(c.connectTime, &r.ConnectTime, name)
	e.histogram(c.duration, &r.Duration, name)
	for why, n := range r.Refused {
		e.counter(c.refused, n, name, why)
	}
	e.counter(c.retries, r.Retries, name)
	for key, n := range r.Matched {
		e.counter(c.matched, n, name, key)
	}
	if t := r.Clients; t != nil {
		e.gauge(c.routeTracked, float64(t.Tracked), name)
		e.counter(c.routeEvicted, t.Evicted, name)
		e.counter(c.routeUntracked, t.Untracked, name)
	}
	for i := range r.Members {
		m := &r.Members[i]
		e.gauge(c.up, bit(m.Up), name, m.Name, m.Addr)
		e.gauge(c.ejected, bit(m.Ejected), name, m.Name, m.Addr)
		e.gauge(c.draining, bit(m.Draining), name, m.Name, m.Addr)
		e.gauge(c.disabled, bit(m.Disabled), name, m.Name, m.Addr)
		e.gauge(c.weight, float64(m.Weight), name, m.Name, m.Addr)
		e.gauge(c.memberLive, float64(m.Live), name, m.Name, m.Addr)
		e.counter(c.connectFailures, m.ConnectFailures, name, m.Name, m.Addr)
		e.counter(c.checks, m.ChecksPassed, name, m.Name, m.Addr, "pass")
		e.counter(c.checks, m.ChecksFailed, name, m.Name, m.Addr, "fail")
	}
}

func bit(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// emitter sends const metrics. A label value the client refuses (not UTF-8) becomes an
// invalid metric: the registry then reports the error for that series and the handler
// serves the rest, where a Must constructor would panic in the scrape.
type emitter struct{ ch chan<- prometheus.Metric }

func (e emitter) send(desc *prometheus.Desc, m prometheus.Metric, err error) {
	if err != nil {
		m = prometheus.NewInvalidMetric(desc, err)
	}
	e.ch <- m
}

func (e emitter) counter(desc *prometheus.Desc, v uint64, labels ...string) {
	m, err := prometheus.NewConstMetric(desc, prometheus.CounterValue, float64(v), labels...)
	e.send(desc, m, err)
}

func (e emitter) gauge(desc *prometheus.Desc, v float64, labels ...string) {
	m, err := prometheus.NewConstMetric(desc, prometheus.GaugeValue, v, labels...)
	e.send(desc, m, err)
}

// histogram turns per-bucket counts into the cumulative buckets Prometheus expects.
func (e emitter) histogram(desc *prometheus.Desc, h *Histogram, labels ...string) {
	buckets := make(map[float64]uint64, len(h.Bounds))
	var count uint64
	for i, bound := range h.Bounds {
		if i < len(h.Counts) {
			count += h.Counts[i]
		}
		buckets[bound] = count
	}
	for i := len(h.Bounds); i < len(h.Counts); i++ {
		count += h.Counts[i]
	}
	m, err := prometheus.NewConstHistogram(desc, count, h.Sum, buckets, labels...)
	e.send(desc, m, err)
}

// NewRegistry returns a registry holding pier's collector for src and the Go runtime's
// and the process's collectors. It is not the global registry: nothing else lands in it
// by importing a package.
func NewRegistry(src Source) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		NewCollector(src),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return reg
}

// Bounds of the handler: a scrape only reads atomics, so these are never reached by a
// healthy Prometheus; they keep a runaway client from piling up goroutines.
const (
	maxScrapesInFlight = 4
	scrapeTimeout      = 10 * time.Second
)

// Handler serves reg in the exposition format the client asks for. A metric that
// cannot be gathered does not fail the scrape: the rest is served and
// promhttp_metric_handler_errors_total{cause="gathering"} (registered in reg) counts it.
func Handler(reg *prometheus.Registry) http.Handler {
	return LoggingHandler(reg, nil)
}

// LoggingHandler is Handler that also logs each gathering or encoding error on log at
// level Error. A nil log logs nothing.
func LoggingHandler(reg *prometheus.Registry, log *slog.Logger) http.Handler {
	opts := promhttp.HandlerOpts{
		ErrorHandling:       promhttp.ContinueOnError,
		Registry:            reg,
		MaxRequestsInFlight: maxScrapesInFlight,
		Timeout:             scrapeTimeout,
	}
	if log != nil {
		opts.ErrorLog = errorLog{log}
	}
	return promhttp.HandlerFor(reg, opts)
}

// errorLog adapts a *slog.Logger to promhttp.Logger.
type errorLog struct{ log *slog.Logger }

func (l errorLog) Println(v ...any) {
	l.log.Error("metrics: " + strings.TrimSuffix(fmt.Sprintln(v...), "\n"))
}
