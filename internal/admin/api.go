package admin

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/netip"
	"strconv"
	"time"
)

// Control is what the admin server reads and steers: the running pier, as
// the application layer sees it. Its methods are called from the HTTP
// server's goroutines, concurrently; none may block a relay loop (reading
// sessions is posted work that ctx bounds).
//
// Errors: ErrNotFound answers 404, ErrPartial 503, an *Error its own
// Status with its message and problems; any other error answers 500.
type Control interface {
	// Ready reports whether pier takes sessions (config loaded, listeners
	// open); why says what it waits for when not ("draining").
	Ready() (ok bool, why string)
	Routes() []Route
	// Sessions pages the live sessions matching q; ctx ends the wait for
	// loops that do not answer (the page is then Partial).
	Sessions(ctx context.Context, q SessionQuery) (SessionPage, error)
	// EndSession ends one session: mode "close" sends FIN both ways then
	// closes, "reset" resets both sides. ErrNotFound when no loop has it;
	// ErrPartial when it was not found and a loop did not answer.
	EndSession(ctx context.Context, id uint64, mode string) error
	// EndSessions ends every session matching q (After and Limit are
	// zero) and counts them; ErrPartial with the count when a loop did
	// not answer.
	EndSessions(ctx context.Context, q SessionQuery, mode string) (int, error)
	// Steer changes a member's drain, disabled and weight: a nil field of s
	// leaves that value as it is. It answers the member's status.
	// ErrNotFound for an unknown route or member (by configured name).
	Steer(route, member string, s Steering) (Member, error)
	Filters(route string) ([]Filter, error)
	// EditFilters applies one edit to a route's filter list and answers
	// the list in force; e.Body is the request's body, raw (YAML or JSON).
	EditFilters(route string, e FilterEdit) ([]Filter, error)
	Overlay() Overlay
	// DropOverlay drops every runtime change and answers what it dropped.
	DropOverlay() (Overlay, error)
	Reload() ReloadResult
	// PreviewReload answers what a reload of the config file would change
	// now, or the file's mistakes (a missing file, errors placed in it)
	// as problems. It changes nothing.
	PreviewReload() Preview
	Check(yaml []byte) Preview
	Config(format string) ([]byte, error) // "yaml" | "json"
	LogLevel() slog.Level
	SetLogLevel(slog.Level)

	// History answers each route's recent rates, one sample a second, for
	// the dashboard's sparklines.
	History() History
	// Ends answers the most recent session ends matching q, newest first;
	// ctx ends the wait for loops that do not answer (ErrPartial).
	Ends(ctx context.Context, q EndsQuery) (EndsPage, error)
	// FilterSpecs answers every filter pier knows with its options, for
	// the dashboard's filter form.
	FilterSpecs() []FilterSpec
	// Clients answers a per-client table: the top level's (q.Route "")
	// or a route's, its q.Limit clients with the most live sessions
	// first. ErrNotFound for an unknown route; a scope without per_client
	// limits answers an empty table with Limits nil.
	Clients(q ClientsQuery) (ClientsPage, error)
}

// ClientsQuery selects a per-client table and how much of it to show.
type ClientsQuery struct {
	Route string // "": the top level's table
	Limit int    // at most this many clients (1..1000)
}

// ClientsPage is one per-client table: its counts, its limits, and its
// clients with the most live sessions (then the most recently seen).
type ClientsPage struct {
	Scope     string     `json:"scope"` // "global" or the route's name
	Limits    *PerClient `json:"limits"`
	Tracked   int        `json:"tracked"`   // clients in the table now
	Evicted   uint64     `json:"evicted"`   // least recently seen clients dropped to make room
	Untracked uint64     `json:"untracked"` // clients admitted untracked: the table was full of live ones
	Clients   []Client   `json:"clients"`
}

// Client is one tracked client (an address, or a prefix when clients are
// grouped).
type Client struct {
	Prefix   string    `json:"prefix"`
	Live     int       `json:"live"`   // its live sessions
	Tokens   float64   `json:"tokens"` // its rate's bucket now; 0 without a rate
	LastSeen time.Time `json:"last_seen"`
}

// ErrNotFound is what a Control returns for an unknown route, member,
// session or filter index: the server answers 404.
var ErrNotFound = errors.New("admin: not found")

// ErrPartial is what a Control returns when a relay loop did not answer in
// time, so the answer may be incomplete: the server answers 503 (the
// client may retry).
var ErrPartial = errors.New("admin: a relay loop did not answer in time")

