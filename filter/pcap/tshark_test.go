package pcap

import (
	"bytes"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/pierproxy/pier/filter"
	"github.com/pierproxy/pier/internal/testutil"
)

// TestTsharkReadsEveryStream checks the capture with Wireshark's own
// reading of it: no warnings, every packet's checksums good, no TCP
// analysis flags (lost or unseen segments, retransmissions, full
// windows...), and each stream, followed, holds every byte each way.
func TestTsharkReadsEveryStream(t *testing.T) {
	testutil.NeedTshark(t)
	path := filepath.Join(t.TempDir(), "route.pcapng")
	f := newFilter(t, map[string]string{"file": path})
	sessions := []struct {
		client, upstream string
		ends             []int
		err              error
	}{
		{"192.0.2.1:40000", "198.51.100.1:5432", []int{client, upstream}, nil},
		{"192.0.2.1:40001", "198.51.100.1:5432", []int{upstream, client}, nil},
		{"[2001:db8::1]:40002", "[2001:db8::2]:5432", []int{client, upstream}, nil},
		{"192.0.2.1:40003", "[2001:db8::2]:5432", nil, errors.New("upstream reset")},
		{"192.0.2.1:40004", "198.51.100.1:5432", []int{client}, filter.ErrClose},
		{"192.0.2.1:40005", "198.51.100.1:5432", []int{upstream}, filter.ErrReset},
	}
	var wg sync.WaitGroup
	for i, s := range sessions {
		wg.Go(func() {
			up, down := sessionData(i)
			c := converse(t, f, session(uint64(i), s.client, s.upstream), uint64(i))
			c.send(up, down)
			c.end(s.ends...)
			c.close(s.err)
		})
	}
	wg.Wait()
	pkts, cs := conns(t, path)

	if _, warnings := testutil.Tshark(t, path); warnings != "" {
		t.Errorf("tshark warns:\n%s", warnings)
	}
	if out, _ := testutil.Tshark(t, path, "-Y", "tcp.analysis.flags"); out != "" {
		t.Errorf("tshark flags packets:\n%.2000s", out)
	}
	out, _ := testutil.Tshark(t, path, "-o", "tcp.check_checksum:TRUE", "-o", "ip.check_checksum:TRUE",
		"-Y", "tcp.checksum.status == 1 && (ipv6 || ip.checksum.status == 1)")
	if n := strings.Count(out, "\n"); n != len(pkts) {
		t.Errorf("tshark finds %d packets with good checksums, want all %d", n, len(pkts))
	}

	followed := testutil.TsharkFollow(t, path, len(sessions))
	if len(followed) != len(sessions) || len(cs) != len(sessions) {
		t.Fatalf("tshark follows %d streams, Reassemble finds %d; want %d", len(followed), len(cs), len(sessions))
	}
	for _, c := range cs {
		i := int(c.Client.Port()) - 40000
		up, down := sessionData(i)
		got, ok := followed[c.Client.String()]
		if !ok {
			t.Errorf("tshark did not follow %v", c.Client)
			continue
		}
		if !bytes.Equal(got[0], up) || !bytes.Equal(got[1], down) {
			t.Errorf("tshark follows %v: %d and %d bytes, want %d and %d, unchanged", c.Client, len(got[0]), len(got[1]), len(up), len(down))
		}
	}
}
