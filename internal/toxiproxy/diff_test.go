package toxiproxy_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"text/template"
	"time"
)

// A diffStep is one request of the script both servers answer.
type diffStep struct {
	method, path string
	// body is a text/template: {{echo}} is the upstream's address,
	// {{busy}} an address already bound, {{listen "NAME"}} the listen
	// address the server under test shows for proxy NAME now, {{port
	// "NAME"}} its port.
	body string
	ua   string // User-Agent; empty: the Go client's "toxiproxy-cli"
}

// diffScript covers every endpoint of Toxiproxy's API and every error it
// answers, in an order whose outcome does not depend on chance
// (Toxiproxy's /reset walks its proxies in map order, so a reset that
// fails part-way is followed by one that succeeds before anything else
// is compared).
var diffScript = []diffStep{
	// Version, and an empty server.
	{method: "GET", path: "/version"},
	{method: "GET", path: "/proxies"},
	{method: "GET", path: "/proxies/one/toxics"},
	{method: "POST", path: "/reset"},

	// Create: success, defaults, the extra fields Toxiproxy ignores.
	{method: "POST", path: "/proxies", body: `{"name":"one","listen":"127.0.0.1:0","upstream":"{{echo}}"}`},
	{method: "POST", path: "/proxies", body: `{"name":"two","listen":"127.0.0.1:0","upstream":"{{echo}}","enabled":false}`},
	{method: "POST", path: "/proxies", body: `{"name":"three","listen":"localhost:0","upstream":"{{echo}}","enabled":true,"toxics":[{"type":"latency"}],"Logger":{"x":1},"unknown":2}`},
	{method: "POST", path: "/proxies", body: `{"name":"Web Dev #1.a-b_C","listen":"127.0.0.1:0","upstream":"{{echo}}"}`},
	// Create: every error.
	{method: "POST", path: "/proxies", body: `{"name":"one","listen":"127.0.0.1:0","upstream":"{{echo}}"}`},
	{method: "POST", path: "/proxies", body: ``},
	{method: "POST", path: "/proxies", body: `{"name":"x",`},
	{method: "POST", path: "/proxies", body: `[]`},
	{method: "POST", path: "/proxies", body: `{"name":"x","upstream":"{{echo}}","enabled":"yes"}`},
	{method: "POST", path: "/proxies", body: `{"name":7}`},
	{method: "POST", path: "/proxies", body: `{"listen":"127.0.0.1:0","upstream":"{{echo}}"}`},
	{method: "POST", path: "/proxies", body: `{"name":"x","listen":"127.0.0.1:0"}`},
	{method: "POST", path: "/proxies", body: `{"name":"","upstream":""}`},
	{method: "POST", path: "/proxies", body: `{"name":"busy","listen":"{{busy}}","upstream":"{{echo}}"}`},
	{method: "POST", path: "/proxies", body: `{"name":"bad","listen":"bad::::addr","upstream":"{{echo}}"}`},
	{method: "POST", path: "/proxies", body: `{"name":"bad","listen":"local373","upstream":"{{echo}}"}`},
	{method: "GET", path: "/proxies/busy"},
	{method: "GET", path: "/proxies/bad"},

	// List and show.
	{method: "GET", path: "/proxies"},
	{method: "GET", path: "/proxies?x=1"},
	{method: "GET", path: "/proxies/one"},
	{method: "GET", path: "/proxies/two"},
	{method: "GET", path: "/proxies/Web%20Dev%20%231.a-b_C"},
	{method: "GET", path: "/proxies/nope"},

	// Update: POST and PATCH alike, omitted fields kept, no renaming.
	{method: "POST", path: "/proxies/one", body: `{"name":"one","listen":"{{listen "one"}}","upstream":"{{echo}}","enabled":false,"toxics":null}`},
	{method: "GET", path: "/proxies/one"},
	{method: "PATCH", path: "/proxies/one", body: `{"enabled":true}`},
	{method: "PATCH", path: "/proxies/one", body: `{"name":"renamed"}`},
	{method: "PATCH", path: "/proxies/one", body: `{}`},
	{method: "PATCH", path: "/proxies/one", body: `{"upstream":"127.0.0.1:9"}`},
	{method: "PATCH", path: "/proxies/one", body: `{"upstream":"{{echo}}","listen":"127.0.0.1:0"}`},
	{method: "GET", path: "/proxies/renamed"},
	// Update: every error.
	{method: "PATCH", path: "/proxies/nope", body: `{"enabled":true}`},
	{method: "POST", path: "/proxies/nope", body: `{"enabled":true}`},
	{method: "PATCH", path: "/proxies/one", body: `{`},
	{method: "PATCH", path: "/proxies/one", body: ``},
	{method: "PATCH", path: "/proxies/one", body: `{"enabled":1}`},
	{method: "PATCH", path: "/proxies/one", body: `{"listen":"bad::::addr"}`},
	{method: "GET", path: "/proxies/one"},
	// A disabled proxy moved to a bound address: 500, left disabled there.
	{method: "PATCH", path: "/proxies/two", body: `{"listen":"{{busy}}","enabled":true}`},
	{method: "GET", path: "/proxies/two"},
	{method: "PATCH", path: "/proxies/two", body: `{"listen":"127.0.0.1:0"}`},
	{method: "GET", path: "/proxies/two"},

	// Toxics of every type, defaults and stream spellings.
	{method: "GET", path: "/proxies/one/toxics"},
	{method: "POST", path: "/proxies/one/toxics", body: `{"type":"latency","attributes":{"latency":100,"jitter":10}}`},
	{method: "POST", path: "/proxies/one/toxics", body: `{"type":"bandwidth","stream":"upstream","attributes":{"rate":1000}}`},
	{method: "POST", path: "/proxies/one/toxics", body: `{"name":"sc","type":"slow_close","stream":"UpStream","toxicity":0.5,"attributes":{"delay":10}}`},
	{method: "POST", path: "/proxies/one/toxics", body: `{"type":"timeout","stream":"downstream","toxicity":0,"attributes":{"timeout":0}}`},
	{method: "POST", path: "/proxies/one/toxics", body: `{"type":"reset_peer","stream":"DOWNSTREAM","attributes":{"timeout":100}}`},
	{method: "POST", path: "/proxies/one/toxics", body: `{"name":"","type":"slicer","attributes":{"average_size":64,"size_variation":32,"delay":10}}`},
	{method: "POST", path: "/proxies/one/toxics", body: `{"type":"limit_data","stream":"upstream","toxicity":2.5,"attributes":{"bytes":1000}}`},
	{method: "POST", path: "/proxies/one/toxics", body: `{"type":"noop"}`},
	{method: "POST", path: "/proxies/one/toxics", body: `{"name":"lat2","type":"latency","stream":"upstream","attributes":{"Latency":7,"unknown":1}}`},
	{method: "POST", path: "/proxies/one/toxics", body: `{"name":"lat3","type":"latency","attributes":null,"toxicity":-1}`},
	{method: "POST", path: "/proxies/one/toxics", body: `{"name":"bw0","type":"bandwidth","attributes":{"rate":100.0}}`},
	// Toxic create: every error.
	{method: "POST", path: "/proxies/one/toxics", body: `{"type":"latency"}`},
	{method: "POST", path: "/proxies/one/toxics", body: `{"name":"latency_downstream","type":"latency","stream":"upstream"}`},
	{method: "POST", path: "/proxies/one/toxics", body: `{"name":"x","type":"latency","stream":"sideways"}`},
	{method: "POST", path: "/proxies/one/toxics", body: `{"name":"x","type":"latency","stream":""}`},
	{method: "POST", path: "/proxies/one/toxics", body: `{"name":"x","type":"nope"}`},
	{method: "POST", path: "/proxies/one/toxics", body: `{"name":"x","type":""}`},
	{method: "POST", path: "/proxies/one/toxics", body: `{"name":"x"}`},
	{method: "POST", path: "/proxies/one/toxics", body: `{"name":"x","type":"nope","stream":"sideways"}`},
	{method: "POST", path: "/proxies/one/toxics", body: `{"name":"latency_downstream","type":"nope"}`},
	{method: "POST", path: "/proxies/one/toxics", body: `{`},
	{method: "POST", path: "/proxies/one/toxics", body: ``},
	{method: "POST", path: "/proxies/one/toxics", body: `[]`},
	{method: "POST", path: "/proxies/one/toxics", body: `{"name":"x","type":"latency","toxicity":"x"}`},
	{method: "POST", path: "/proxies/one/toxics", body: `{"name":"x","type":"latency","attributes":{"latency":1.5}}`},
	{method: "POST", path: "/proxies/one/toxics", body: `{"name":"x","type":"latency","attributes":{"latency":"5"}}`},
	{method: "POST", path: "/proxies/one/toxics", body: `{"name":"x","type":"slicer","attributes":{"delay":1.5}}`},
	{method: "POST", path: "/proxies/one/toxics", body: `{"name":"x","type":"latency","attributes":[1]}`},
	{method: "POST", path: "/proxies/one/toxics", body: `{"name":"x","type":"latency","attributes":{"latency":1},"stream":7}`},
	{method: "POST", path: "/proxies/nope/toxics", body: `{"type":"latency"}`},
	{method: "POST", path: "/proxies/nope/toxics", body: `{`},
	{method: "GET", path: "/proxies/one/toxics"},
	{method: "GET", path: "/proxies/one"},

	// Toxic show, update, delete.
	{method: "GET", path: "/proxies/one/toxics/latency_downstream"},
	{method: "GET", path: "/proxies/one/toxics/sc"},
	{method: "GET", path: "/proxies/one/toxics/nope"},
	{method: "GET", path: "/proxies/nope/toxics/latency_downstream"},
	{method: "GET", path: "/proxies/nope/toxics"},
	{method: "PATCH", path: "/proxies/one/toxics/latency_downstream", body: `{"attributes":{"jitter":50}}`},
	{method: "POST", path: "/proxies/one/toxics/latency_downstream", body: `{"toxicity":0.25}`},
	{method: "PATCH", path: "/proxies/one/toxics/latency_downstream", body: `{"name":"renamed","type":"bandwidth","stream":"upstream","attributes":{"latency":5}}`},
	{method: "PATCH", path: "/proxies/one/toxics/latency_downstream", body: `{"attributes":null}`},
	{method: "PATCH", path: "/proxies/one/toxics/noop_downstream", body: `{"attributes":{"x":1},"toxicity":0}`},
	{method: "PATCH", path: "/proxies/one/toxics/slicer_downstream", body: `{"attributes":{"AVERAGE_SIZE":10}}`},
	{method: "GET", path: "/proxies/one/toxics/renamed"},
	{method: "PATCH", path: "/proxies/one/toxics/latency_downstream", body: ``},
	{method: "PATCH", path: "/proxies/one/toxics/latency_downstream", body: `{`},
	{method: "PATCH", path: "/proxies/one/toxics/latency_downstream", body: `{"toxicity":"x"}`},
	{method: "PATCH", path: "/proxies/one/toxics/latency_downstream", body: `{"attributes":{"latency":1.5}}`},
	{method: "PATCH", path: "/proxies/one/toxics/nope", body: `{}`},
	{method: "PATCH", path: "/proxies/nope/toxics/latency_downstream", body: `{}`},
	{method: "GET", path: "/proxies/one/toxics/latency_downstream"},
	{method: "DELETE", path: "/proxies/one/toxics/bandwidth_upstream"},
	{method: "DELETE", path: "/proxies/one/toxics/bandwidth_upstream"},
	{method: "DELETE", path: "/proxies/nope/toxics/bandwidth_upstream"},
	{method: "GET", path: "/proxies/one/toxics"},
	// Toxics on a disabled proxy are kept, and may be added.
	{method: "POST", path: "/proxies/two/toxics", body: `{"type":"latency","attributes":{"latency":1}}`},
	{method: "GET", path: "/proxies/two"},

	// Populate: the same proxy left as it is (toxics and enabled too),
	// a new one made, then every error.
	{method: "POST", path: "/populate", body: `[]`},
	{method: "POST", path: "/populate", body: `[{"name":"one","listen":"{{listen "one"}}","upstream":"{{echo}}","enabled":false},{"name":"four","listen":"127.0.0.1:0","upstream":"{{echo}}"},{"name":"five","listen":"127.0.0.1:0","upstream":"{{echo}}","enabled":false}]`},
	{method: "GET", path: "/proxies/one/toxics"},
	{method: "POST", path: "/populate", body: `[{"name":"six","listen":"127.0.0.1:0","upstream":"{{echo}}"},{"listen":"127.0.0.1:0","upstream":"{{echo}}"}]`},
	{method: "POST", path: "/populate", body: `[{"name":"six","listen":"127.0.0.1:0","upstream":"{{echo}}"},{"name":"seven","listen":"127.0.0.1:0"}]`},
	{method: "GET", path: "/proxies/six"},
	{method: "POST", path: "/populate", body: `{"name":"six"}`},
	{method: "POST", path: "/populate", body: ``},
	{method: "POST", path: "/populate", body: `[{"name":"six","listen":"127.0.0.1:0","upstream":"{{echo}}","enabled":"no"}]`},
	{method: "POST", path: "/populate", body: `[{"name":"six","listen":"127.0.0.1:0","upstream":"{{echo}}"},{"name":"seven","listen":"local373","upstream":"{{echo}}"}]`},
	{method: "POST", path: "/populate", body: `[{"name":"four","listen":"bad::::addr","upstream":"{{echo}}"}]`},
	{method: "POST", path: "/populate", body: `[{"name":"eight","listen":"{{busy}}","upstream":"{{echo}}"}]`},
	{method: "GET", path: "/proxies"},

	// Reset: a proxy that cannot listen fails it; then every proxy is
	// enabled and every toxic gone.
	{method: "PATCH", path: "/proxies/five", body: `{"listen":"{{busy}}"}`},
	{method: "POST", path: "/reset", body: `ignored`},
	{method: "PATCH", path: "/proxies/five", body: `{"listen":"127.0.0.1:0"}`},
	{method: "POST", path: "/reset"},
	{method: "GET", path: "/proxies"},

	// Delete.
	{method: "DELETE", path: "/proxies/one"},
	{method: "DELETE", path: "/proxies/one"},
	{method: "GET", path: "/proxies/one"},
	{method: "DELETE", path: "/proxies/one/toxics/x"},

	// The router: unknown paths, wrong methods, trailing slashes.
	{method: "GET", path: "/nope"},
	{method: "GET", path: "/proxies/"},
	{method: "GET", path: "/version/"},
	{method: "GET", path: "/proxies/two/toxics/"},
	{method: "GET", path: "/proxies/two/nope"},
	{method: "PUT", path: "/proxies"},
	{method: "DELETE", path: "/proxies"},
	{method: "HEAD", path: "/version"},
	{method: "OPTIONS", path: "/proxies"},
	{method: "GET", path: "/reset"},
	{method: "GET", path: "/populate"},
	{method: "GET", path: "/metrics"},
	{method: "PUT", path: "/proxies/two/toxics/latency_downstream"},

	// Names pier's routes cannot take as they are; values out of pier's
	// range (clamped inside, shown as given); a localhost listen on the
	// bound port (no restart); bodies with more after the JSON value.
	{method: "POST", path: "/proxies", body: `{"name":"a/b","listen":"127.0.0.1:0","upstream":"{{echo}}"}`},
	{method: "GET", path: "/proxies/a%2Fb"},
	{method: "POST", path: "/proxies", body: `{"name":"ÄÖ ünï","listen":"127.0.0.1:0","upstream":"{{echo}}"}`},
	{method: "POST", path: "/proxies", body: `{"name":"` + strings.Repeat("x", 100) + `","listen":"127.0.0.1:0","upstream":"{{echo}}"}`},
	{method: "POST", path: "/proxies/two/toxics", body: `{"name":"huge","type":"latency","attributes":{"latency":99999999999999,"jitter":-5}}`},
	{method: "POST", path: "/proxies/two/toxics", body: `{"name":"neg","type":"bandwidth","attributes":{"rate":-5}}`},
	{method: "POST", path: "/proxies/two/toxics", body: `{"name":"s0","type":"slicer","attributes":{"average_size":0,"size_variation":99}}`},
	{method: "POST", path: "/proxies/two/toxics", body: `{"name":"big","type":"latency","attributes":{"latency":9223372036854775807}}`},
	{method: "POST", path: "/proxies/two/toxics", body: `{"name":"big2","type":"latency","attributes":{"latency":9223372036854775808}}`},
	{method: "PATCH", path: "/proxies/two/toxics/huge", body: `{"attributes":{"latency":1}}`},
	{method: "PATCH", path: "/proxies/two", body: `{"listen":"localhost:{{port "two"}}"}`},
	{method: "GET", path: "/proxies/two"},
	{method: "PATCH", path: "/proxies/two", body: `{"enabled":false}`},
	{method: "PATCH", path: "/proxies/two/toxics/huge", body: `{"attributes":{"latency":2}}`},
	{method: "DELETE", path: "/proxies/two/toxics/huge"},
	{method: "POST", path: "/populate", body: `[{"name":"p8","listen":"localhost:0","upstream":"{{echo}}"}]`},
	{method: "POST", path: "/populate", body: `[{"name":"p8","listen":"localhost:{{port "p8"}}","upstream":"{{echo}}","enabled":false}]`},
	{method: "POST", path: "/proxies", body: `{"name":"t","upstream":"x:1","enabled":false} trailing`},
	{method: "POST", path: "/proxies", body: `{"name":"t2","upstream":"x:1","enabled":false}{"name":"t3"}`},
	{method: "POST", path: "/proxies", body: `null`},
	{method: "POST", path: "/populate", body: `null`},
	{method: "PATCH", path: "/proxies/four", body: `null`},
	{method: "POST", path: "/proxies/four/toxics", body: `null`},
	{method: "GET", path: "/proxies"},

	// Browsers are refused on every route, and only browsers.
	{method: "GET", path: "/proxies", ua: "Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0"},
	{method: "POST", path: "/reset", ua: "Mozilla/5.0"},
	{method: "DELETE", path: "/proxies/two", ua: "Mozilla/5.0"},
	{method: "GET", path: "/proxies/nope", ua: "Mozilla/5.0"},
	{method: "GET", path: "/nope", ua: "Mozilla/5.0"},
	{method: "PUT", path: "/proxies", ua: "Mozilla/5.0"},
	{method: "GET", path: "/proxies/two", ua: "mozilla/5.0"},
	{method: "GET", path: "/version", ua: "Wget/2.1"},
	{method: "GET", path: "/version", ua: "-"},
}