// Error is an error a Control returns to answer a status of its choice,
// usually 4xx: a request the running pier refuses (a filter list with
// mistakes, a weight out of range). Problems place each mistake.
type Error struct {
	Status   int
	Msg      string
	Problems []Problem
}

func (e *Error) Error() string { return e.Msg }

// Problem is one mistake in a request: the field it is in (a JSON key, a
// query parameter, a path such as filters[1].delay) and, for a body, where.
type Problem struct {
	Field   string `json:"field,omitempty"`
	Message string `json:"message"`
	Line    int    `json:"line,omitempty"` // 1-based, in the body
	Col     int    `json:"col,omitempty"`  // 1-based, in bytes
}

// SessionQuery selects live sessions; zero fields match all.
type SessionQuery struct {
	Route  string
	Member string       // the upstream the session dialed, as the access log's upstream
	Client netip.Prefix // the client's address is in it
	// Sort is the page's order: SortID (also ""), SortAge or SortBytes.
	// Each pages by its own cursor: After, Before, Offset.
	Sort   string
	After  uint64 // SortID: only sessions with a greater ID
	Before uint64 // SortAge: only sessions with a smaller ID; 0: from the newest
	Offset int    // SortBytes: skip this many of the heaviest (0..10000)
	Limit  int    // at most this many (1..1000)
}

// The orders of a sessions page (SessionQuery.Sort, the query's sort).
const (
	// SortID is ascending ID, oldest first, paged by after: a session is
	// on at most one page while sessions come and go.
	SortID = "id"
	// SortAge is descending ID, newest first, paged by before.
	SortAge = "age"
	// SortBytes is most bytes first (both ways summed; equal bytes in ID
	// order), paged by offset: the heaviest sessions now. Bytes move
	// between two pages, so a session may be on two pages, or none.
	SortBytes = "bytes"
)

// SessionPage is one page of live sessions, in the query's order.
type SessionPage struct {
	Sessions []Session
	Matched  int // sessions that matched on the loops that answered
	// Next is the next page's cursor: its After (SortID), Before
	// (SortAge) or Offset (SortBytes); 0: this is the last.
	Next    uint64
	Partial bool // a loop did not answer in time
}

// Session is one live session.
type Session struct {
	ID              uint64   `json:"id"` // the access log's id
	Route           string   `json:"route"`
	Client          string   `json:"client"`
	Upstream        string   `json:"upstream"`
	Dialed          string   `json:"dialed"`
	AgeSeconds      float64  `json:"age_seconds"`
	BytesToUpstream int64    `json:"bytes_to_upstream"`
	BytesToClient   int64    `json:"bytes_to_client"`
	State           string   `json:"state"` // peeking, connecting, open, half_closed_client, half_closed_upstream
	Filters         []string `json:"filters"`
	// What the edge learned before the route was chosen; zero on a plain
	// listener. Peer is the socket's address when a PROXY header gave
	// Client; Proxy the header ("v1", "v2", "local"); SNI and ALPN the
	// ClientHello's; Match the route's match key that chose it; TLVs the
	// v2 header's (nil: none).
	Peer  string   `json:"peer"`
	Proxy string   `json:"proxy"`
	SNI   string   `json:"sni"`
	ALPN  []string `json:"alpn"`
	Match string   `json:"match"`
	TLVs  *TLVs    `json:"tlvs"`
	// TLS is the session's TLS as pier terminated (client) or originated
	// (upstream) it; nil when it did neither, or no handshake is done.
	TLS *SessionTLS `json:"tls"`
}

// SessionTLS is what a session's TLS handshakes settled.
type SessionTLS struct {
	Client    *TLSHandshake `json:"client"`    // nil: not terminated
	Upstream  *TLSHandshake `json:"upstream"`  // nil: not originated
	Truncated string        `json:"truncated"` // "client", "upstream": ended without close_notify
}

// TLSHandshake is one handshake's outcome.
type TLSHandshake struct {
	Version string `json:"version"`
	Cipher  string `json:"cipher"`
	SNI     string `json:"sni"`
	ALPN    string `json:"alpn"`
	Peer    string `json:"peer"` // the peer certificate's subject
	Resumed bool   `json:"resumed"`
}

// TLVs are what a PROXY v2 header carried besides the addresses.
type TLVs struct {
	Authority  string `json:"authority,omitempty"`
	UniqueID   string `json:"unique_id,omitempty"`
	ALPN       string `json:"alpn,omitempty"`
	SSLVersion string `json:"ssl_version,omitempty"`
	SSLCN      string `json:"ssl_cn,omitempty"`
}

