package proxy_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pierproxy/pier/internal/proxy"
	"github.com/pierproxy/pier/internal/testutil"
)

// reserveChildEnv, set to an upstream address, makes the test binary the
// pier of TestDescriptorReserveDelaysClients.
const reserveChildEnv = "PIER_TEST_RESERVE_UPSTREAM"

// reserveLimit is the child's RLIMIT_NOFILE: room for a few dozen
// sessions, far fewer than the clients that arrive at once.
const reserveLimit = 128

// With few descriptors and many clients arriving at once, pier stops
// accepting while it could not give a client its upstream socket: the
// clients wait in the listen queue and are all served as sessions end,
// none closed with local_error. pier runs in a child process, so that
// its low RLIMIT_NOFILE is its own.
func TestDescriptorReserveDelaysClients(t *testing.T) {
	if up := os.Getenv(reserveChildEnv); up != "" {
		reserveChild(t, up)
		return
	}
	const clients = 200
	up := testutil.NewUpstream(t, testutil.Echo)
	cmd := exec.Command(os.Args[0], "-test.run=^TestDescriptorReserveDelaysClients$")
	cmd.Env = append(os.Environ(), reserveChildEnv+"="+up.Addr())
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		select {
		case <-exited:
		case <-time.After(wait):
			cmd.Process.Kill() // by pid: the child this test started
			<-exited
			t.Error("child pier did not exit")
		}
	}()
	defer stdin.Close()

	lines := make(chan string, 4*clients)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	var addr string
	for timeout := time.After(wait); addr == ""; {
		select {
		case line := <-lines:
			if a, ok := strings.CutPrefix(line, "listening on "); ok {
				addr = a
			}
		case <-timeout:
			t.Fatal("child pier never said where it listens")
		}
	}

	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for i := range clients {
		wg.Go(func() {
			c, err := net.DialTimeout("tcp", addr, wait)
			if err != nil {
				errs <- fmt.Errorf("client %d: %v", i, err)
				return
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(wait))
			msg := fmt.Sprintf("client %03d", i)
			if _, err := c.Write([]byte(msg)); err != nil {
				errs <- fmt.Errorf("client %d: write: %v", i, err)
				return
			}
			c.(*net.TCPConn).CloseWrite()
			got, err := io.ReadAll(c)
			if err != nil || string(got) != msg {
				errs <- fmt.Errorf("client %d: got %q, %v; want its echo", i, got, err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	stdin.Close() // the child shuts down and prints its records' reasons

	reasons := map[string]int{}
	var paused bool
	descriptorPauses := -1
	for line := range lines {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) != nil {
			continue
		}
		switch rec["msg"] {
		case "session":
			reasons[fmt.Sprint(rec["reason"])]++
		case "out of descriptors: new clients wait until sessions end":
			paused = true
		case "listener stats":
			descriptorPauses = int(rec["descriptor_pauses"].(float64))
		}
	}
	if reasons["done"] != clients || len(reasons) != 1 {
		t.Errorf("sessions ended %v; want all %d done, none local_error", reasons, clients)
	}
	if !paused {
		t.Error("pier never ran short of descriptors: the test proves nothing")
	}
	if descriptorPauses < 1 {
		t.Errorf("the listener counted %d descriptor pauses, want at least 1", descriptorPauses)
	}
}

// reserveChild is the child's part: pier with RLIMIT_NOFILE at
// reserveLimit, logging JSON to stdout, until stdin closes.
func reserveChild(t *testing.T, upstream string) {
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
		t.Fatal(err)
	}
	rl.Cur = reserveLimit
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewJSONHandler(os.Stdout, nil))
	srv, err := proxy.New(proxy.Options{Log: log})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Apply(table(t, newRoute(t, "r", upstream))); err != nil {
		t.Fatal(err)
	}
	fmt.Printf("listening on %s\n", srv.Addrs("r")[0])
	io.Copy(io.Discard, os.Stdin)
	for _, ls := range srv.ListenerStats() {
		log.Info("listener stats", "addr", ls.Addr.String(), "descriptor_pauses", ls.DescriptorPauses)
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
}
