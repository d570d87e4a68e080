package toxiproxy_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"github.com/pierproxy/pier/config"
	"github.com/pierproxy/pier/internal/toxiproxy"
)

// fakeHost takes any routes without opening anything: the fuzz tests
// exercise the API's parsing, not sockets.
type fakeHost struct{}

func (fakeHost) SetRoutes([]config.Route) error { return nil }
func (fakeHost) Addrs(string) []netip.AddrPort {
	return []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:4242")}
}
func (fakeHost) EndSessions(context.Context, string, bool) (int, error) { return 0, nil }

// fuzzRequest sends body to path on a server with one proxy "p" holding
// a toxic "t", and checks the answer: never a panic, never a 5xx except
// Toxiproxy's 500 for an address it cannot use, and every error a JSON
// body whose status is the response's; a body that is not JSON is a 400
// "bad request body: ...".
func fuzzRequest(t *testing.T, method, path string, body []byte) {
	s := toxiproxy.NewServer(fakeHost{}, toxiproxy.Options{Log: slog.New(slog.DiscardHandler)})
	h := s.Handler()
	for _, setup := range []struct{ path, body string }{
		{"/proxies", `{"name":"p","listen":"127.0.0.1:0","upstream":"127.0.0.1:1"}`},
		{"/proxies/p/toxics", `{"name":"t","type":"latency","attributes":{"latency":5}}`},
	} {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("POST", setup.path, strings.NewReader(setup.body)))
		if w.Code >= 300 {
			t.Fatalf("setup %s: %d %s", setup.path, w.Code, w.Body)
		}
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(method, path, strings.NewReader(string(body))))
	// Toxiproxy reads a body's first JSON value, and only that.
	bad := !validPrefix(body)
	if w.Code < 400 {
		if bad {
			t.Fatalf("%s %s %q: %d for a body that is not JSON", method, path, body, w.Code)
		}
		return
	}
	var e struct {
		Error  string `json:"error"`
		Status int    `json:"status"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil || e.Error == "" || e.Status != w.Code {
		t.Fatalf("%s %s %q: %d %q: not Toxiproxy's error body", method, path, body, w.Code, w.Body)
	}
	if bad && (w.Code != http.StatusBadRequest || !strings.HasPrefix(e.Error, "bad request body: ")) {
		t.Fatalf("%s %s %q: %d %q; want 400 bad request body", method, path, body, w.Code, e.Error)
	}
	if w.Code == http.StatusInternalServerError && strings.Contains(path, "toxics") {
		t.Fatalf("%s %s %q: 500 %q", method, path, body, e.Error)
	}
}

// validPrefix reports whether body begins with a whole JSON value.
func validPrefix(body []byte) bool {
	var v any
	return json.NewDecoder(strings.NewReader(string(body))).Decode(&v) == nil
}

func FuzzToxicBody(f *testing.F) {
	for _, s := range []string{
		`{"type":"latency","attributes":{"latency":100,"jitter":10}}`,
		`{"name":"x","type":"bandwidth","stream":"UpStream","toxicity":0.5,"attributes":{"rate":0}}`,
		`{"type":"slicer","attributes":{"average_size":0,"size_variation":99,"delay":-1}}`,
		`{"type":"limit_data","attributes":{"bytes":-5}}`,
		`{"type":"reset_peer","attributes":null}`, `{"type":"timeout","toxicity":"x"}`,
		`{"type":"latency","attributes":{"latency":1.5}}`, `{"type":"noop","stream":""}`,
		`{"type":"latency","attributes":{"Latency":99999999999999}}`, `[]`, ``, `{`, `nul`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		fuzzRequest(t, "POST", "/proxies/p/toxics", []byte(body))
		fuzzRequest(t, "PATCH", "/proxies/p/toxics/t", []byte(body))
	})
}

func FuzzProxyBody(f *testing.F) {
	for _, s := range []string{
		`{"name":"q","listen":"127.0.0.1:0","upstream":"127.0.0.1:2"}`,
		`{"name":"q","upstream":"x:1","enabled":false}`, `{"name":"q","listen":"local373","upstream":"x"}`,
		`{"listen":"bad::::addr"}`, `{"upstream":"127.0.0.1:3"}`, `{"name":5}`, `{"enabled":"yes"}`, ``, `}`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		fuzzRequest(t, "POST", "/proxies", []byte(body))
		fuzzRequest(t, "PATCH", "/proxies/p", []byte(body))
	})
}

func FuzzPopulateBody(f *testing.F) {
	for _, s := range []string{
		`[{"name":"p","listen":"127.0.0.1:4242","upstream":"127.0.0.1:1"},{"name":"n","upstream":"h:1","enabled":null}]`,
		`[{"name":"p","listen":"127.0.0.1:0","upstream":"127.0.0.1:1"}]`, `[{"upstream":"x"}]`, `[{"name":"a"}]`,
		`{}`, `[]`, `[1]`, ``,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		fuzzRequest(t, "POST", "/populate", []byte(body))
	})
}
