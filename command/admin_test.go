package command

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	toxiclient "github.com/Shopify/toxiproxy/v2/client"

	"github.com/pierproxy/pier/internal/testutil"
)

// logged waits for a record with msg and returns its addr field.
func (p *pier) logged(t *testing.T, msg string) string {
	t.Helper()
	var addr string
	p.waitLog(t, func(ls []map[string]any) bool {
		for _, l := range ls {
			if l["msg"] == msg {
				addr, _ = l["addr"].(string)
				return true
			}
		}
		return false
	})
	return addr
}

func httpDo(t *testing.T, method, url, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// 'pier forward -admin' serves the API and the metrics, and the log level
// set through the API changes what the running process logs.
func TestForwardAdminFlag(t *testing.T) {
	up := testutil.NewUpstream(t, named("a"))
	p := startPier(t, nil, 1, "forward", "127.0.0.1:0", up.Addr(), "-admin", "127.0.0.1:0")
	admin := "http://" + p.logged(t, "admin server listening")
	if _, err := exchange(p.addrs("forward")[0], "x"); err != nil {
		t.Fatal(err)
	}
	p.waitLog(t, func(ls []map[string]any) bool { return count(ls, "session") >= 1 })
	status, body := httpDo(t, "GET", admin+"/metrics", "")
	if status != 200 || !strings.Contains(body, `pier_route_sessions_started_total{route="forward"} 1`) {
		t.Fatalf("/metrics: %d\n%s", status, body)
	}
	// At level warn a session's record (info) is not logged; back at
	// info it is. The log is written in order, so once the third
	// session's record is there, the second's would be before it.
	if status, body := httpDo(t, "PUT", admin+"/api/v1/log_level", `{"level":"warn"}`); status != 200 {
		t.Fatalf("PUT log_level: %d %s", status, body)
	}
	if _, err := exchange(p.addrs("forward")[0], "y"); err != nil {
		t.Fatal(err)
	}
	// The session ends on its loop a moment after the client saw its end:
	// wait for the count, or its record could come after the level is back.
	deadline := time.Now().Add(wait)
	for {
		_, body := httpDo(t, "GET", admin+"/metrics", "")
		if strings.Contains(body, `pier_route_sessions_ended_total{reason="done",route="forward"} 2`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the second session never ended")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if status, body := httpDo(t, "PUT", admin+"/api/v1/log_level", `{"level":"info"}`); status != 200 {
		t.Fatalf("PUT log_level: %d %s", status, body)
	}
	if _, err := exchange(p.addrs("forward")[0], "zz"); err != nil {
		t.Fatal(err)
	}
	ls := p.waitLog(t, func(ls []map[string]any) bool {
		for _, l := range ls {
			if l["msg"] == "session" && l["bytes_to_upstream"] == 2.0 {
				return true
			}
		}
		return false
	})
	if n := count(ls, "session"); n != 2 {
		t.Errorf("%d session records, want 2: the one at level warn was logged", n)
	}
	p.signal(t, syscall.SIGTERM)
	if code := p.wait(t); code != 0 {
		t.Errorf("exit code %d", code)
	}
}

// 'pier toxiproxy' is driven by Toxiproxy's own client: proxies from
// -config exist at start, a proxy created through the client carries
// bytes, and a toxic added through it acts on them.
func TestToxiproxyCommand(t *testing.T) {
	up := testutil.NewUpstream(t, testutil.Echo)
	populate := filepath.Join(t.TempDir(), "proxies.json")
	proxies := []map[string]any{{"name": "from_file", "listen": "127.0.0.1:0", "upstream": up.Addr()}}
	b, _ := json.Marshal(proxies)
	if err := os.WriteFile(populate, b, 0o644); err != nil {
		t.Fatal(err)
	}
	p := startPier(t, nil, 1, "toxiproxy", "-host", "127.0.0.1", "-port", "0", "-config", populate)
	api := p.logged(t, "toxiproxy API listening")
	c := toxiclient.NewClient(api)
	got, err := c.Proxy("from_file")
	if err != nil {
		t.Fatalf("the proxy from -config: %v", err)
	}
	ans, err := exchange(got.Listen, "hello")
	if err != nil || ans != "hello" {
		t.Fatalf("through the proxy from -config: %q, %v", ans, err)
	}

	px, err := c.CreateProxy("made", "127.0.0.1:0", up.Addr())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := px.AddToxic("cut", "limit_data", "downstream", 1, toxiclient.Attributes{"bytes": 3}); err != nil {
		t.Fatal(err)
	}
	ans, err = exchange(px.Listen, "hello")
	if ans != "hel" {
		t.Fatalf("through limit_data 3: %q, %v", ans, err)
	}
	p.signal(t, syscall.SIGTERM)
	if code := p.wait(t); code != 0 {
		t.Errorf("exit code %d", code)
	}
}

// 'pier check -preview' asks a running pier what loading a file would
// change, and prints the plan; a file the running pier refuses fails.
func TestCheckPreview(t *testing.T) {
	up := testutil.NewUpstream(t, named("a"))
	other := testutil.NewUpstream(t, named("b"))
	dir := t.TempDir()
	file := filepath.Join(dir, "pier.yaml")
	route := func(upstreams string) string {
		return "admin: {listen: \"127.0.0.1:0\"}\nroutes:\n  - name: db\n    listen: [\"127.0.0.1:0\"]\n    upstreams: [" + upstreams + "]\n"
	}
	writeFile(t, file, route(fmt.Sprintf("{address: %q}", up.Addr())))
	p := startPier(t, nil, 1, "run", file)
	admin := "http://" + p.logged(t, "admin server listening")

	next := filepath.Join(dir, "next.yaml")
	writeFile(t, next, route(fmt.Sprintf("{address: %q}, {address: %q}", up.Addr(), other.Addr())))
	code, stdout, stderr := runCLI("check", "-preview", admin, next)
	if code != 0 {
		t.Fatalf("exit %d\n%s%s", code, stdout, stderr)
	}
	for _, want := range []string{"1 change in", "member add db " + other.Addr()} {
		if !strings.Contains(stdout, want) {
			t.Errorf("the preview does not say %q:\n%s", want, stdout)
		}
	}

	writeFile(t, next, route(fmt.Sprintf("{address: %q}", up.Addr())))
	code, stdout, _ = runCLI("check", "-preview", admin, next)
	if code != 0 || !strings.Contains(stdout, "would change nothing") {
		t.Errorf("an unchanged file: exit %d\n%s", code, stdout)
	}
	p.signal(t, syscall.SIGTERM)
	p.wait(t)
}

// pier forward's edge flags: a denied client is refused at once, and a
// PROXY header from an accepted peer replaces the client address, which
// the upstream then receives in pier's own PROXY header.
func TestForwardEdgeFlags(t *testing.T) {
	got := make(chan string, 1)
	up := testutil.NewUpstream(t, func(c *net.TCPConn) {
		line, _ := bufio.NewReader(c).ReadString('\n')
		got <- line
	})
	p := startPier(t, nil, 1, "forward", "127.0.0.1:0", up.Addr(),
		"-accept-proxy", "127.0.0.1/32", "-send-proxy", "v1", "-deny", "192.0.2.66/32")
	addr := p.addrs("forward")[0]
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("PROXY TCP4 192.0.2.7 192.0.2.1 40000 5432\r\n")); err != nil {
		t.Fatal(err)
	}
	select {
	case line := <-got:
		if !strings.HasPrefix(line, "PROXY TCP4 192.0.2.7 ") {
			t.Fatalf("the upstream's first line: %q", line)
		}
	case <-time.After(wait):
		t.Fatal("the upstream got no PROXY header")
	}
	// A client the header says is denied is refused.
	d, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	d.Write([]byte("PROXY TCP4 192.0.2.66 192.0.2.1 40000 5432\r\n"))
	d.SetReadDeadline(time.Now().Add(wait))
	if n, err := d.Read(make([]byte, 1)); err == nil {
		t.Fatalf("a denied client read %d bytes", n)
	}
	p.waitLog(t, func(ls []map[string]any) bool {
		for _, l := range ls {
			if l["msg"] == "session" && l["reason"] == "denied" {
				return true
			}
		}
		return false
	})
	c.Close()
	d.Close()
	p.signal(t, syscall.SIGTERM)
	p.wait(t)
}
