package admin

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
)

// wantClear4xx checks a parser's refusal: a 400 with a message, and any
// problem's place inside the body.
func wantClear4xx(t *testing.T, in []byte, e *Error) {
	t.Helper()
	if e.Status != http.StatusBadRequest || e.Msg == "" {
		t.Fatalf("%q: refused with %d %q, want 400 and a message", in, e.Status, e.Msg)
	}
	for _, p := range e.Problems {
		if p.Message == "" || p.Line < 0 || p.Col < 0 || p.Line > strings.Count(string(in), "\n")+1 {
			t.Fatalf("%q: problem %+v", in, p)
		}
	}
}

// The sessions query parser never panics; it refuses with a 400 naming
// a parameter, or gives a query within bounds that reads back the same
// when written out again.
func FuzzSessionQuery(f *testing.F) {
	for _, s := range []string{"", "route=db&member=db1%3A5432&client=10.0.0.0/8&after=5&limit=100",
		"client=::1", "client=10.1.2.3/8", "limit=0", "limit=1001", "after=-1", "route=a&route=b", "x=1",
		"%zz", "client=fe80::1%25eth0", "mode=reset", "limit=1e3", ";", "client=", "after=18446744073709551615",
		"sort=age&before=42&limit=50", "sort=age", "sort=bytes&offset=100&limit=1000", "sort=bytes&offset=10001",
		"sort=bytes&offset=-1", "sort=id&after=7", "sort=bytes&after=7", "sort=age&offset=1", "before=3", "sort=size",
		"sort=", "sort=AGE", "sort=bytes&offset=10000&route=db"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		for _, paged := range []bool{true, false} {
			q, err := parseSessionQuery(raw, paged)
			if err != nil {
				wantClear4xx(t, []byte(raw), err)
				if len(err.Problems) > 0 && err.Problems[0].Field == "" {
					t.Fatalf("%q: problem without a field", raw)
				}
				continue
			}
			if paged && (q.Limit < 1 || q.Limit > maxSessionPage) {
				t.Fatalf("%q: limit %d", raw, q.Limit)
			}
			if !paged && (q.Limit != 0 || q.After != 0 || q.Before != 0 || q.Offset != 0 || q.Sort != "") {
				t.Fatalf("%q: paging in an unpaged query: %+v", raw, q)
			}
			if paged {
				wantOneCursor(t, raw, q)
				again := sessionQueryString(q)
				q2, err := parseSessionQuery(again, true)
				if err != nil || q2 != q {
					t.Fatalf("%q: %+v written as %q reads back as %+v (%v)", raw, q, again, q2, err)
				}
			}
			if q.Client.IsValid() && q.Client != q.Client.Masked() {
				t.Fatalf("%q: client %v not masked", raw, q.Client)
			}
		}
	})
}

// wantOneCursor checks a paged query: a known sort, and no cursor but
// the sort's, within bounds.
func wantOneCursor(t *testing.T, raw string, q SessionQuery) {
	t.Helper()
	ok := q.Offset >= 0 && q.Offset <= maxSessionOffset
	switch q.Sort {
	case SortID:
		ok = ok && q.Before == 0 && q.Offset == 0
	case SortAge:
		ok = ok && q.After == 0 && q.Offset == 0
	case SortBytes:
		ok = ok && q.After == 0 && q.Before == 0
	default:
		ok = false
	}
	if !ok {
		t.Fatalf("%q: %+v", raw, q)
	}
}

// sessionQueryString writes a paged query as a client would.
func sessionQueryString(q SessionQuery) string {
	v := url.Values{}
	for k, s := range map[string]string{"route": q.Route, "member": q.Member} {
		if s != "" {
			v.Set(k, s)
		}
	}
	if q.Client.IsValid() {
		v.Set("client", q.Client.String())
	}
	v.Set("sort", q.Sort)
	switch q.Sort {
	case SortID:
		v.Set("after", strconv.FormatUint(q.After, 10))
	case SortAge:
		v.Set("before", strconv.FormatUint(q.Before, 10))
	case SortBytes:
		v.Set("offset", strconv.Itoa(q.Offset))
	}
	v.Set("limit", strconv.Itoa(q.Limit))
	return v.Encode()
}

// The steering bodies (PATCH's and PUT weight's) never panic; they refuse
// with a 400, or give at least one change with a weight in 1..1000, and
// what they give, written as JSON, parses back to the same.
func FuzzSteeringBody(f *testing.F) {
	for _, s := range []string{`{"drain":true}`, `{"drain":true,"disabled":false,"weight":3}`, `{"weight":0}`,
		`{"weight":1.5}`, `{"Weight":3}`, `{"weight":3}{}`, `{}`, `null`, `[]`, ``, `{"weight":3,"weight":3}`,
		"{\n\"drain\":\"x\"}", `{"drain":null,"weight":1000}`, `{"weight":1e3}`, "\xff"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := parseSteeringBody(data)
		if err != nil {
			wantClear4xx(t, data, err)
		} else {
			if s.Drain == nil && s.Disabled == nil && s.Weight == nil {
				t.Fatalf("%q: accepted with nothing to change", data)
			}
			if s.Weight != nil && (*s.Weight < 1 || *s.Weight > 1000) {
				t.Fatalf("%q: weight %d", data, *s.Weight)
			}
			again, _ := json.Marshal(s)
			s2, err := parseSteeringBody(again)
			if err != nil || show(s2) != show(s) {
				t.Fatalf("%q: %s written as %s reads back as %s (%v)", data, show(s), again, show(s2), err)
			}
		}
		w, werr := parseWeightBody(data)
		if werr != nil {
			wantClear4xx(t, data, werr)
		} else if w < 1 || w > 1000 {
			t.Fatalf("%q: weight %d", data, w)
		}
	})
}

// The log level body never panics; it refuses with a 400 or gives one of
// the four levels, whose name reads back to the same level.
func FuzzLogLevelBody(f *testing.F) {
	for _, s := range []string{`{"level":"debug"}`, `{"level":"WARN"}`, `{"level":"debug+1"}`, `{"level":4}`,
		`{"level":null}`, `{}`, `{"level":"info","x":1}`, `{"level":"error"} `, `"debug"`, ``} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		l, err := parseLevelBody(data)
		if err != nil {
			wantClear4xx(t, data, err)
			return
		}
		again, _ := json.Marshal(map[string]string{"level": levelName(l)})
		if l2, err := parseLevelBody(again); err != nil || l2 != l {
			t.Fatalf("%q: level %v written as %s reads back as %v (%v)", data, l, again, l2, err)
		}
	})
}

// The bearer header parser never panics; a token it takes is not empty,
// and "Bearer " + that token gives it back.
func FuzzBearer(f *testing.F) {
	for _, s := range []string{"Bearer s3cret", "bearer x", "Bearer", "Bearer ", "Bearer  x", "Basic x", "", "BEARER\tx", "Bearer x y"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		token, ok := bearer([]string{h})
		if !ok {
			if token != nil {
				t.Fatalf("%q: refused but gave %q", h, token)
			}
			return
		}
		if len(token) == 0 || !strings.HasSuffix(h, string(token)) {
			t.Fatalf("%q: token %q", h, token)
		}
		if again, ok := bearer([]string{"Bearer " + string(token)}); !ok || string(again) != string(token) {
			t.Fatalf("%q: token %q reads back as %q", h, token, again)
		}
		if _, ok := bearer([]string{h, h}); ok {
			t.Fatalf("%q twice: taken", h)
		}
	})
}