// A diffTarget is one server the script runs against.
type diffTarget struct {
	name   string
	url    string
	client *http.Client
	// ports maps each listen port the server bound to the order it was
	// first seen in, "P1", "P2", ...: the same script must bind the same
	// pattern of ports, whatever numbers the kernel gave.
	ports map[string]string
	fixed map[string]bool // ports the script names, shown as they are
}

// diffAnswer is what the comparison looks at in a response.
type diffAnswer struct {
	Status      int
	ContentType string
	NoSniff     string // X-Content-Type-Options
	RequestID   bool   // X-Toxiproxy-Request-Id present (its value is random)
	Body        string
}

func (a diffAnswer) String() string {
	return fmt.Sprintf("%d Content-Type=%q nosniff=%q request-id=%t\n\t\t%q", a.Status, a.ContentType, a.NoSniff, a.RequestID, a.Body)
}

var listenField = regexp.MustCompile(`"listen":"([^"]*):([0-9]+)"`)

// The normalizations; nothing else in an answer may differ:
//   - a listen port the server bound (shown in "listen" fields) is
//     replaced by its first-seen order, P1, P2, ...: each server's kernel
//     picks its own numbers; ports the script names itself ({{echo}},
//     {{busy}}, 0) stay;
//   - /version's string is VERSION: "git" for a go-installed
//     toxiproxy-server, "2.12.0-pier ..." for pier (docs/toxiproxy.md);
//   - X-Toxiproxy-Request-Id is compared for presence only: it is random.
var versionBody = regexp.MustCompile(`^\{"version": "[^"]*"\}\n$`)

