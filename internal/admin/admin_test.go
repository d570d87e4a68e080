package admin

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
)

// answer is one response, read whole.
type answer struct {
	status int
	header http.Header
	body   []byte
}

// json decodes the answer's body, failing the test unless it is JSON.
func (a answer) json(t *testing.T) map[string]any {
	t.Helper()
	if ct := a.header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type %q, want application/json; body %s", ct, a.body)
	}
	var m map[string]any
	if err := json.Unmarshal(a.body, &m); err != nil {
		t.Fatalf("body %q: %v", a.body, err)
	}
	return m
}

// do sends one request; header holds extra headers ("Host" sets the Host).
func (s *served) do(t *testing.T, method, path, body string, header ...string) answer {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, s.base+path, r)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		if header[i] == "Host" {
			req.Host = header[i+1]
			continue
		}
		req.Header.Add(header[i], header[i+1])
	}
	resp, err := s.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return answer{resp.StatusCode, resp.Header, data}
}

// wantError checks an error answer: its status, JSON {"error": ...}, and
// for a 400 about a field, the problem naming it.
func wantError(t *testing.T, a answer, status int, field string) map[string]any {
	t.Helper()
	if a.status != status {
		t.Fatalf("status %d, want %d; body %s", a.status, status, a.body)
	}
	m := a.json(t)
	if msg, _ := m["error"].(string); msg == "" {
		t.Fatalf("body %s: no error message", a.body)
	}
	if field != "" {
		probs, _ := m["problems"].([]any)
		if len(probs) == 0 {
			t.Fatalf("body %s: no problems, want one naming %q", a.body, field)
		}
		if got := probs[0].(map[string]any)["field"]; got != field {
			t.Fatalf("body %s: problem's field %v, want %q", a.body, got, field)
		}
	}
	return m
}

func wantCalls(t *testing.T, ctl *fakeControl, want ...string) {
	t.Helper()
	if got := ctl.Calls(); !slices.Equal(got, want) {
		t.Fatalf("Control calls %q, want %q", got, want)
	}
}

// keys are a JSON object's keys, sorted.
func keys(v any) []string {
	m, _ := v.(map[string]any)
	var k []string
	for key := range m {
		k = append(k, key)
	}
	slices.Sort(k)
	return k
}

func wantKeys(t *testing.T, what string, v any, want ...string) {
	t.Helper()
	slices.Sort(want)
	if got := keys(v); !slices.Equal(got, want) {
		t.Fatalf("%s keys %q, want %q", what, got, want)
	}
}

// endpoint is one request the API answers; every endpoint is listed, so
// the security tests cover each.
type endpoint struct{ method, path, body string }

var endpoints = []endpoint{
	{"GET", "/healthz", ""},
	{"GET", "/readyz", ""},
	{"GET", "/metrics", ""},
	{"GET", "/api/v1/routes", ""},
	{"GET", "/api/v1/routes/web", ""},
	{"GET", "/api/v1/sessions", ""},
	{"DELETE", "/api/v1/sessions/7", ""},
	{"DELETE", "/api/v1/sessions?route=web", ""},
	{"POST", "/api/v1/routes/web/members/a/drain", ""},
	{"POST", "/api/v1/routes/web/members/a/undrain", ""},
	{"POST", "/api/v1/routes/web/members/a/disable", ""},
	{"POST", "/api/v1/routes/web/members/a/enable", ""},
	{"PUT", "/api/v1/routes/web/members/a/weight", `{"weight":3}`},
	{"PATCH", "/api/v1/routes/web/members/a", `{"drain":true}`},
	{"GET", "/api/v1/routes/web/filters", ""},
	{"PUT", "/api/v1/routes/web/filters", `[{"latency":{"delay":"1ms"}}]`},
	{"POST", "/api/v1/routes/web/filters", `[{"latency":{"delay":"1ms"}}]`},
	{"PUT", "/api/v1/routes/web/filters/0", `[{"latency":{"delay":"1ms"}}]`},
	{"DELETE", "/api/v1/routes/web/filters/0", ""},
	{"GET", "/api/v1/overlay", ""},
	{"DELETE", "/api/v1/overlay", ""},
	{"POST", "/api/v1/reload", ""},
	{"GET", "/api/v1/reload/preview", ""},
	{"POST", "/api/v1/config/check", "routes: []\n"},
	{"GET", "/api/v1/config", ""},
	{"GET", "/api/v1/log_level", ""},
	{"PUT", "/api/v1/log_level", `{"level":"debug"}`},
	{"GET", "/api/v1/history", ""},
	{"GET", "/api/v1/ends", ""},
	{"GET", "/api/v1/filter_specs", ""},
	{"GET", "/api/v1/clients", ""},
	{"GET", "/no/such/endpoint", ""},
}

