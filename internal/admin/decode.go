package admin

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// The parsers of this file read what a client sends (query strings and
// JSON bodies) and refuse, with a 400 naming the field, anything they do
// not expect: an unknown or repeated parameter, an unknown key, a value
// of the wrong type or out of range, data after the JSON value.

// maxSessionPage bounds a sessions page: each loop keeps that many
// candidates while it walks its sessions.
const maxSessionPage = 1000

// defaultSessionPage is a page's size when the query has no limit.
const defaultSessionPage = 100

func badField(field, msg string) *Error {
	return &Error{Status: http.StatusBadRequest, Msg: field + ": " + msg, Problems: []Problem{{Field: field, Message: msg}}}
}

// parseQuery reads a query string holding only the parameters allowed,
// each at most once.
func parseQuery(raw string, allowed ...string) (url.Values, *Error) {
	v, err := url.ParseQuery(raw)
	if err != nil {
		return nil, &Error{Status: http.StatusBadRequest, Msg: "query: " + err.Error()}
	}
	for k, vs := range v {
		if k == "" {
			return nil, badField("query", "a parameter with no name")
		}
		if !slices.Contains(allowed, k) {
			return nil, badField(k, fmt.Sprintf("unknown parameter (known: %s)", strings.Join(allowed, ", ")))
		}
		if len(vs) > 1 {
			return nil, badField(k, "given more than once")
		}
	}
	return v, nil
}

// maxSessionOffset bounds a page by bytes' offset: each loop keeps
// offset+limit candidates while it walks its sessions, and the heaviest
// ten thousand are more than a person pages through.
const maxSessionOffset = 10000

// sessionCursors are the sorts and the cursor parameter each pages by,
// in the order a mistake is reported.
var sessionCursors = [...]struct{ sort, cursor string }{{SortID, "after"}, {SortAge, "before"}, {SortBytes, "offset"}}

// cursorOf is the parameter sort pages by; "" for an unknown sort.
func cursorOf(sort string) string {
	for _, c := range sessionCursors {
		if c.sort == sort {
			return c.cursor
		}
	}
	return ""
}

// parseSessionQuery reads GET /api/v1/sessions' query (paged: sort, its
// cursor and limit allowed) or DELETE /api/v1/sessions' (mode allowed
// instead).
func parseSessionQuery(raw string, paged bool) (SessionQuery, *Error) {
	allowed := []string{"route", "member", "client", "mode"}
	if paged {
		allowed = []string{"route", "member", "client", "sort", "after", "before", "offset", "limit"}
	}
	v, err := parseQuery(raw, allowed...)
	if err != nil {
		return SessionQuery{}, err
	}
	q := SessionQuery{Route: v.Get("route"), Member: v.Get("member")}
	if c := v.Get("client"); c != "" {
		p, perr := parseClient(c)
		if perr != nil {
			return SessionQuery{}, perr
		}
		q.Client = p
	}
	if !paged {
		return q, nil
	}
	q.Sort = SortID
	if s := v.Get("sort"); v.Has("sort") {
		if cursorOf(s) == "" {
			return SessionQuery{}, badField("sort", "want id (oldest first), age (newest first) or bytes (most first), got "+quote(s))
		}
		q.Sort = s
	}
	for _, c := range sessionCursors {
		if c.sort != q.Sort && v.Has(c.cursor) {
			return SessionQuery{}, badField(c.cursor, fmt.Sprintf("only with sort=%s (sort=%s pages by %s)", c.sort, q.Sort, cursorOf(q.Sort)))
		}
	}
	if a := v.Get("after"); v.Has("after") {
		after, aerr := strconv.ParseUint(a, 10, 64)
		if aerr != nil {
			return SessionQuery{}, badField("after", "want a session id (an integer, the next of the previous page), got "+quote(a))
		}
		q.After = after
	}
	if b := v.Get("before"); v.Has("before") {
		before, berr := strconv.ParseUint(b, 10, 64)
		if berr != nil {
			return SessionQuery{}, badField("before", "want a session id (an integer, the next of the previous page), got "+quote(b))
		}
		q.Before = before
	}
	if o := v.Get("offset"); v.Has("offset") {
		offset, oerr := strconv.Atoi(o)
		if oerr != nil || offset < 0 || offset > maxSessionOffset {
			return SessionQuery{}, badField("offset", fmt.Sprintf("want an integer 0..%d (the next of the previous page), got %s", maxSessionOffset, quote(o)))
		}
		q.Offset = offset
	}
	q.Limit = defaultSessionPage
	if l := v.Get("limit"); v.Has("limit") {
		limit, lerr := strconv.Atoi(l)
		if lerr != nil || limit < 1 || limit > maxSessionPage {
			return SessionQuery{}, badField("limit", fmt.Sprintf("want an integer 1..%d, got %s", maxSessionPage, quote(l)))
		}
		q.Limit = limit
	}
	return q, nil
}

