package interop

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/pierproxy/pier/internal/testutil"
)

// nginxStreamModule is the load_module line nginx needs for its stream
// module when it was built as a dynamic module (Debian's
// libnginx-mod-stream), or "" when stream is built in.
func nginxStreamModule(t *testing.T, bin string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitBound)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "-V").CombinedOutput()
	if err != nil {
		t.Fatalf("nginx -V: %v\n%s", err, out)
	}
	v := string(out)
	if !strings.Contains(v, "--with-stream=dynamic") {
		if !strings.Contains(v, "--with-stream") {
			t.Fatalf("nginx was built without the stream module:\n%s", v)
		}
		return ""
	}
	dir := "/usr/lib/nginx/modules"
	if m := regexp.MustCompile(`--modules-path=(\S+)`).FindStringSubmatch(v); m != nil {
		dir = m[1]
	}
	so := filepath.Join(dir, "ngx_stream_module.so")
	if _, err := os.Stat(so); err != nil {
		if os.Getenv("PIER_REQUIRE_NGINX") == "1" {
			t.Fatalf("nginx's stream module %s: %v (apt-get install libnginx-mod-stream)", so, err)
		}
		t.Skipf("nginx's stream module %s: %v", so, err)
	}
	return "load_module " + so + ";\n"
}

// startNginx checks and starts nginx with a stream block in the
// foreground (no daemon, no master: one process, stopped by its pid) and
// waits for it on port. It returns the peer and the directory its logs
// go to.
func startNginx(t *testing.T, stream string, port int) (*peer, string) {
	t.Helper()
	bin := binary(t, "nginx", "PIER_REQUIRE_NGINX")
	dir := t.TempDir()
	conf := writeFile(t, dir, "nginx.conf", nginxStreamModule(t, bin)+fmt.Sprintf(`
pid %s/nginx.pid;
error_log stderr notice;
events { worker_connections 64; }
stream {
%s
}
`, dir, strings.ReplaceAll(stream, "DIR", dir)))
	// -e: the error log before the configuration is read (else the
	// built-in /var/log/nginx/error.log); -p: relative paths in dir.
	args := []string{"-e", "stderr", "-p", dir, "-c", conf}
	checkConfig(t, bin, append(args, "-t", "-q")...)
	n := start(t, "nginx", bin, append(args, "-g", "daemon off; master_process off;")...)
	n.waitListening(t, fmt.Sprintf("127.0.0.1:%d", port))
	return n, dir
}

// nginx's stream module with proxy_protocol on its listen, behind pier
// sending v1 or v2: nginx answers with the address the header carried,
// which is the client's (read through pier), and logs it.
func TestNginxBehindPier(t *testing.T) {
	binary(t, "nginx", "PIER_REQUIRE_NGINX")
	for _, version := range []string{"v1", "v2"} {
		t.Run(version, func(t *testing.T) {
			port := freePort(t)
			_, dir := startNginx(t, fmt.Sprintf(`
	log_format pp '$proxy_protocol_addr:$proxy_protocol_port via $remote_addr';
	server {
		listen 127.0.0.1:%d proxy_protocol;
		access_log DIR/access.log pp;
		return "$proxy_protocol_addr:$proxy_protocol_port\n";
	}
`, port), port)
			p, logs := startPier(t, fmt.Sprintf(`
routes:
  - name: front
    listen: ["127.0.0.1:0"]
    send_proxy: %s
    upstreams: [{address: "127.0.0.1:%d"}]
`, version, port))

			c := dialFrom(t, pierAddr(t, p, "front"))
			client := c.LocalAddr().String()
			answer, err := bufio.NewReader(c).ReadString('\n')
			if err != nil || answer != client+"\n" {
				t.Fatalf("nginx answered %q, %v; want %q", answer, err, client)
			}
			c.Close()
			logs.WaitFor(t, waitBound, "session", "route=front", "client="+client)
			line := waitFor(t, func() string {
				b, _ := os.ReadFile(filepath.Join(dir, "access.log"))
				return string(b)
			}, client+" via 127.0.0.1")
			t.Logf("nginx's access log: %s", line)
		})
	}
}

// nginx's stream proxy with proxy_protocol on, in front of pier: pier
// (accepting v1 from 127.0.0.1 only, and requiring it) logs the client's
// address with nginx's as the peer, and relays.
func TestNginxSendsV1ToPier(t *testing.T) {
	binary(t, "nginx", "PIER_REQUIRE_NGINX")
	echo := testutil.NewUpstream(t, testutil.Echo)
	p, logs := startPier(t, fmt.Sprintf(`
routes:
  - name: behind
    listen: ["127.0.0.1:0"]
    proxy_protocol: {accept: v1, trusted: ["127.0.0.1/32"], required: true}
    upstreams: [{address: %q}]
`, echo.Addr()))
	port := freePort(t)
	startNginx(t, fmt.Sprintf(`
	server {
		listen 127.0.0.1:%d;
		proxy_pass %s;
		proxy_protocol on;
	}
`, port, pierAddr(t, p, "behind")), port)

	c := dialFrom(t, fmt.Sprintf("127.0.0.1:%d", port))
	roundTrip(t, c, "ping through nginx and pier")
	c.Close()
	line := logs.WaitFor(t, waitBound, "session", "route=behind", "client="+c.LocalAddr().String())
	for _, want := range []string{"proxy=v1", "peer=127.0.0.1:", "reason=done"} {
		if !strings.Contains(line, want) {
			t.Errorf("pier's line lacks %q:\n%s", want, line)
		}
	}
}
