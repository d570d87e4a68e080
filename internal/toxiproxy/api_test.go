package toxiproxy_test

import (
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	toxiclient "github.com/Shopify/toxiproxy/v2/client"
)

// Every proxy call of Toxiproxy's client, against pier's data path.
func TestProxyLifecycleThroughToxiproxysClient(t *testing.T) {
	e := newEnv(t)
	p := e.createProxy(t, "redis")
	host, port, err := net.SplitHostPort(p.Listen)
	if err != nil || host != "127.0.0.1" || port == "0" {
		t.Fatalf("listen %q: want the bound address, 127.0.0.1 and a real port", p.Listen)
	}
	if !p.Enabled || p.Upstream != e.echo {
		t.Errorf("created %+v", p)
	}
	c := dial(t, p.Listen)
	roundTrip(t, c, "hello")

	all, err := e.client.Proxies()
	if err != nil || len(all) != 1 || all["redis"] == nil || all["redis"].Listen != p.Listen {
		t.Fatalf("Proxies: %v, %v", all, err)
	}
	got, err := e.client.Proxy("redis")
	if err != nil || got.Listen != p.Listen || len(got.ActiveToxics) != 0 {
		t.Fatalf("Proxy: %+v, %v", got, err)
	}

	// Disable closes the listener: new clients are refused.
	if err := got.Disable(); err != nil {
		t.Fatal(err)
	}
	if got.Enabled {
		t.Error("Disable: still enabled")
	}
	if c, err := net.DialTimeout("tcp", p.Listen, 5*time.Second); !errors.Is(err, syscall.ECONNREFUSED) {
		if c != nil {
			c.Close()
		}
		t.Fatalf("dial a disabled proxy: %v, want connection refused", err)
	}
	// Enable listens again, on the same port.
	if err := got.Enable(); err != nil {
		t.Fatal(err)
	}
	if got.Listen != p.Listen {
		t.Errorf("enabled again on %s, was %s", got.Listen, p.Listen)
	}
	roundTrip(t, dial(t, p.Listen), "again")

	// A new upstream moves the proxy's sessions there.
	other := echoServer(t)
	got.Upstream = other
	if err := got.Save(); err != nil {
		t.Fatal(err)
	}
	if got.Upstream != other || got.Listen != p.Listen || !got.Enabled {
		t.Errorf("after Save with a new upstream: %+v", got)
	}
	roundTrip(t, dial(t, p.Listen), "moved")

	if err := got.Delete(); err != nil {
		t.Fatal(err)
	}
	if _, err := e.client.Proxy("redis"); err == nil || err.Error() != "HTTP 404: proxy not found" {
		t.Errorf("Proxy after Delete: %v", err)
	}
	if c, err := net.DialTimeout("tcp", p.Listen, 5*time.Second); !errors.Is(err, syscall.ECONNREFUSED) {
		if c != nil {
			c.Close()
		}
		t.Errorf("dial a deleted proxy: %v, want connection refused", err)
	}
	if err := got.Delete(); err == nil || !strings.Contains(err.Error(), "HTTP 404: proxy not found") {
		t.Errorf("Delete twice: %v", err)
	}
}

// Disable and delete end the live connections, as Toxiproxy's do.
func TestDisableEndsLiveConnections(t *testing.T) {
	e := newEnv(t)
	p := e.createProxy(t, "db")
	c := dial(t, p.Listen)
	roundTrip(t, c, "x")
	if err := p.Disable(); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := c.Read(make([]byte, 1)); err == nil {
		t.Errorf("read %d bytes from a connection of a disabled proxy, want its end", n)
	}
}

func TestPopulateAndReset(t *testing.T) {
	e := newEnv(t)
	ps, err := e.client.Populate([]toxiclient.Proxy{
		{Name: "one", Listen: "127.0.0.1:0", Upstream: e.echo, Enabled: true},
		{Name: "two", Listen: "127.0.0.1:0", Upstream: e.echo, Enabled: false},
	})
	if err != nil || len(ps) != 2 {
		t.Fatalf("Populate: %v, %v", ps, err)
	}
	one, _ := e.client.Proxy("one")
	if _, err := one.AddToxic("lat", "latency", "", 1, toxiclient.Attributes{"latency": 100}); err != nil {
		t.Fatal(err)
	}
	// The same proxy again is left as it is, toxics and all.
	if _, err := e.client.Populate([]toxiclient.Proxy{{Name: "one", Listen: one.Listen, Upstream: e.echo}}); err != nil {
		t.Fatal(err)
	}
	if one, _ = e.client.Proxy("one"); len(one.ActiveToxics) != 1 {
		t.Errorf("populate with the same proxy dropped its toxics: %+v", one.ActiveToxics)
	}
	// A missing name is a 400 naming the proxy, and nothing is created.
	_, err = e.client.Populate([]toxiclient.Proxy{{Name: "three", Upstream: e.echo}, {Upstream: e.echo}})
	if err == nil || !strings.Contains(err.Error(), "HTTP 400: missing required field: name at proxy 2") {
		t.Errorf("populate without a name: %v", err)
	}
	if _, err := e.client.Proxy("three"); err == nil {
		t.Error("a failed populate created proxy three")
	}
	// Reset enables every proxy and removes every toxic.
	if err := e.client.ResetState(); err != nil {
		t.Fatal(err)
	}
	all, _ := e.client.Proxies()
	for name, p := range all {
		if !p.Enabled || len(p.ActiveToxics) != 0 {
			t.Errorf("after reset, %s: enabled %v, toxics %v", name, p.Enabled, p.ActiveToxics)
		}
	}
	roundTrip(t, dial(t, all["two"].Listen), "two")
}

