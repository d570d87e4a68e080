package pcap

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pierproxy/pier/filter"
)

// tshark runs tshark on the capture at path and returns its output.
func tshark(t *testing.T, path string, args ...string) (stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "tshark", append([]string{"-r", path}, args...)...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		t.Fatalf("tshark %s: %v\n%s", strings.Join(args, " "), err, errOut.String())
	}
	// tshark says this on every run as root, whatever the file.
	var warnings []string
	for _, line := range strings.Split(errOut.String(), "\n") {
		if line != "" && !strings.HasPrefix(line, "Running as user") {
			warnings = append(warnings, line)
		}
	}
	return out.String(), strings.Join(warnings, "\n")
}

// followed is what tshark's "follow,tcp,raw" printed for each stream,
// by its first node (the client): the bytes each way.
func follow(t *testing.T, path string, streams int) map[string][2][]byte {
	var args []string
	for i := range streams {
		args = append(args, "-z", fmt.Sprintf("follow,tcp,raw,%d", i))
	}
	out, _ := tshark(t, path, append([]string{"-q"}, args...)...)
	got := map[string][2][]byte{}
	var node string
	var data [2][]byte
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "Node 0: "):
			node, data = strings.TrimPrefix(line, "Node 0: "), [2][]byte{}
		case strings.HasPrefix(line, "Node 1: "), strings.HasPrefix(line, "Follow: "), strings.HasPrefix(line, "Filter: "), line == "":
		case strings.HasPrefix(line, "====="):
			if node != "" {
				got[node] = data
			}
			node = ""
		case node != "":
			side := 0
			if strings.HasPrefix(line, "\t") {
				side = 1
			}
			b, err := hex.DecodeString(strings.TrimSpace(line))
			if err != nil {
				t.Fatalf("tshark follow printed %.40q: %v", line, err)
			}
			data[side] = append(data[side], b...)
		}
	}
	return got
}

// TestTsharkReadsEveryStream checks the capture with Wireshark's own
// reading of it: no warnings, every packet's checksums good, no TCP
// analysis flags (lost or unseen segments, retransmissions, full
// windows...), and each stream, followed, holds every byte each way.
func TestTsharkReadsEveryStream(t *testing.T) {
	if _, err := exec.LookPath("tshark"); err != nil {
		if os.Getenv("PIER_REQUIRE_TSHARK") != "" {
			t.Fatal("tshark not installed, and PIER_REQUIRE_TSHARK is set (.ci/run sets it)")
		}
		t.Skip("tshark not installed")
	}
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

	if _, warnings := tshark(t, path); warnings != "" {
		t.Errorf("tshark warns:\n%s", warnings)
	}
	if out, _ := tshark(t, path, "-Y", "tcp.analysis.flags"); out != "" {
		t.Errorf("tshark flags packets:\n%.2000s", out)
	}
	out, _ := tshark(t, path, "-o", "tcp.check_checksum:TRUE", "-o", "ip.check_checksum:TRUE",
		"-Y", "tcp.checksum.status == 1 && (ipv6 || ip.checksum.status == 1)")
	if n := strings.Count(out, "\n"); n != len(pkts) {
		t.Errorf("tshark finds %d packets with good checksums, want all %d", n, len(pkts))
	}

	followed := follow(t, path, len(sessions))
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