// A token guards every endpoint, probes and metrics included, and is
// compared whole: a prefix of it, a longer string, an empty one, another
// scheme or two headers are all refused with 401 before pier is asked
// anything. The right token reaches every endpoint.
func TestTokenRequiredOnEveryEndpoint(t *testing.T) {
	ctl := &fakeControl{ready: true, routes: []Route{{Name: "web"}}, reload: ReloadResult{OK: true},
		config: map[string][]byte{"yaml": []byte("routes: []\n")}}
	s := serve(t, ctl, Options{Metrics: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "m 1\n") })})
	s.SetToken([]byte("s3cret"))
	bad := [][]string{
		nil,
		{"Authorization", ""},
		{"Authorization", "Bearer"},
		{"Authorization", "Bearer "},
		{"Authorization", "Bearer s3cre"},   // a prefix
		{"Authorization", "Bearer s3cret!"}, // longer
		{"Authorization", "Bearer S3CRET"},
		{"Authorization", "Basic s3cret"},
		{"Authorization", "s3cret"},
		{"Authorization", "Bearers3cret"},
		{"Authorization", "Bearer s3cret", "Authorization", "Bearer s3cret"},
	}
	for _, e := range endpoints {
		for _, h := range bad {
			a := s.do(t, e.method, e.path, e.body, h...)
			if a.status != http.StatusUnauthorized {
				t.Fatalf("%s %s with %q: status %d, want 401", e.method, e.path, h, a.status)
			}
			wantError(t, a, http.StatusUnauthorized, "")
			if got := a.header.Get("WWW-Authenticate"); got != `Bearer realm="pier"` {
				t.Fatalf("%s %s with %q: WWW-Authenticate %q", e.method, e.path, h, got)
			}
		}
		wantCalls(t, ctl)
		for _, auth := range []string{"Bearer s3cret", "bearer s3cret", "Bearer   s3cret"} {
			a := s.do(t, e.method, e.path, e.body, "Authorization", auth)
			if a.status == http.StatusUnauthorized || a.status == http.StatusForbidden {
				t.Fatalf("%s %s with %q: status %d, want through; body %s", e.method, e.path, auth, a.status, a.body)
			}
		}
		ctl.Calls()
	}
}

// SetToken takes effect at once while serving: a new token replaces the
// old one, and nil turns authentication off.
func TestSetTokenWhileServing(t *testing.T) {
	s := serve(t, &fakeControl{}, Options{})
	if a := s.do(t, "GET", "/healthz", ""); a.status != http.StatusOK {
		t.Fatalf("no token: status %d", a.status)
	}
	s.SetToken([]byte("one"))
	wantError(t, s.do(t, "GET", "/healthz", ""), http.StatusUnauthorized, "")
	s.SetToken([]byte("two"))
	wantError(t, s.do(t, "GET", "/healthz", "", "Authorization", "Bearer one"), http.StatusUnauthorized, "")
	if a := s.do(t, "GET", "/healthz", "", "Authorization", "Bearer two"); a.status != http.StatusOK {
		t.Fatalf("new token: status %d", a.status)
	}
	s.SetToken(nil)
	if a := s.do(t, "GET", "/healthz", ""); a.status != http.StatusOK {
		t.Fatalf("token cleared: status %d", a.status)
	}
}

// A browser's cross-site request that changes state is refused before
// pier is asked (CSRF); the same request from the same origin, or from a
// program (no Sec-Fetch-Site, no Origin), passes, and so does a
// cross-site GET, which changes nothing.
func TestCrossSiteStateChangeRefused(t *testing.T) {
	ctl := &fakeControl{reload: ReloadResult{OK: true}}
	s := serve(t, ctl, Options{})
	for _, e := range endpoints {
		if e.method == "GET" {
			continue
		}
		for _, h := range [][]string{
			{"Sec-Fetch-Site", "cross-site"},
			{"Sec-Fetch-Site", "same-site"},
			{"Origin", "http://evil.example"},
			{"Origin", "http://evil.example", "Sec-Fetch-Site", "cross-site"},
		} {
			wantError(t, s.do(t, e.method, e.path, e.body, h...), http.StatusForbidden, "")
		}
	}
	wantCalls(t, ctl)
	for _, h := range [][]string{
		nil,
		{"Sec-Fetch-Site", "same-origin"},
		{"Sec-Fetch-Site", "none"}, // typed in the address bar
		{"Origin", s.base},
	} {
		if a := s.do(t, "POST", "/api/v1/reload", "", h...); a.status != http.StatusOK {
			t.Fatalf("POST with %q: status %d, want 200; body %s", h, a.status, a.body)
		}
		wantCalls(t, ctl, "Reload")
	}
	if a := s.do(t, "GET", "/api/v1/overlay", "", "Sec-Fetch-Site", "cross-site", "Origin", "http://evil.example"); a.status != http.StatusOK {
		t.Fatalf("cross-site GET: status %d, want 200", a.status)
	}
}

