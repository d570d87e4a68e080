package app

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pierproxy/pier/internal/testutil"
)

// scrape reads /metrics into a map from a series, as the exposition
// writes it (name{labels}), to its value.
func (p *adminPier) scrape() map[string]float64 {
	p.t.Helper()
	status, body := p.do("GET", "/metrics", "")
	if status != 200 {
		p.t.Fatalf("/metrics: %d %s", status, body)
	}
	return parseExposition(body)
}

// parseExposition maps each series of a text exposition, as written
// (name{labels}), to its value; a line it cannot read maps to NaN.
func parseExposition(body []byte) map[string]float64 {
	out := make(map[string]float64)
	sc := bufio.NewScanner(bytes.NewReader(body))
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			v = math.NaN()
		}
		out[line[:i]] = v
	}
	return out
}

// The counters a scrape shows are exactly what a load did: sessions,
// bytes each way, ends by reason and refusals by why.
func TestMetricsMatchLoadExactly(t *testing.T) {
	up := testutil.NewUpstream(t, testutil.Echo)
	hold := testutil.NewUpstream(t, testutil.Hold)
	p := startAdmin(t, routeDoc(`listen: "127.0.0.1:0"`,
		oneRoute("load", up.Addr(), ""),
		oneRoute("lim", hold.Addr(), "    max_connections: 1\n"),
		fmt.Sprintf("  - name: drained\n    listen: [\"127.0.0.1:0\"]\n    upstreams: [{address: %q, drain: true}]\n", up.Addr()),
	), Options{})

	const workers, perWorker, size = 4, 25, 16 << 10
	load := p.d.Addrs("load")[0].String()
	payload := bytes.Repeat([]byte("0123456789abcdef"), size/16)

	// Scrapes run all through the load: a counter never goes back, and a
	// scrape never sees more than the load will have done.
	stopScraping := make(chan struct{})
	scraped := make(chan error, 1)
	go func() {
		scraped <- scrapeWhile(p, stopScraping, float64(workers*perWorker), float64(workers*perWorker*size))
	}()
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for range workers {
		wg.Go(func() {
			for range perWorker {
				if err := echoSession(load, payload); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(stopScraping)
	if err := <-scraped; err != nil {
		t.Error(err)
	}
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}

	// One session holds lim's only place; the next clients are refused.
	const refusedByLimit, noUpstream = 5, 3
	held, err := net.Dial("tcp", p.d.Addrs("lim")[0].String())
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	waitMetric(t, p, `pier_route_sessions_live{route="lim"}`, 1)
	for range refusedByLimit {
		closedAtOnce(t, p.d.Addrs("lim")[0].String())
	}
	for range noUpstream {
		closedAtOnce(t, p.d.Addrs("drained")[0].String())
	}
	waitMetric(t, p, `pier_route_sessions_live{route="load"}`, 0)
	waitMetric(t, p, `pier_route_sessions_live{route="drained"}`, 0)

	m := p.scrape()
	sessions := float64(workers * perWorker)
	want := map[string]float64{
		`pier_route_sessions_started_total{route="load"}`:                       sessions,
		`pier_route_sessions_ended_total{reason="done",route="load"}`:           sessions,
		`pier_route_bytes_total{direction="to_upstream",route="load"}`:          sessions * size,
		`pier_route_bytes_total{direction="to_client",route="load"}`:            sessions * size,
		`pier_route_session_duration_seconds_count{route="load"}`:               sessions,
		`pier_route_connect_duration_seconds_count{route="load"}`:               sessions,
		`pier_route_clients_refused_total{route="lim",why="limit"}`:             refusedByLimit,
		`pier_route_sessions_started_total{route="lim"}`:                        1,
		`pier_route_sessions{route="lim",state="open"}`:                         1,
		`pier_route_clients_refused_total{route="drained",why="no_upstream"}`:   noUpstream,
		`pier_route_sessions_ended_total{reason="no_upstream",route="drained"}`: noUpstream,
		`pier_route_sessions_started_total{route="drained"}`:                    noUpstream,
		`pier_route_clients_refused_total{route="load",why="limit"}`:            0,
		`pier_route_connect_retries_total{route="load"}`:                        0,
		`pier_config_reloads_total{result="ok"}`:                                1,
	}
	for series, v := range want {
		got, ok := m[series]
		if !ok {
			t.Errorf("%s: not in the scrape", series)
			continue
		}
		if got != v {
			t.Errorf("%s = %v, want %v", series, got, v)
		}
	}
	member := fmt.Sprintf(`pier_member_draining{addr=%q,member=%q,route="drained"}`, up.Addr(), up.Addr())
	if m[member] != 1 {
		t.Errorf("%s = %v, want 1", member, m[member])
	}
}

// scrapeWhile scrapes /metrics until stop, and checks that the load
// route's counters only grow and stay within what the load does in all.
func scrapeWhile(p *adminPier, stop <-chan struct{}, sessions, bytesEachWay float64) error {
	series := []struct {
		name string
		max  float64
	}{
		{`pier_route_sessions_started_total{route="load"}`, sessions},
		{`pier_route_sessions_ended_total{reason="done",route="load"}`, sessions},
		{`pier_route_bytes_total{direction="to_upstream",route="load"}`, bytesEachWay},
		{`pier_route_bytes_total{direction="to_client",route="load"}`, bytesEachWay},
	}
	last := make([]float64, len(series))
	client := &http.Client{Timeout: wait}
	for n := 0; ; n++ {
		if n > 0 {
			select {
			case <-stop:
				return nil
			default:
			}
		}
		resp, err := client.Get(p.base + "/metrics")
		if err != nil {
			return err
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return err
		}
		m := parseExposition(body)
		for i, s := range series {
			v, ok := m[s.name]
			if !ok || math.IsNaN(v) || v < last[i] || v > s.max {
				return fmt.Errorf("scrape %d: %s = %v after %v (at most %v)", n, s.name, v, last[i], s.max)
			}
			last[i] = v
		}
	}
}

// echoSession sends payload through addr, half-closes, and reads it all
// back: a session that ends "done" with len(payload) bytes each way.
func echoSession(addr string, payload []byte) error {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(wait))
	done := make(chan error, 1)
	go func() {
		_, err := c.Write(payload)
		if err == nil {
			err = c.(*net.TCPConn).CloseWrite()
		}
		done <- err
	}()
	got, err := io.ReadAll(c)
	if werr := <-done; werr != nil {
		return werr
	}
	if err != nil {
		return err
	}
	if !bytes.Equal(got, payload) {
		return fmt.Errorf("echo: %d bytes back of %d", len(got), len(payload))
	}
	return nil
}

// closedAtOnce connects to addr and expects pier to close the client
// without a byte.
func closedAtOnce(t *testing.T, addr string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(wait))
	if n, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatalf("read %d bytes from a client pier should have refused", n)
	}
}

// waitMetric polls /metrics until series has value v.
func waitMetric(t *testing.T, p *adminPier, series string, v float64) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		got, ok := p.scrape()[series]
		if ok && got == v {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s = %v (present %v), want %v", series, got, ok, v)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