func (d *diffTarget) normalize(body string) string {
	if versionBody.MatchString(body) {
		return `{"version": "VERSION"}` + "\n"
	}
	return listenField.ReplaceAllStringFunc(body, func(m string) string {
		sub := listenField.FindStringSubmatch(m)
		host, port := sub[1], sub[2]
		if port == "0" || d.fixed[port] {
			return m
		}
		p, ok := d.ports[port]
		if !ok {
			p = fmt.Sprintf("P%d", len(d.ports)+1)
			d.ports[port] = p
		}
		return fmt.Sprintf(`"listen":"%s:%s"`, host, p)
	})
}

// do sends one request and reads what the comparison needs.
func (d *diffTarget) do(t *testing.T, method, path, body, ua string) (diffAnswer, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, d.url+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if ua == "" {
		ua = "toxiproxy-cli" // the Go client's
	}
	req.Header.Set("User-Agent", ua)
	req.Header.Set("Content-Type", "application/json")
	resp, err := d.client.Do(req)
	if err != nil {
		t.Fatalf("%s: %s %s: %v", d.name, method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		t.Fatalf("%s: %s %s: reading the body: %v", d.name, method, path, err)
	}
	return diffAnswer{
		Status:      resp.StatusCode,
		ContentType: resp.Header.Get("Content-Type"),
		NoSniff:     resp.Header.Get("X-Content-Type-Options"),
		RequestID:   resp.Header.Get("X-Toxiproxy-Request-Id") != "",
		Body:        d.normalize(string(raw)),
	}, raw
}

// listenOf is the listen address the server shows for a proxy now.
func (d *diffTarget) listenOf(t *testing.T, name string) (string, error) {
	_, raw := d.do(t, "GET", "/proxies/"+name, "", "")
	var p struct{ Listen string }
	if err := json.Unmarshal(raw, &p); err != nil || p.Listen == "" {
		return "", fmt.Errorf("listen of %s: %q", name, raw)
	}
	return p.Listen, nil
}

// body fills in a step's template for this server.
func (d *diffTarget) body(t *testing.T, s diffStep, echo, busy string) string {
	t.Helper()
	if !strings.Contains(s.body, "{{") {
		return s.body
	}
	tmpl := template.Must(template.New("").Funcs(template.FuncMap{
		"echo":   func() string { return echo },
		"busy":   func() string { return busy },
		"listen": func(name string) (string, error) { return d.listenOf(t, name) },
		"port": func(name string) (string, error) {
			addr, err := d.listenOf(t, name)
			_, port, _ := net.SplitHostPort(addr)
			return port, err
		},
	}).Parse(s.body))
	var b strings.Builder
	if err := tmpl.Execute(&b, nil); err != nil {
		t.Fatalf("%s: %v", d.name, err)
	}
	return b.String()
}

// diffDeliberate are the requests pier answers otherwise than
// toxiproxy-server, on purpose (docs/toxiproxy.md, "Where pier
// differs"): each with both statuses and pier's body. They run after the
// script, on proxies of their own.
var diffDeliberate = []struct {
	step                   diffStep
	why                    string
	realStatus, pierStatus int
	pierError              string // pier's {"error": ...}
}{
	{diffStep{method: "POST", path: "/proxies", body: `{"name":"d1","listen":"127.0.0.1:0","upstream":"nothost"}`},
		"an upstream that is not host:port cannot be a pier route's member; Toxiproxy fails each connection instead",
		201, 500, `upstream: "nothost": missing port: want host:port`},
	{diffStep{method: "POST", path: "/proxies", body: `{"name":"d2","listen":"127.0.0.1:0","upstream":"127.0.0.1:0"}`},
		"likewise port 0",
		201, 500, `upstream: "127.0.0.1:0": port "0" is not a number from 1 to 65535`},
	{diffStep{method: "POST", path: "/proxies", body: `{"name":"d3","listen":"127.0.0.1:0","upstream":"nothost","enabled":false}`},
		"a disabled proxy is not a route: no difference until it is enabled",
		201, 201, ""},
	{diffStep{method: "PATCH", path: "/proxies/d3", body: `{"enabled":true}`},
		"enabling it is starting it",
		200, 500, `upstream: "nothost": missing port: want host:port`},
	{diffStep{method: "POST", path: "/proxies", body: `{"name":"d4","listen":"example.invalid:0","upstream":"{{echo}}"}`},
		"a listen host must be an IP address, localhost or empty; Toxiproxy looks the name up (and fails here, with its resolver's words)",
		500, 500, `listen: "example.invalid:0": the host must be empty (every address), an IP address or localhost`},
	{diffStep{method: "POST", path: "/proxies", body: `{"name":"d5","upstream":"x:1","enabled":false,"pad":"` + strings.Repeat("x", 1<<20) + `"}`},
		"request bodies are bounded at 1 MiB",
		201, 400, `bad request body: http: request body too large`},
}

// The same script, sent to the real toxiproxy-server v2.12.0 and to pier,
// gets the same answers: status, Content-Type, the nosniff and request-id
// headers, and the body byte for byte, after the normalizations above.
func TestToxiproxyServerAndPierAnswerAlike(t *testing.T) {
	realURL := startToxiproxyServer(t)
	e := newEnv(t)
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	_, busyPort, _ := net.SplitHostPort(busy.Addr().String())
	_, echoPort, _ := net.SplitHostPort(e.echo)
	targets := []*diffTarget{{name: "toxiproxy-server", url: realURL}, {name: "pier", url: e.url}}
	for _, d := range targets {
		d.client = &http.Client{Timeout: 10 * time.Second}
		defer d.client.CloseIdleConnections()
		d.ports = map[string]string{}
		d.fixed = map[string]bool{busyPort: true, echoPort: true}
	}
	for i, s := range diffScript {
		var answers [2]diffAnswer
		var bodies [2]string
		for j, d := range targets {
			bodies[j] = d.body(t, s, e.echo, busy.Addr().String())
			answers[j], _ = d.do(t, s.method, s.path, bodies[j], s.ua)
		}
		if answers[0] != answers[1] {
			t.Errorf("step %d: %s %s %s (UA %q):\n\ttoxiproxy-server: %v\n\tpier:             %v",
				i, s.method, s.path, bodies[1], s.ua, answers[0], answers[1])
		}
	}
	for i, c := range diffDeliberate {
		s := c.step
		real, _ := targets[0].do(t, s.method, s.path, targets[0].body(t, s, e.echo, busy.Addr().String()), s.ua)
		pier, _ := targets[1].do(t, s.method, s.path, targets[1].body(t, s, e.echo, busy.Addr().String()), s.ua)
		var pierError struct{ Error string }
		if c.pierError != "" {
			json.Unmarshal([]byte(pier.Body), &pierError)
		}
		if real.Status != c.realStatus || pier.Status != c.pierStatus || pierError.Error != c.pierError ||
			c.realStatus == c.pierStatus && c.pierError == "" && real != pier {
			t.Errorf("deliberate difference %d (%s): %s %s:\n\ttoxiproxy-server: %v\n\tpier:             %v\n\twant %d from toxiproxy-server, %d %q from pier",
				i, c.why, s.method, s.path, real, pier, c.realStatus, c.pierStatus, c.pierError)
		}
	}
}