// Without a token, a request whose Host is not this machine's is refused
// (a DNS rebinding page sends its own name); loopback IPs, localhost and
// the configured listen address pass. With a token the Host is not
// checked: the token alone defeats rebinding.
func TestRebindingHostRefusedWithoutToken(t *testing.T) {
	ctl := &fakeControl{}
	s := serve(t, ctl, Options{ListenAddr: "admin.internal:9901"})
	_, port, _ := strings.Cut(s.addr, ":")
	for _, host := range []string{"evil.example:" + port, "evil.example", "10.0.0.1:" + port, "localhost.evil.example", "127.0.0.1.evil.example", "admin.internal.evil:" + port} {
		wantError(t, s.do(t, "GET", "/api/v1/overlay", "", "Host", host), http.StatusForbidden, "")
		wantError(t, s.do(t, "GET", "/healthz", "", "Host", host), http.StatusForbidden, "")
	}
	wantCalls(t, ctl)
	for _, host := range []string{s.addr, "127.0.0.1", "127.9.9.9:" + port, "[::1]:" + port, "localhost:" + port, "LocalHost", "localhost.:" + port, "admin.internal:" + port, "[::ffff:127.0.0.1]:" + port} {
		if a := s.do(t, "GET", "/api/v1/overlay", "", "Host", host); a.status != http.StatusOK {
			t.Fatalf("Host %q: status %d, want 200; body %s", host, a.status, a.body)
		}
	}
	s.SetToken([]byte("t"))
	if a := s.do(t, "GET", "/api/v1/overlay", "", "Host", "evil.example", "Authorization", "Bearer t"); a.status != http.StatusOK {
		t.Fatalf("with token, Host evil.example: status %d, want 200", a.status)
	}
}

// A body over 1 MiB is refused with 413, whether its length is declared
// or it comes chunked, before pier sees it; 1 MiB exactly passes whole.
func TestBodyOverOneMiBRefused(t *testing.T) {
	ctl := &fakeControl{preview: Preview{OK: true}}
	s := serve(t, ctl, Options{})
	big := bytes.Repeat([]byte("#"), maxBody+1)
	for _, chunked := range []bool{false, true} {
		for _, path := range []string{"/api/v1/config/check", "/api/v1/routes/web/filters"} {
			var body io.Reader = bytes.NewReader(big)
			if chunked {
				body = io.MultiReader(body) // no length known: sent chunked
			}
			method := "POST"
			req, _ := http.NewRequest(method, s.base+path, body)
			resp, err := s.client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			data, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			wantError(t, answer{resp.StatusCode, resp.Header, data}, http.StatusRequestEntityTooLarge, "")
		}
	}
	wantCalls(t, ctl)
	a := s.do(t, "POST", "/api/v1/config/check", string(big[:maxBody]))
	if a.status != http.StatusOK {
		t.Fatalf("1 MiB: status %d, want 200; body %.200s", a.status, a.body)
	}
	if len(ctl.checked) != maxBody {
		t.Fatalf("Check got %d bytes, want %d", len(ctl.checked), maxBody)
	}
}

// The server's limits bound what a slow or greedy client holds: header
// and body timeouts and a 16 KiB header limit (a larger header is 431).
func TestServerLimits(t *testing.T) {
	s := serve(t, &fakeControl{}, Options{})
	srv := s.srv
	if srv.ReadHeaderTimeout.Seconds() != 5 || srv.ReadTimeout.Seconds() != 10 || srv.WriteTimeout.Seconds() != 30 ||
		srv.IdleTimeout.Seconds() != 60 || srv.MaxHeaderBytes != 16<<10 {
		t.Fatalf("server limits %v %v %v %v %d", srv.ReadHeaderTimeout, srv.ReadTimeout, srv.WriteTimeout, srv.IdleTimeout, srv.MaxHeaderBytes)
	}
	a := s.do(t, "GET", "/healthz", "", "X-Pad", strings.Repeat("x", 32<<10))
	if a.status != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("32 KiB header: status %d, want 431", a.status)
	}
}

// Unknown paths and methods answer JSON errors like every other, the
// 405 with its Allow header.
func TestUnknownEndpointAndMethod(t *testing.T) {
	s := serve(t, &fakeControl{}, Options{})
	wantError(t, s.do(t, "GET", "/api/v1/nothing", ""), http.StatusNotFound, "")
	a := s.do(t, "POST", "/api/v1/overlay", "")
	wantError(t, a, http.StatusMethodNotAllowed, "")
	if allow := a.header.Get("Allow"); !strings.Contains(allow, "DELETE") || !strings.Contains(allow, "GET") {
		t.Fatalf("Allow %q", allow)
	}
	wantError(t, s.do(t, "POST", "/api/v1/routes/web/members/a/explode", ""), http.StatusNotFound, "")
}
