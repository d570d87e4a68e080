package testutil

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// NeedTshark skips the test when tshark is not installed, or fails it
// when PIER_REQUIRE_TSHARK is set (.ci/run sets it, having installed
// tshark).
func NeedTshark(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath("tshark"); err != nil {
		if os.Getenv("PIER_REQUIRE_TSHARK") != "" {
			t.Fatal("tshark not installed, and PIER_REQUIRE_TSHARK is set (.ci/run sets it)")
		}
		t.Skip("tshark not installed")
	}
}

// Tshark runs tshark on the capture at path and returns its output and
// its warnings (stderr without the line it prints on every run as root).
func Tshark(t testing.TB, path string, args ...string) (stdout, warnings string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "tshark", append([]string{"-r", path}, args...)...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		t.Fatalf("tshark %s: %v\n%s", strings.Join(args, " "), err, errOut.String())
	}
	var ws []string
	for _, line := range strings.Split(errOut.String(), "\n") {
		if line != "" && !strings.HasPrefix(line, "Running as user") {
			ws = append(ws, line)
		}
	}
	return out.String(), strings.Join(ws, "\n")
}

// TsharkFollow runs tshark's "follow,tcp,raw" on the first streams of
// the capture at path and returns, by each stream's first node (the
// client, as ip:port), the bytes each way: [0] from it, [1] to it.
func TsharkFollow(t testing.TB, path string, streams int) map[string][2][]byte {
	t.Helper()
	args := []string{"-q"}
	for i := range streams {
		args = append(args, "-z", fmt.Sprintf("follow,tcp,raw,%d", i))
	}
	out, _ := Tshark(t, path, args...)
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
	if err := sc.Err(); err != nil {
		t.Fatalf("reading tshark's output: %v", err)
	}
	return got
}