// maxEndsPage bounds GET /api/v1/ends: each loop remembers its last 512
// ends, and a page is for a person to read.
const maxEndsPage = 500

// defaultEndsPage is an ends page's size when the query has no limit.
const defaultEndsPage = 100

// parseEndsQuery reads GET /api/v1/ends' query: route, reason, limit.
func parseEndsQuery(raw string) (EndsQuery, *Error) {
	v, err := parseQuery(raw, "route", "reason", "limit")
	if err != nil {
		return EndsQuery{}, err
	}
	q := EndsQuery{Route: v.Get("route"), Reason: v.Get("reason"), Limit: defaultEndsPage}
	if l := v.Get("limit"); v.Has("limit") {
		limit, lerr := strconv.Atoi(l)
		if lerr != nil || limit < 1 || limit > maxEndsPage {
			return EndsQuery{}, badField("limit", fmt.Sprintf("want an integer 1..%d, got %s", maxEndsPage, quote(l)))
		}
		q.Limit = limit
	}
	return q, nil
}

// maxClientsPage bounds GET /api/v1/clients: a table holds up to ten
// million clients, a page the heaviest thousand.
const maxClientsPage = 1000

// defaultClientsPage is a clients page's size when the query has no limit.
const defaultClientsPage = 100

// parseClientsQuery reads GET /api/v1/clients' query: route, limit.
func parseClientsQuery(raw string) (ClientsQuery, *Error) {
	v, err := parseQuery(raw, "route", "limit")
	if err != nil {
		return ClientsQuery{}, err
	}
	q := ClientsQuery{Route: v.Get("route"), Limit: defaultClientsPage}
	if v.Has("route") && q.Route == "" {
		return ClientsQuery{}, badField("route", "empty: leave it out for the top level's table")
	}
	if l := v.Get("limit"); v.Has("limit") {
		limit, lerr := strconv.Atoi(l)
		if lerr != nil || limit < 1 || limit > maxClientsPage {
			return ClientsQuery{}, badField("limit", fmt.Sprintf("want an integer 1..%d, got %s", maxClientsPage, quote(l)))
		}
		q.Limit = limit
	}
	return q, nil
}

// parseClient reads a CIDR prefix or a single IP (its own /32 or /128).
func parseClient(s string) (netip.Prefix, *Error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, badField("client", "want an IP or a CIDR prefix (10.0.0.0/8), got "+quote(s))
		}
		return p.Masked(), nil
	}
	ip, err := netip.ParseAddr(s)
	if err != nil || ip.Zone() != "" {
		return netip.Prefix{}, badField("client", "want an IP or a CIDR prefix (10.0.0.0/8), got "+quote(s))
	}
	return netip.PrefixFrom(ip, ip.BitLen()), nil
}

// parseMode reads mode=close|reset from DELETE /api/v1/sessions/{id}'s
// query; close when absent.
func parseMode(raw string, allowed ...string) (string, *Error) {
	v, err := parseQuery(raw, append(allowed, "mode")...)
	if err != nil {
		return "", err
	}
	switch m := v.Get("mode"); m {
	case "close", "reset":
		return m, nil
	case "":
		if v.Has("mode") {
			return "", badField("mode", `want "close" or "reset", got ""`)
		}
		return "close", nil
	default:
		return "", badField("mode", `want "close" or "reset", got `+quote(m))
	}
}