// Route is one route as it runs.
type Route struct {
	Name           string     `json:"name"`
	Protocol       string     `json:"protocol"` // "tcp" or "udp"
	Listen         []string   `json:"listen"`   // as configured
	Addrs          []string   `json:"addrs"`    // the addresses listened on
	MaxConnections int        `json:"max_connections"`
	Responses      int        `json:"responses"` // udp: the replies that end a flow; 0 none
	MaxFlows       int        `json:"max_flows"` // udp: the route's live flows at most; 0 for tcp
	Live           int64      `json:"live"`
	Refused        uint64     `json:"refused"`
	Filters        []Filter   `json:"filters"`
	Members        []Member   `json:"members"`
	Overlay        bool       `json:"overlay"` // a runtime change applies to the route
	Stats          RouteStats `json:"stats"`

	// The edge: what a client must show to take the route on a shared
	// address (nil: it owns its addresses), how long its ClientHello is
	// waited for, the PROXY protocol both ways, its access lists and
	// limits.
	Match              *Match         `json:"match"`
	PeekTimeoutSeconds float64        `json:"peek_timeout_seconds"`
	ProxyProtocol      *ProxyProtocol `json:"proxy_protocol"`
	SendProxy          string         `json:"send_proxy"` // "v1", "v2" or "none"
	Allow              []string       `json:"allow"`
	Deny               []string       `json:"deny"`
	Limits             *Limits        `json:"limits"` // nil: none
}

// Match is a route's match, and how many sessions each key chose.
type Match struct {
	SNI     []string          `json:"sni"`
	ALPN    []string          `json:"alpn"`
	Source  []string          `json:"source"`
	Default bool              `json:"default"`
	Matched map[string]uint64 `json:"matched"` // sessions by key: "sni:...", "alpn:...", "source:...", "default"
}

// ProxyProtocol is the PROXY protocol a route accepts from its clients.
type ProxyProtocol struct {
	Accept         string   `json:"accept"` // v1, v2 or any
	Trusted        []string `json:"trusted"`
	Required       bool     `json:"required"`
	TimeoutSeconds float64  `json:"timeout_seconds"`
}

// Limits are a scope's accept rate and per-client limits.
type Limits struct {
	AcceptRate *Rate      `json:"accept_rate"` // nil: none
	PerClient  *PerClient `json:"per_client"`  // nil: none
}

// Rate is a token bucket.
type Rate struct {
	PerSecond float64 `json:"per_second"`
	Burst     int     `json:"burst"`
}

// PerClient is a scope's per-client limits (defaults filled) and its
// table's counts now.
type PerClient struct {
	MaxConnections int    `json:"max_connections"` // 0: no cap
	Rate           *Rate  `json:"rate"`            // nil: none
	IPv4Prefix     int    `json:"ipv4_prefix"`
	IPv6Prefix     int    `json:"ipv6_prefix"`
	MaxTracked     int    `json:"max_tracked"`
	Tracked        int    `json:"tracked"`
	Evicted        uint64 `json:"evicted"`
	Untracked      uint64 `json:"untracked"`
}

// RouteStats are a route's totals since pier started: the numbers
// /metrics has.
type RouteStats struct {
	Started    uint64 `json:"started"`     // sessions accepted
	ToUpstream uint64 `json:"to_upstream"` // bytes
	ToClient   uint64 `json:"to_client"`   // bytes
	// Refused counts sessions refused before a dial by reason (limit,
	// no_upstream, local_error); Ended counts sessions ended by the
	// access log's reason (done, connect_failed, ...).
	Refused map[string]uint64 `json:"refused"`
	Ended   map[string]uint64 `json:"ended"`
}

// History is each route's recent rates, sampled every Interval seconds,
// oldest sample first.
type History struct {
	Interval float64        `json:"interval_seconds"`
	Times    []int64        `json:"times"` // unix seconds of each sample (at most 300)
	Routes   []RouteHistory `json:"routes"`
}

// RouteHistory is one route's samples, each list as long as
// History.Times.
type RouteHistory struct {
	Name           string    `json:"name"`
	SessionsPerSec []float64 `json:"sessions_per_second"` // sessions started per second over each interval
	ToUpstreamBps  []float64 `json:"bytes_to_upstream_per_second"`
	ToClientBps    []float64 `json:"bytes_to_client_per_second"`
	Live           []int64   `json:"live"`
}

// EndsQuery selects recent session ends; zero fields match all.
type EndsQuery struct {
	Route  string
	Reason string // the access log's reason: done, connect_failed, ...
	Limit  int    // at most this many (1..500)
}

// EndsPage is the most recent session ends, newest first.
type EndsPage struct {
	Ends []End `json:"ends"`
}

