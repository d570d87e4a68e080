package app

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/pierproxy/pier/internal/admin"
	"github.com/pierproxy/pier/internal/testutil"
)

// udpEcho answers every datagram with itself, from 127.0.0.1:0.
func udpEcho(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 65536)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo(buf[:n], from)
		}
	}()
	return pc.LocalAddr().String()
}

// exchange sends msg to addr from c and returns the reply.
func exchange(t *testing.T, c net.Conn, msg string) string {
	t.Helper()
	c.SetDeadline(time.Now().Add(wait))
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 65536)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("no reply to %q: %v", msg, err)
	}
	return string(buf[:n])
}

// A udp route beside a tcp route on the same address: datagrams are
// echoed through the UDP server, bytes through the TCP one; a reload
// that changes the udp route keeps its live flow (the same client's next
// datagram is answered on the same flow); a flow with responses: 1 ends
// after its reply; Stop ends the rest, and every flow's access log line
// says protocol=udp with its datagram counts.
func TestUDPRouteBesideTCP(t *testing.T) {
	echo := udpEcho(t)
	tcpUp := testutil.NewUpstream(t, testutil.Echo)
	logs, log := testutil.NewLogs()
	doc := `routes:
  - name: dns
    protocol: udp
    listen: ["127.0.0.1:0"]
    upstreams: [{address: %q}]
    idle_timeout: 1m
  - name: once
    protocol: udp
    listen: ["127.0.0.1:0"]
    upstreams: [{address: %q}]
    responses: 1
  - name: tcp
    listen: ["127.0.0.1:0"]
    upstreams: [{address: %q}]
`
	d, err := Start(parse(t, fmt.Sprintf(doc, echo, echo, tcpUp.Addr())), Options{Log: log})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Stop(context.Background())
	addrs := d.Addrs("dns")
	if len(addrs) != 1 {
		t.Fatalf("dns listens on %v", addrs)
	}
	c, err := net.Dial("udp", addrs[0].String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := exchange(t, c, "first"); got != "first" {
		t.Fatalf("echo %q", got)
	}
	// The flow is the route's live session, for the metrics and the API.
	if live := d.routes["dns"].limit.Live(); live != 1 {
		t.Errorf("the udp route has %d live sessions, want its one flow", live)
	}
	// A reload that changes the route (its idle timeout) keeps the flow:
	// the same listen address (as written) keeps its sockets.
	if err := d.Reload(parse(t, fmt.Sprintf(`routes:
  - name: dns
    protocol: udp
    listen: ["127.0.0.1:0"]
    upstreams: [{address: %q}]
    idle_timeout: 2m
  - name: once
    protocol: udp
    listen: ["127.0.0.1:0"]
    upstreams: [{address: %q}]
    responses: 1
  - name: tcp
    listen: ["127.0.0.1:0"]
    upstreams: [{address: %q}]
`, echo, echo, tcpUp.Addr()))); err != nil {
		t.Fatal(err)
	}
	if got := exchange(t, c, "second"); got != "second" {
		t.Fatalf("echo after reload %q", got)
	}
	once, err := net.Dial("udp", d.Addrs("once")[0].String())
	if err != nil {
		t.Fatal(err)
	}
	defer once.Close()
	if got := exchange(t, once, "query"); got != "query" {
		t.Fatalf("echo %q", got)
	}
	logs.WaitFor(t, wait, "session", "route=once", "protocol=udp", "reason=responses", "datagrams_to_upstream=1", "datagrams_to_client=1")
	// The metrics count every datagram delivered, each way.
	if u := (source{d}).Snapshot().UDP; u == nil || u.ToUpstream != 3 || u.ToClient != 3 {
		t.Errorf("the metrics' datagrams: %+v, want 3 each way", u)
	}
	if err := d.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	logs.WaitFor(t, wait, "session", "route=dns", "protocol=udp", "reason=shutdown", "datagrams_to_upstream=2", "datagrams_to_client=2", "bytes_to_upstream=11")
	logs.WaitFor(t, wait, "stopped", "udp_flows=2", "udp_datagrams_to_upstream=3")
}

// The admin API's filter edits meet the same rules as the file: a filter
// that does not work on datagrams is refused on a udp route, and a
// datagram-only one on a tcp route, naming the filter; nothing changes.
func TestUDPFilterEditsChecked(t *testing.T) {
	echo := udpEcho(t)
	tcpUp := testutil.NewUpstream(t, testutil.Echo)
	d, err := Start(parse(t, fmt.Sprintf(`routes:
  - name: dns
    protocol: udp
    listen: ["127.0.0.1:0"]
    upstreams: [{address: %q}]
  - name: web
    listen: ["127.0.0.1:0"]
    upstreams: [{address: %q}]
`, echo, tcpUp.Addr())), Options{Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Stop(context.Background())
	c := control{d}
	for _, tc := range []struct{ route, body, want string }{
		{"dns", "[{slicer: {size: 1}}]", `filter "slicer" does not work on datagrams`},
		{"web", "[{loss: {probability: 0.5}}]", `filter "loss" works only on udp routes`},
	} {
		_, err := c.EditFilters(tc.route, admin.FilterEdit{Op: "replace", Body: []byte(tc.body)})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s %s: %v, want %q", tc.route, tc.body, err, tc.want)
		}
	}
	if _, err := c.EditFilters("dns", admin.FilterEdit{Op: "replace", Body: []byte("[{loss: {probability: 0.5}}]")}); err != nil {
		t.Errorf("loss on the udp route: %v", err)
	}
}
