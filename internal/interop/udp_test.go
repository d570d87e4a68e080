package interop

import (
	"bytes"
	"context"
	"encoding/base64"
	be "encoding/binary"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// freeUDPAndTCPPort returns a port on 127.0.0.1 that was free a moment
// ago for both TCP and UDP: dnsmasq and iperf3 listen on both, and a
// pier udp route shares its address with a tcp route.
func freeUDPAndTCPPort(t *testing.T) int {
	t.Helper()
	for range 20 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		pc, err := net.ListenPacket("udp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		ln.Close()
		if err == nil {
			pc.Close()
			return port
		}
	}
	t.Fatal("no port free for both TCP and UDP in 20 tries")
	return 0
}

// debianBinary is binary, for a program whose Debian package has
// another name than it: a missing required one names the package.
func debianBinary(t *testing.T, name, require, pkg string) string {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil && !isExecutable(filepath.Join("/usr/sbin", name)) && os.Getenv(require) == "1" {
		t.Fatalf("%s not found and %s=1: install it (apt-get install %s)", name, require, pkg)
	}
	return binary(t, name, require)
}

// dnsQuery is a DNS query for name's A record, with recursion desired
// and no EDNS: so an answer of one A record ends with its 4 address bytes.
func dnsQuery(id uint16, name string) []byte {
	q := be.BigEndian.AppendUint16(nil, id)
	q = append(q, 0x01, 0x00)             // RD
	q = append(q, 0, 1, 0, 0, 0, 0, 0, 0) // one question, nothing else
	for _, label := range strings.Split(name, ".") {
		q = append(q, byte(len(label)))
		q = append(q, label...)
	}
	return append(q, 0, 0, 1, 0, 1) // root, type A, class IN
}

// dnsAnswer is the A record's address in reply, a reply to a dnsQuery
// with id; "" if reply is not one answer of one A record to it.
func dnsAnswer(reply []byte, id uint16) string {
	if len(reply) < 12+4 || be.BigEndian.Uint16(reply) != id || reply[2]&0x80 == 0 ||
		be.BigEndian.Uint16(reply[6:]) != 1 {
		return ""
	}
	return net.IP(reply[len(reply)-4:]).String()
}

// queryUDP sends a dnsQuery for name to addr and returns the answer's
// address, waiting at most wait for it.
func queryUDP(addr, name string, id uint16, wait time.Duration) (string, error) {
	c, err := net.Dial("udp", addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(wait))
	if _, err := c.Write(dnsQuery(id, name)); err != nil {
		return "", err
	}
	buf := make([]byte, 512) // a reply without EDNS fits 512 bytes
	n, err := c.Read(buf)
	if err != nil {
		return "", err
	}
	if a := dnsAnswer(buf[:n], id); a != "" {
		return a, nil
	}
	return "", fmt.Errorf("reply %x is not one A record", buf[:n])
}

// startDnsmasq runs dnsmasq in the foreground on 127.0.0.1:port,
// answering every name under example.test with ip and nothing else (no
// upstream, no hosts file, no config file, no pid file: nothing root
// owns), and waits, polling with a query, until it answers.
func startDnsmasq(t *testing.T, bin string, port int, ip string) *peer {
	t.Helper()
	// dnsmasq run by root drops to its compiled-in user unless told
	// otherwise; stay who we are (as another user it is a no-op).
	u, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	g, err := user.LookupGroupId(u.Gid)
	if err != nil {
		t.Fatal(err)
	}
	p := start(t, "dnsmasq "+ip, bin, "--keep-in-foreground", "--conf-file=/dev/null", "--pid-file=",
		"--user="+u.Username, "--group="+g.Name,
		fmt.Sprintf("--port=%d", port), "--listen-address=127.0.0.1", "--bind-interfaces",
		"--no-resolv", "--no-hosts", "--address=/example.test/"+ip,
		"--log-queries", "--log-facility=-")
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	deadline := time.Now().Add(waitBound)
	for {
		got, err := queryUDP(addr, "ready.example.test", 1, 100*time.Millisecond)
		if err == nil && got == ip {
			return p
		}
		select {
		case <-p.exited:
			t.Fatalf("dnsmasq exited before answering on %s: %v\n%s", addr, p.err, p.out)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("dnsmasq not answering on %s within %v: %q, %v\n%s", addr, waitBound, got, err, p.out)
		}
		time.Sleep(20 * time.Millisecond) // the poll's period
	}
}

// kill stops the peer by its pid with SIGTERM and waits, bounded, for it
// to exit.
func (p *peer) kill(t *testing.T) {
	t.Helper()
	p.stop(t)
	select {
	case <-p.exited:
	default:
		t.Fatalf("%s still running", p.name)
	}
}

// digResult is one dig run: the address it printed (+short) and how many
// of its tries timed out before it.
type digResult struct {
	answer   string
	timeouts int
	out      string
}

// dig asks the DNS server at addr for name's A record, with up to three
// tries a second apart.
func dig(t *testing.T, bin, addr, name string) digResult {
	t.Helper()
	host, port, _ := net.SplitHostPort(addr)
	ctx, cancel := context.WithTimeout(context.Background(), waitBound)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "@"+host, "-p", port, name, "A",
		"+short", "+time=1", "+tries=3").CombinedOutput()
	r := digResult{out: string(out), timeouts: strings.Count(string(out), "timed out")}
	if err != nil {
		t.Fatalf("dig @%s %s: %v\n%s", addr, name, err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	r.answer = lines[len(lines)-1]
	if net.ParseIP(r.answer) == nil {
		t.Fatalf("dig @%s %s printed no address:\n%s", addr, name, out)
	}
	return r
}

// routeSessions is pier's session lines of route.
func (p *peer) routeSessions(route string) []string {
	var lines []string
	for _, l := range p.sessionLines() {
		if strings.Contains(l, " route="+route+" ") {
			lines = append(lines, l)
		}
	}
	return lines
}

// dig through pier to a pool of two dnsmasq, on a udp route with
// responses: 1 and a health check that sends a DNS query and wants an
// answer: both members answer while both live; with one killed (by its
// pid), every query is still answered, by the other, and pier logs the
// killed one down; every flow that was answered was one query and one
// answer (reason=responses, one datagram each way).
func TestUDPDigThroughPierToDnsmasqPool(t *testing.T) {
	digBin := debianBinary(t, "dig", "PIER_REQUIRE_DIG", "bind9-dnsutils")
	dnsmasqBin := debianBinary(t, "dnsmasq", "PIER_REQUIRE_DNSMASQ", "dnsmasq-base")
	const ipA, ipB = "10.1.2.3", "10.1.2.4"
	portA, portB := freeUDPAndTCPPort(t), freeUDPAndTCPPort(t)
	a := startDnsmasq(t, dnsmasqBin, portA, ipA)
	b := startDnsmasq(t, dnsmasqBin, portB, ipB)
	addrA := fmt.Sprintf("127.0.0.1:%d", portA)
	addrB := fmt.Sprintf("127.0.0.1:%d", portB)

	// The check's query has the ID "HC", so its regexp can anchor on
	// bytes it knows: the ID, one question and one answer, and an A
	// record of either member's address at the end.
	check := base64.StdEncoding.EncodeToString(dnsQuery('H'<<8|'C', "health.example.test"))
	const expect = `(?s)^HC..\x00\x01\x00\x01.*\x0a\x01\x02[\x03\x04]$`
	// The regexp's own test: it takes a reply as dnsmasq writes it
	// (flags 0x8580, the question, a compressed name, TTL 0), not the
	// query.
	query := dnsQuery('H'<<8|'C', "health.example.test")
	reply := append(bytes.Clone(query), 0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 0, 0, 4, 10, 1, 2, 4)
	reply[2], reply[3], reply[7] = 0x85, 0x80, 1
	if re := regexp.MustCompile(expect); !re.Match(reply) || re.Match(query) || dnsAnswer(reply, 'H'<<8|'C') != ipB {
		t.Fatalf("the check's regexp or dnsAnswer misjudges %x", reply)
	}
	p := runPierConfig(t, fmt.Sprintf(`
routes:
  - name: dns
    protocol: udp
    listen: ["127.0.0.1:0"]
    responses: 1
    upstreams: [{address: %q}, {address: %q}]
    health_check: {interval: 300ms, timeout: 200ms, rise: 1, fall: 1, send: !!binary %s, expect_regexp: '%s'}
    passive_check: {failures: 1}
`, addrA, addrB, check, expect), "dns")
	addr := p.listenAddr(t, "dns")

	// The health check passes on both: each dnsmasq answered it twice,
	// and with fall: 1 one failure would have logged a member down.
	for _, m := range []*peer{a, b} {
		deadline := time.Now().Add(waitBound)
		for strings.Count(m.out.String(), "query[A] health.example.test") < 2 {
			if time.Now().After(deadline) {
				t.Fatalf("%s was not checked twice within %v:\n%s", m.name, waitBound, m.out)
			}
			time.Sleep(20 * time.Millisecond) // the poll's period
		}
	}

	answered := 0
	seen := map[string]int{}
	for i := range 4 {
		r := dig(t, digBin, addr, fmt.Sprintf("q%d.example.test", i))
		seen[r.answer]++
		answered++
		if r.timeouts > 0 {
			t.Errorf("with both members up, dig timed out %d times:\n%s", r.timeouts, r.out)
		}
	}
	if seen[ipA] == 0 || seen[ipB] == 0 || len(seen) != 2 {
		t.Errorf("round robin over both members answered %v; want both %s and %s", seen, ipA, ipB)
	}
	if strings.Contains(p.out.String(), "upstream member down") {
		t.Fatalf("a member was down with both dnsmasq up:\n%s", p.out)
	}

	// Queries at once after the kill, before the check's next round: the
	// one round robin sends to the dead member meets ICMP port
	// unreachable, which ends its flow and ejects the member (passive
	// check); dig hears nothing and retries a second later, on a new flow,
	// to the live member.
	b.kill(t)
	killed := time.Now()
	retried := 0
	for i := range 2 {
		r := dig(t, digBin, addr, fmt.Sprintf("after%d.example.test", i))
		answered++
		if r.answer != ipA {
			t.Errorf("after %s was killed, dig got %s; want %s:\n%s", addrB, r.answer, ipA, r.out)
		}
		if r.timeouts > 0 {
			retried++
			t.Logf("query %d after the kill: %d of dig's tries timed out (%v after the kill), then %s answered", i, r.timeouts, time.Since(killed).Round(time.Millisecond), r.answer)
		}
	}
	if retried > 1 {
		t.Errorf("%d queries after the kill needed dig's retry; at most the one sent to the dead member may", retried)
	}
	// The health check sees the port unreachable too, and marks the
	// member down; from then on no query meets it.
	down := p.waitOutput(t, "upstream member down", "addr="+addrB, "health checks failed", "port unreachable")
	t.Logf("pier: %s", down)
	for i := range 4 {
		r := dig(t, digBin, addr, fmt.Sprintf("later%d.example.test", i))
		answered++
		if r.answer != ipA || r.timeouts > 0 {
			t.Errorf("with %s marked down, dig got %s after %d timeouts; want %s at once:\n%s", addrB, r.answer, r.timeouts, ipA, r.out)
		}
	}
	t.Logf("pier's member-down lines:\n%s", strings.Join(linesWith(p.out.String(), "upstream member down"), "\n"))

	// Every answered query was its own flow: one datagram each way, ended
	// by its one response. A query that met the dead member ended its
	// flow with upstream_unreachable (or was still waiting when pier
	// marked the member down).
	deadline := time.Now().Add(waitBound)
	var done []string
	for {
		done = done[:0]
		for _, l := range p.routeSessions("dns") {
			if strings.Contains(l, "reason=responses") {
				done = append(done, l)
			}
		}
		if len(done) >= answered || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond) // the poll's period
	}
	if len(done) != answered {
		t.Errorf("%d flows ended with reason=responses; want one per answered query, %d:\n%s", len(done), answered, strings.Join(p.routeSessions("dns"), "\n"))
	}
	for _, l := range done {
		mustContain(t, "a DNS flow's line", l, "protocol=udp", "datagrams_to_upstream=1 ", "datagrams_to_client=1")
	}
	for _, l := range p.routeSessions("dns") {
		if !strings.Contains(l, "reason=responses") {
			t.Logf("pier: %s", l)
			mustContain(t, "an unanswered DNS flow's line", l, "upstream="+addrB, "datagrams_to_client=0")
		}
	}
}

// iperf3Sum is the part of 'iperf3 --json' a UDP test is judged by.
type iperf3Sum struct {
	Bytes       int64   `json:"bytes"`
	Packets     int64   `json:"packets"`
	LostPackets int64   `json:"lost_packets"`
	LostPercent float64 `json:"lost_percent"`
	BitsPerSec  float64 `json:"bits_per_second"`
}

type iperf3Result struct {
	Start struct {
		TestStart struct {
			BlkSize int `json:"blksize"`
		} `json:"test_start"`
	} `json:"start"`
	End struct {
		Sent     iperf3Sum `json:"sum_sent"`
		Received iperf3Sum `json:"sum_received"`
	} `json:"end"`
	Error string `json:"error"`
}

// iperf3 -u through pier: its TCP control connection takes a tcp route,
// its datagrams a udp route on the same address, both to the same
// iperf3 server. At 20 Mbit/s, with iperf3's own datagram size on
// loopback (blksize 32 KiB) and with 1400-byte datagrams, nothing is
// lost and every byte sent arrives; pier's flow line counts the same
// datagrams and bytes.
func TestUDPIperf3ThroughPier(t *testing.T) {
	bin := debianBinary(t, "iperf3", "PIER_REQUIRE_IPERF3", "iperf3")
	serverPort, pierPort := freeUDPAndTCPPort(t), freeUDPAndTCPPort(t)
	server := fmt.Sprintf("127.0.0.1:%d", serverPort)
	listen := fmt.Sprintf("127.0.0.1:%d", pierPort)
	// idle_timeout ends the data flow soon after the test, for its line.
	p := runPierConfig(t, fmt.Sprintf(`
routes:
  - name: perf-udp
    protocol: udp
    listen: [%[1]q]
    idle_timeout: 300ms
    upstreams: [{address: %[2]q}]
  - name: perf-tcp
    listen: [%[1]q]
    upstreams: [{address: %[2]q}]
`, listen, server), "perf-udp", "perf-tcp")

	for _, tc := range []struct {
		name string
		args []string
	}{
		{"iperf3's datagram size", nil},
		{"1400-byte datagrams", []string{"-l", "1400"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mark := len(p.routeSessions("perf-udp"))
			// -1: one test, then exit; --forceflush: its "listening" line
			// arrives while it waits.
			srv := start(t, "iperf3 -s", bin, "-s", "-1", "-B", "127.0.0.1", "-p", strconv.Itoa(serverPort), "--forceflush")
			srv.waitOutput(t, "Server listening on "+strconv.Itoa(serverPort))

			ctx, cancel := context.WithTimeout(context.Background(), waitBound)
			defer cancel()
			args := append([]string{"-c", "127.0.0.1", "-p", strconv.Itoa(pierPort), "-u", "-b", "20M", "-t", "2", "--json"}, tc.args...)
			out, err := exec.CommandContext(ctx, bin, args...).Output()
			var res iperf3Result
			if jerr := json.Unmarshal(out, &res); err != nil || jerr != nil || res.Error != "" {
				t.Fatalf("iperf3 %s: %v, %v, %s\n%s", strings.Join(args, " "), err, jerr, res.Error, out)
			}
			sent, got := res.End.Sent, res.End.Received
			t.Logf("blksize %d: sent %d datagrams, %d bytes; received %d bytes, lost %d (%.3f%%), %.1f Mbit/s",
				res.Start.TestStart.BlkSize, sent.Packets, sent.Bytes, got.Bytes, got.LostPackets, got.LostPercent, got.BitsPerSec/1e6)
			if got.LostPackets != 0 || got.Bytes != sent.Bytes || got.Packets != sent.Packets || sent.Packets == 0 {
				t.Errorf("iperf3 through pier at 20 Mbit/s: sent %d datagrams, %d bytes; received %d datagrams, %d bytes, %d lost",
					sent.Packets, sent.Bytes, got.Packets, got.Bytes, got.LostPackets)
			}
			select {
			case <-srv.exited:
			case <-time.After(waitBound):
				t.Fatalf("iperf3 -s -1 did not exit after its test:\n%s", srv.out)
			}

			// iperf3 opens its UDP stream with a 4-byte datagram, which the
			// server answers with 4 bytes: one datagram each way more than
			// the test's own.
			deadline := time.Now().Add(waitBound)
			for len(p.routeSessions("perf-udp")) <= mark {
				if time.Now().After(deadline) {
					t.Fatalf("no flow line for perf-udp within %v:\n%s", waitBound, p.out)
				}
				time.Sleep(20 * time.Millisecond) // the poll's period
			}
			flows := p.routeSessions("perf-udp")[mark:]
			if len(flows) != 1 {
				t.Fatalf("%d flows for one iperf3 stream:\n%s", len(flows), strings.Join(flows, "\n"))
			}
			mustContain(t, "the iperf3 flow's line", flows[0], "protocol=udp", "reason=idle_timeout", "upstream="+server,
				fmt.Sprintf("bytes_to_upstream=%d ", sent.Bytes+4), "bytes_to_client=4 ",
				fmt.Sprintf("datagrams_to_upstream=%d ", sent.Packets+1), "datagrams_to_client=1")
			if strings.Contains(flows[0], "datagrams_dropped") {
				t.Errorf("pier dropped datagrams:\n%s", flows[0])
			}
		})
	}
	ctl := p.routeSessions("perf-tcp")
	if len(ctl) != 2 {
		t.Fatalf("%d control sessions; want 2:\n%s", len(ctl), strings.Join(ctl, "\n"))
	}
	for _, l := range ctl {
		mustContain(t, "an iperf3 control session's line", l, "reason=done", "upstream="+server)
	}
}

// linesWith is the lines of text that hold part.
func linesWith(text, part string) []string {
	var lines []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, part) {
			lines = append(lines, l)
		}
	}
	return lines
}
