package pcap

import (
	"bytes"
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pierproxy/pier/filter/filtertest"
	"github.com/pierproxy/pier/internal/testutil"
)

// udpFlows are the flows the datagram tests record: IPv4, IPv6, and a
// mixed one written as IPv6 with the IPv4 address mapped.
var udpFlows = []struct{ client, upstream string }{
	{"192.0.2.1:40000", "198.51.100.1:53"},
	{"[2001:db8::1]:40001", "[2001:db8::2]:53"},
	{"192.0.2.1:40002", "[2001:db8::2]:53"},
}

// udpData is datagram i of flow f, from the client (up) or to it: sizes
// from empty to the most a datagram carries (65507 bytes over IPv4,
// 65527 over IPv6), and odd lengths (the checksum's padding).
func udpData(f, i int, up bool) []byte {
	sizes := []int{0, 1, 33, 1400, 65507}
	n := sizes[i%len(sizes)]
	if f > 0 && n == 65507 {
		n = 65527
	}
	b := make([]byte, n)
	for j := range b {
		b[j] = byte(f*31 + i*7 + j)
	}
	if up && n > 0 {
		b[0] = 'U'
	}
	return b
}

// recordFlows records udpFlows through f, each datagram passing on
// unchanged, and closes them.
func recordFlows(t *testing.T, f *Filter) {
	t.Helper()
	for fi, fl := range udpFlows {
		s := session(uint64(fi+1), fl.client, fl.upstream)
		up, down := f.Datagrams(s)
		u, c := filtertest.NewDatagrams(up), filtertest.NewDatagrams(down)
		for i := range 5 {
			for _, x := range []struct {
				d  *filtertest.DatagramDriver
				up bool
			}{{u, true}, {c, false}} {
				x.d.Now = s.Start.Add(time.Duration(i) * time.Millisecond)
				p := udpData(fi, i, x.up)
				if err := x.d.Send(p); err != nil {
					t.Fatal(err)
				}
				if g := x.d.Out[len(x.d.Out)-1]; !bytes.Equal(g.Data, p) || !g.At.Equal(x.d.Now) {
					t.Fatalf("flow %d datagram %d not passed on unchanged, at once", fi, i)
				}
			}
		}
		u.Close(nil)
		c.Close(nil)
	}
	if !f.out.Sync(10 * time.Second) {
		t.Fatal("capture not written within 10s")
	}
}

// Each datagram is one UDP packet between the flow's client and upstream
// addresses, each way, at its time, with its bytes, right checksums
// (Parse checks them) and the flow's comment on its first packet.
func TestDatagramsRecordedAsUDPPackets(t *testing.T) {
	path := filepath.Join(t.TempDir(), "udp.pcapng")
	f := newFilter(t, map[string]string{"file": path})
	recordFlows(t, f)
	pkts, err := ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(pkts) != len(udpFlows)*10 {
		t.Fatalf("%d packets, want %d", len(pkts), len(udpFlows)*10)
	}
	for k, p := range pkts {
		fi, i, up := k/10, k%10/2, k%2 == 0
		c, u := endpoints(netip.MustParseAddrPort(udpFlows[fi].client), netip.MustParseAddrPort(udpFlows[fi].upstream))
		src, dst := c, u
		if !up {
			src, dst = u, c
		}
		if !p.UDP || p.Src != src || p.Dst != dst || !bytes.Equal(p.Payload, udpData(fi, i, up)) ||
			!p.Time.Equal(filtertest.Epoch.Add(time.Duration(i)*time.Millisecond)) {
			t.Errorf("packet %d: UDP %v %v > %v, %d bytes at %v; want flow %d datagram %d (%v > %v)",
				k, p.UDP, p.Src, p.Dst, len(p.Payload), p.Time, fi, i, src, dst)
		}
		want := ""
		if k%10 == 0 {
			want = fmt.Sprintf("pier session %d, route test", fi+1)
		}
		if p.Comment != want {
			t.Errorf("packet %d: comment %q, want %q", k, p.Comment, want)
		}
	}
	if conns, err := Reassemble(pkts); err != nil || len(conns) != 0 {
		t.Errorf("Reassemble: %d TCP connections, %v; want none", len(conns), err)
	}
}

// A bad UDP checksum, or a length that disagrees, is refused by Parse:
// the test above would see it.
func TestParseRefusesABadUDPChecksum(t *testing.T) {
	p := Packet{UDP: true, Src: netip.MustParseAddrPort("192.0.2.1:1"), Dst: netip.MustParseAddrPort("192.0.2.2:2"), Payload: []byte("abc")}
	b := appendEPB(bytes.Clone(header), &p, 1)
	if _, err := Parse(b); err != nil {
		t.Fatalf("a good packet: %v", err)
	}
	i := bytes.Index(b, []byte("abc"))
	b[i] ^= 1
	if _, err := Parse(b); err == nil || !strings.Contains(err.Error(), "bad UDP checksum") {
		t.Errorf("a flipped bit: %v", err)
	}
}

// With per_session, a flow's file is closed when both its directions
// are.
func TestDatagramsPerSessionFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "udp.pcapng")
	f := newFilter(t, map[string]string{"file": path, "per_session": "true"})
	recordFlows(t, f)
	for fi := range udpFlows {
		pkts, err := ReadFile(f.sessionPath(uint64(fi + 1)))
		if err != nil || len(pkts) != 10 {
			t.Errorf("flow %d: %d packets, %v", fi+1, len(pkts), err)
		}
	}
	f.mu.Lock()
	open := len(f.open)
	f.mu.Unlock()
	if open != 0 {
		t.Errorf("%d flow files still open after their flows closed", open)
	}
}

// tshark reads the capture without a warning, finds every UDP checksum
// (and IPv4 header checksum) good, and sees each flow's datagrams with
// their lengths.
func TestTsharkReadsDatagrams(t *testing.T) {
	testutil.NeedTshark(t)
	path := filepath.Join(t.TempDir(), "udp.pcapng")
	f := newFilter(t, map[string]string{"file": path})
	recordFlows(t, f)
	if _, warnings := testutil.Tshark(t, path); warnings != "" {
		t.Errorf("tshark warns:\n%s", warnings)
	}
	out, _ := testutil.Tshark(t, path, "-o", "udp.check_checksum:TRUE", "-o", "ip.check_checksum:TRUE",
		"-Y", "udp && udp.checksum.status == 1 && (ipv6 || ip.checksum.status == 1)",
		"-T", "fields", "-e", "udp.srcport", "-e", "udp.length")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != len(udpFlows)*10 {
		t.Fatalf("tshark finds %d UDP packets with good checksums, want %d:\n%.2000s", len(lines), len(udpFlows)*10, out)
	}
	for k, line := range lines {
		fi, i, up := k/10, k%10/2, k%2 == 0
		port := netip.MustParseAddrPort(udpFlows[fi].client).Port()
		if !up {
			port = 53
		}
		if want := fmt.Sprintf("%d\t%d", port, 8+len(udpData(fi, i, up))); line != want {
			t.Errorf("packet %d: tshark says port, length %q, want %q", k, line, want)
		}
	}
}