// End is one ended session, as its access log record says.
type End struct {
	ID              uint64    `json:"id"`
	Route           string    `json:"route"`
	Client          string    `json:"client"`
	Upstream        string    `json:"upstream"`
	Dialed          string    `json:"dialed"`
	Time            time.Time `json:"time"` // when it ended
	DurationSeconds float64   `json:"duration_seconds"`
	BytesToUpstream int64     `json:"bytes_to_upstream"`
	BytesToClient   int64     `json:"bytes_to_client"`
	Reason          string    `json:"reason"`
	Error           string    `json:"error"`
}

// FilterSpec is one filter pier knows: its name, what it does, the key
// of its command-line flag, and its options.
type FilterSpec struct {
	Name    string       `json:"name"`
	Help    string       `json:"help"`
	FlagKey string       `json:"flag_key"`
	Options []OptionSpec `json:"options"`
	// OptionsDeclared tells a filter with no options (true, Options
	// empty) from one that does not declare them (false: a filter of a
	// user's that takes options no form can know).
	OptionsDeclared bool `json:"options_declared"`
}

// OptionSpec is one option of a filter.
type OptionSpec struct {
	Name string `json:"name"`
	// Kind is duration, size, number, bool, string, enum, list or
	// direction.
	Kind     string   `json:"kind"`
	Default  string   `json:"default"` // as a user writes it; "": none
	Help     string   `json:"help"`
	Required bool     `json:"required"`
	Choices  []string `json:"choices"` // for enum and direction
}

// Member is one member of a route's pool.
type Member struct {
	Name            string    `json:"name"` // as configured
	Addr            string    `json:"addr"`
	Weight          int       `json:"weight"`
	FileWeight      int       `json:"file_weight"`
	Backup          bool      `json:"backup"`
	Up              bool      `json:"up"`
	Ejected         bool      `json:"ejected"`
	Draining        bool      `json:"draining"`
	Disabled        bool      `json:"disabled"`
	LastCheckError  string    `json:"last_check_error"`
	Live            int64     `json:"live"`
	ConnectFailures uint64    `json:"connect_failures"`
	Overlay         *Steering `json:"overlay"` // nil: the file's values
}

// Steering is a runtime change to a member; nil fields are not changed.
type Steering struct {
	Drain    *bool `json:"drain,omitempty"`
	Disabled *bool `json:"disabled,omitempty"`
	Weight   *int  `json:"weight,omitempty"`
}

// Filter is one filter of a route's list.
type Filter struct {
	Name    string         `json:"name"`
	Options map[string]any `json:"options"`
	Overlay bool           `json:"overlay"` // set at run time, not from the file
}

// FilterEdit is one change to a route's filter list.
type FilterEdit struct {
	Op    string // "replace" (the whole list), "append", "insert" (at Index), "set" (Index), "delete" (Index)
	Index int
	Body  []byte // replace: a list; append, insert, set: a list of one filter; delete: nil
}

// Overlay is every runtime change in force.
type Overlay struct {
	Members []OverlayMember `json:"members"`
	Filters []string        `json:"filters"` // routes whose filter list is set at run time
}

// OverlayMember is one member's runtime change.
type OverlayMember struct {
	Route    string   `json:"route"`
	Member   string   `json:"member"`
	Steering Steering `json:"steering"`
}

// ReloadResult is what a reload did. JSON:
// {"ok":bool,"errors":[...],"overlay":{"kept":[...],"dropped":[...]}}.
type ReloadResult struct {
	OK     bool
	Errors []string // each a config error with its place, as pier check prints it
	// Kept and Dropped are the overlay entries the reload kept and the
	// ones whose route or member is gone.
	Kept, Dropped []string
	// Status is the HTTP status of a failed reload; 0: 422. (409: there
	// is no config file to reload.)
	Status int
}

// Preview is what a config would change if it were loaded.
type Preview struct {
	OK       bool      `json:"ok"`
	Problems []Problem `json:"problems"`
	Changes  []Change  `json:"changes"`
}

// Change is one difference between the config in force and a new one.
type Change struct {
	Kind         string   `json:"kind"`   // listener, route, member, filter, setting
	Action       string   `json:"action"` // open, close, add, remove, change
	Route        string   `json:"route"`
	Name         string   `json:"name"`
	Fields       []string `json:"fields"`
	LiveSessions int64    `json:"live_sessions"` // live sessions the change touches
	Effect       string   `json:"effect"`        // what happens to them
}

// The MarshalJSON methods write an empty list as [] and empty options as
// {}, never null, so a client can iterate without a check.