func TestToxicCallsAndDefaults(t *testing.T) {
	e := newEnv(t)
	p := e.createProxy(t, "api")
	tx, err := p.AddToxic("", "latency", "", 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	if tx.Name != "latency_downstream" || tx.Stream != "downstream" || tx.Toxicity != 1 ||
		tx.Attributes["latency"] != 0.0 || tx.Attributes["jitter"] != 0.0 {
		t.Errorf("defaults: %+v", tx)
	}
	tx, err = p.AddToxic("", "latency", "upstream", 0.5, toxiclient.Attributes{"latency": 100, "jitter": 10})
	if err != nil || tx.Name != "latency_upstream" || tx.Toxicity != 0.5 || tx.Attributes["latency"] != 100.0 {
		t.Fatalf("upstream: %+v, %v", tx, err)
	}
	// Update merges attributes: jitter changes, latency stays.
	tx, err = p.UpdateToxic("latency_upstream", -1, toxiclient.Attributes{"jitter": 50})
	if err != nil || tx.Attributes["latency"] != 100.0 || tx.Attributes["jitter"] != 50.0 {
		t.Fatalf("update: %+v, %v", tx, err)
	}
	list, err := p.Toxics()
	if err != nil || len(list) != 2 || list[0].Name != "latency_upstream" || list[1].Name != "latency_downstream" {
		t.Fatalf("Toxics: %+v, %v; want upstream first", list, err)
	}
	// The ToxicOptions calls, which look the proxy up first.
	if _, err := e.client.AddToxic(&toxiclient.ToxicOptions{ProxyName: "api", ToxicName: "bw", ToxicType: "bandwidth", Stream: "upstream", Toxicity: 1, Attributes: toxiclient.Attributes{"rate": 1000}}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.client.UpdateToxic(&toxiclient.ToxicOptions{ProxyName: "api", ToxicName: "bw", Toxicity: 1, Attributes: toxiclient.Attributes{"rate": 2000}}); err != nil {
		t.Fatal(err)
	}
	if err := e.client.RemoveToxic(&toxiclient.ToxicOptions{ProxyName: "api", ToxicName: "bw"}); err != nil {
		t.Fatal(err)
	}
	for _, typ := range []string{"bandwidth", "slow_close", "timeout", "reset_peer", "slicer", "limit_data", "noop"} {
		if _, err := p.AddToxic("", typ, "", 1, nil); err != nil {
			t.Errorf("add %s: %v", typ, err)
		}
	}
	if err := p.RemoveToxic("latency_downstream"); err != nil {
		t.Fatal(err)
	}
	roundTrip(t, dial(t, p.Listen), "") // every toxic type at once is a valid route
}

func TestErrorsAreToxiproxys(t *testing.T) {
	e := newEnv(t)
	p := e.createProxy(t, "api")
	p.AddToxic("lat", "latency", "", 1, nil)
	_, errNoName := e.client.CreateProxy("", "127.0.0.1:0", e.echo)
	_, errNoUp := e.client.CreateProxy("x", "127.0.0.1:0", "")
	_, errExists := e.client.CreateProxy("api", "127.0.0.1:0", e.echo)
	_, errProxy := e.client.Proxy("nope")
	_, errStream := p.AddToxic("", "latency", "sideways", 1, nil)
	_, errType := p.AddToxic("", "wobble", "", 1, nil)
	_, errToxicExists := p.AddToxic("lat", "latency", "upstream", 1, nil)
	errToxicMissing := p.RemoveToxic("nope")
	_, errUpdateMissing := p.UpdateToxic("nope", 1, nil)
	_, errAttr := p.AddToxic("", "latency", "upstream", 1, toxiclient.Attributes{"latency": 1.5})
	_, errBind := e.client.CreateProxy("clash", p.Listen, e.echo)
	_, errAddr := e.client.CreateProxy("bad", "local373", e.echo)
	// pier's own refusals word the proxy's fields, not the YAML made of them.
	_, errUpstream := e.client.CreateProxy("bad", "127.0.0.1:0", "nothost")
	for _, c := range []struct {
		err  error
		want string
	}{
		{errNoName, "HTTP 400: missing required field: name"},
		{errNoUp, "HTTP 400: missing required field: upstream"},
		{errExists, "HTTP 409: proxy already exists"},
		{errProxy, "HTTP 404: proxy not found"},
		{errStream, "HTTP 400: stream was invalid, can be either upstream or downstream"},
		{errType, "HTTP 400: invalid toxic type"},
		{errToxicExists, "AddToxic: HTTP 409: toxic already exists"},
		{errToxicMissing, "HTTP 404: toxic not found"},
		{errUpdateMissing, "HTTP 404: toxic not found"},
		{errAttr, "HTTP 400: bad request body: json: cannot unmarshal number 1.5 into Go struct field LatencyToxic.attributes.latency of type int64"},
		{errBind, "HTTP 500: listen tcp " + p.Listen + ": bind: address already in use"},
		{errAddr, "HTTP 500: listen tcp: address local373: missing port in address"},
		{errUpstream, `: HTTP 500: upstream: "nothost": missing port: want host:port`},
	} {
		if c.err == nil || !strings.HasSuffix(c.err.Error(), c.want) {
			t.Errorf("error %v, want one ending %q", c.err, c.want)
		}
	}
	if _, err := e.client.Proxy("clash"); err == nil {
		t.Error("a proxy that could not listen was added")
	}

	for _, c := range []struct {
		method, path, ua, body string
		code                   int
		ctype, want            string
	}{
		{"GET", "/proxies", "Mozilla/5.0 (X11)", "", 403, "text/plain; charset=utf-8", "User agent not allowed\n"},
		{"GET", "/proxies", "mozilla/5.0", "", 200, "application/json", ""},
		{"POST", "/proxies", "", "", 400, "text/plain; charset=utf-8", `{"error":"bad request body: EOF","status":400}` + "\n"},
		{"POST", "/proxies", "", `{"name":`, 400, "", `{"error":"bad request body: unexpected EOF","status":400}` + "\n"},
		{"POST", "/proxies/api/toxics", "", `{"type":"latency","toxicity":"x"}`, 400, "", `{"error":"bad request body: json: cannot unmarshal string into Go struct field ToxicWrapper.toxicity of type float32","status":400}` + "\n"},
		// The decoder's words name Toxiproxy's types, package included.
		{"POST", "/proxies/api/toxics", "", `[]`, 400, "", `{"error":"bad request body: json: cannot unmarshal array into Go value of type toxics.ToxicWrapper","status":400}` + "\n"},
		{"POST", "/proxies/api/toxics", "", `{"type":"latency","attributes":[1]}`, 400, "", `{"error":"bad request body: json: cannot unmarshal array into Go struct field ToxicWrapper.attributes of type toxics.NoopToxic","status":400}` + "\n"},
		{"POST", "/proxies/api/toxics", "", `{"type":"latency","stream":""}`, 400, "", `{"error":"stream was invalid, can be either upstream or downstream","status":400}` + "\n"},
		{"GET", "/proxies/nope/toxics", "", "", 404, "", `{"error":"proxy not found","status":404}` + "\n"},
		{"GET", "/proxies/api/toxics/nope", "", "", 404, "", `{"error":"toxic not found","status":404}` + "\n"},
		{"PATCH", "/proxies/api/toxics/lat", "", "", 400, "", `{"error":"bad request body: EOF","status":400}` + "\n"},
		{"POST", "/populate", "", `[{"upstream":"x:1"}]`, 400, "application/json", `{"error":"missing required field: name at proxy 1","status":400,"proxies":null}`},
		{"POST", "/populate", "", `[]`, 201, "application/json", `{"proxies":null}`},
		{"GET", "/version", "", "", 200, "application/json;charset=utf-8", `{"version": "2.12.0-pier"}` + "\n"},
		{"PUT", "/proxies", "", "", 405, "", ""},
		{"HEAD", "/version", "", "", 405, "", ""},
		{"GET", "/proxies/", "", "", 404, "text/plain; charset=utf-8", "404 page not found\n"},
		{"GET", "/nothing", "Mozilla/5.0", "", 404, "", "404 page not found\n"},
	} {
		req, _ := http.NewRequest(c.method, e.url+c.path, strings.NewReader(c.body))
		req.Header.Set("User-Agent", c.ua)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.code || (c.want != "" || c.code == 405) && string(body) != c.want ||
			c.ctype != "" && resp.Header.Get("Content-Type") != c.ctype {
			t.Errorf("%s %s (UA %q): %d %q %q, want %d %q %q", c.method, c.path, c.ua, resp.StatusCode, resp.Header.Get("Content-Type"), body, c.code, c.ctype, c.want)
		}
		if matched := c.code != 404 || strings.HasPrefix(c.path, "/proxies/nope") || strings.Contains(c.path, "toxics/"); matched && c.code != 405 &&
			len(resp.Header.Get("X-Toxiproxy-Request-Id")) != 20 {
			t.Errorf("%s %s: no 20-character X-Toxiproxy-Request-Id", c.method, c.path)
		}
	}
}