// parseFormat reads GET /api/v1/config's format=yaml|json; yaml when
// absent.
func parseFormat(raw string) (string, *Error) {
	v, err := parseQuery(raw, "format")
	if err != nil {
		return "", err
	}
	switch f := v.Get("format"); f {
	case "yaml", "json":
		return f, nil
	case "":
		if v.Has("format") {
			return "", badField("format", `want "yaml" or "json", got ""`)
		}
		return "yaml", nil
	default:
		return "", badField("format", `want "yaml" or "json", got `+quote(f))
	}
}

// parseIndex reads a filter's index in the list (0-based).
func parseIndex(field, s string) (int, *Error) {
	i, err := strconv.Atoi(s)
	if err != nil || i < 0 {
		return 0, badField(field, "want a filter's index in the list (0, 1, ...), got "+quote(s))
	}
	return i, nil
}

// parseWeightBody reads PUT .../weight's {"weight":N}.
func parseWeightBody(data []byte) (int, *Error) {
	var b struct {
		Weight *int `json:"weight"`
	}
	if err := decodeObject(data, &b, "weight"); err != nil {
		return 0, err
	}
	if b.Weight == nil {
		return 0, badField("weight", "required")
	}
	if err := checkWeight(*b.Weight); err != nil {
		return 0, err
	}
	return *b.Weight, nil
}

// parseSteeringBody reads PATCH .../members/{member}'s
// {"drain":bool,"disabled":bool,"weight":N}, at least one of them.
func parseSteeringBody(data []byte) (Steering, *Error) {
	var s Steering
	if err := decodeObject(data, &s, "drain", "disabled", "weight"); err != nil {
		return Steering{}, err
	}
	if s.Drain == nil && s.Disabled == nil && s.Weight == nil {
		return Steering{}, badField("drain", "nothing to change: set drain, disabled or weight")
	}
	if s.Weight != nil {
		if err := checkWeight(*s.Weight); err != nil {
			return Steering{}, err
		}
	}
	return s, nil
}

// checkWeight holds a runtime weight to the file's range.
func checkWeight(w int) *Error {
	if w < 1 || w > 1000 {
		return badField("weight", fmt.Sprintf("want 1..1000, got %d (to stop new sessions, drain)", w))
	}
	return nil
}

// levels are the log levels the API sets, as -log-level names them.
var levels = map[string]slog.Level{
	"debug": slog.LevelDebug,
	"info":  slog.LevelInfo,
	"warn":  slog.LevelWarn,
	"error": slog.LevelError,
}

// parseLevelBody reads PUT /api/v1/log_level's {"level":"debug"}.
func parseLevelBody(data []byte) (slog.Level, *Error) {
	var b struct {
		Level *string `json:"level"`
	}
	if err := decodeObject(data, &b, "level"); err != nil {
		return 0, err
	}
	if b.Level == nil {
		return 0, badField("level", "required")
	}
	l, ok := levels[strings.ToLower(*b.Level)]
	if !ok {
		return 0, badField("level", "want debug, info, warn or error, got "+quote(*b.Level))
	}
	return l, nil
}

// levelName names a level as -log-level does: debug, info, warn, error
// (and debug+2 for one in between).
func levelName(l slog.Level) string { return strings.ToLower(l.String()) }

// decodeObject decodes a JSON object into v, strictly: its keys must be
// among keys, spelled exactly (encoding/json would take "Weight" for
// "weight"), each at most once, and nothing may follow the object.
func decodeObject(data []byte, v any, keys ...string) *Error {
	if len(bytes.TrimSpace(data)) == 0 {
		return badField("body", "empty: want a JSON object")
	}
	var raw map[string]json.RawMessage
	if err := decodeOne(data, &raw); err != nil {
		return err
	}
	if raw == nil {
		return bodyError(data, "", "want a JSON object, got null", 0)
	}
	if err := checkKeys(data, keys); err != nil {
		return err
	}
	return decodeOne(data, v)
}