func (s Session) MarshalJSON() ([]byte, error) {
	type plain Session
	p := plain(s)
	p.Filters, p.ALPN = list(p.Filters), list(p.ALPN)
	return json.Marshal(p)
}

func (r Route) MarshalJSON() ([]byte, error) {
	type plain Route
	p := plain(r)
	p.Listen, p.Addrs, p.Filters, p.Members = list(p.Listen), list(p.Addrs), list(p.Filters), list(p.Members)
	p.Allow, p.Deny = list(p.Allow), list(p.Deny)
	if p.Stats.Refused == nil {
		p.Stats.Refused = map[string]uint64{}
	}
	if p.Stats.Ended == nil {
		p.Stats.Ended = map[string]uint64{}
	}
	return json.Marshal(p)
}

func (m Match) MarshalJSON() ([]byte, error) {
	type plain Match
	p := plain(m)
	p.SNI, p.ALPN, p.Source = list(p.SNI), list(p.ALPN), list(p.Source)
	if p.Matched == nil {
		p.Matched = map[string]uint64{}
	}
	return json.Marshal(p)
}

func (pp ProxyProtocol) MarshalJSON() ([]byte, error) {
	type plain ProxyProtocol
	p := plain(pp)
	p.Trusted = list(p.Trusted)
	return json.Marshal(p)
}

func (c ClientsPage) MarshalJSON() ([]byte, error) {
	type plain ClientsPage
	p := plain(c)
	p.Clients = list(p.Clients)
	return json.Marshal(p)
}

func (h History) MarshalJSON() ([]byte, error) {
	type plain History
	p := plain(h)
	p.Times, p.Routes = list(p.Times), list(p.Routes)
	return json.Marshal(p)
}

func (r RouteHistory) MarshalJSON() ([]byte, error) {
	type plain RouteHistory
	p := plain(r)
	p.SessionsPerSec, p.ToUpstreamBps, p.ToClientBps, p.Live = list(p.SessionsPerSec), list(p.ToUpstreamBps), list(p.ToClientBps), list(p.Live)
	return json.Marshal(p)
}

func (e EndsPage) MarshalJSON() ([]byte, error) {
	type plain EndsPage
	p := plain(e)
	p.Ends = list(p.Ends)
	return json.Marshal(p)
}

func (f FilterSpec) MarshalJSON() ([]byte, error) {
	type plain FilterSpec
	p := plain(f)
	p.Options = list(p.Options)
	return json.Marshal(p)
}

func (o OptionSpec) MarshalJSON() ([]byte, error) {
	type plain OptionSpec
	p := plain(o)
	p.Choices = list(p.Choices)
	return json.Marshal(p)
}

func (f Filter) MarshalJSON() ([]byte, error) {
	type plain Filter
	p := plain(f)
	if p.Options == nil {
		p.Options = map[string]any{}
	}
	return json.Marshal(p)
}

func (o Overlay) MarshalJSON() ([]byte, error) {
	type plain Overlay
	p := plain(o)
	p.Members, p.Filters = list(p.Members), list(p.Filters)
	return json.Marshal(p)
}

func (r ReloadResult) MarshalJSON() ([]byte, error) {
	type overlay struct {
		Kept    []string `json:"kept"`
		Dropped []string `json:"dropped"`
	}
	return json.Marshal(struct {
		OK      bool     `json:"ok"`
		Errors  []string `json:"errors"`
		Overlay overlay  `json:"overlay"`
	}{r.OK, list(r.Errors), overlay{list(r.Kept), list(r.Dropped)}})
}

func (p Preview) MarshalJSON() ([]byte, error) {
	type plain Preview
	q := plain(p)
	q.Problems, q.Changes = list(q.Problems), list(q.Changes)
	return json.Marshal(q)
}

func (c Change) MarshalJSON() ([]byte, error) {
	type plain Change
	p := plain(c)
	p.Fields = list(p.Fields)
	return json.Marshal(p)
}

// sessionPage is a SessionPage as JSON: next is a string (an ID may not
// fit a JavaScript number) or null on the last page; sort says the order
// in force, which the next page's cursor belongs to.
type sessionPage struct {
	Sessions []Session `json:"sessions"`
	Sort     string    `json:"sort"`
	Matched  int       `json:"matched"`
	Next     *string   `json:"next"`
	Partial  bool      `json:"partial"`
}

func pageJSON(p SessionPage, sort string) sessionPage {
	out := sessionPage{Sessions: list(p.Sessions), Sort: sort, Matched: p.Matched, Partial: p.Partial}
	if p.Next != 0 {
		next := strconv.FormatUint(p.Next, 10)
		out.Next = &next
	}
	return out
}

func list[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