// decodeOne decodes exactly one JSON value from data into v.
func decodeOne(data []byte, v any) *Error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var syntax *json.SyntaxError
		var typ *json.UnmarshalTypeError
		switch {
		case errors.As(err, &syntax):
			return bodyError(data, "", "invalid JSON: "+syntax.Error(), syntax.Offset)
		case errors.As(err, &typ):
			field := typ.Field
			if field == "" {
				return bodyError(data, "", fmt.Sprintf("want %s, got %s", kindOf(typ.Type.Kind().String()), typ.Value), typ.Offset)
			}
			return bodyError(data, field, fmt.Sprintf("want %s, got %s", kindOf(typ.Type.String()), typ.Value), typ.Offset)
		case errors.Is(err, io.ErrUnexpectedEOF):
			return bodyError(data, "", "invalid JSON: unexpected end", int64(len(data)))
		default:
			return bodyError(data, "", "invalid JSON: "+err.Error(), dec.InputOffset())
		}
	}
	end := dec.InputOffset()
	if _, err := dec.Token(); err != io.EOF {
		return bodyError(data, "", "data after the JSON value", end+int64(len(data[end:])-len(bytes.TrimLeft(data[end:], " \t\r\n"))))
	}
	return nil
}

// kindOf names a Go type as the JSON a client should send.
func kindOf(t string) string {
	t = strings.TrimPrefix(t, "*")
	switch {
	case strings.HasPrefix(t, "int"), strings.HasPrefix(t, "uint"):
		return "an integer"
	case t == "bool":
		return "true or false"
	case t == "string":
		return "a string"
	case strings.HasPrefix(t, "map"):
		return "an object"
	}
	return t
}

// checkKeys walks the top-level object's keys: each must be one of keys,
// once.
func checkKeys(data []byte, keys []string) *Error {
	dec := json.NewDecoder(bytes.NewReader(data))
	if _, err := dec.Token(); err != nil { // {
		return bodyError(data, "", "invalid JSON: "+err.Error(), dec.InputOffset())
	}
	seen := map[string]bool{}
	for dec.More() {
		at := skipSpace(data, dec.InputOffset())
		tok, err := dec.Token()
		if err != nil {
			return bodyError(data, "", "invalid JSON: "+err.Error(), dec.InputOffset())
		}
		key, _ := tok.(string)
		if !slices.Contains(keys, key) {
			return bodyError(data, key, fmt.Sprintf("unknown field (known: %s)", strings.Join(keys, ", ")), at)
		}
		if seen[key] {
			return bodyError(data, key, "given more than once", at)
		}
		seen[key] = true
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return bodyError(data, key, "invalid JSON: "+err.Error(), dec.InputOffset())
		}
	}
	return nil
}

// skipSpace is the offset of the first byte at or after i that is not
// JSON whitespace or a comma: where the next key starts.
func skipSpace(data []byte, i int64) int64 {
	for i < int64(len(data)) && strings.IndexByte(" \t\r\n,", data[i]) >= 0 {
		i++
	}
	return i
}

// bodyError is a 400 for a mistake at byte offset in the body, placed
// by line and column.
func bodyError(data []byte, field, msg string, offset int64) *Error {
	line, col := position(data, offset)
	p := Problem{Field: field, Message: msg, Line: line, Col: col}
	place := fmt.Sprintf("body:%d:%d: ", line, col)
	if field != "" {
		place += field + ": "
	}
	return &Error{Status: http.StatusBadRequest, Msg: place + msg, Problems: []Problem{p}}
}

// position is the 1-based line and column of byte offset in data.
func position(data []byte, offset int64) (line, col int) {
	offset = min(max(offset, 0), int64(len(data)))
	before := data[:offset]
	line = 1 + bytes.Count(before, []byte("\n"))
	col = int(offset) - (bytes.LastIndexByte(before, '\n') + 1) + 1
	return line, col
}
