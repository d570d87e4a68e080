package pcap

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pierproxy/pier/filter"
	"github.com/pierproxy/pier/filter/filtertest"
)

// newFilter makes a pcap filter from options written as in a config.
func newFilter(t testing.TB, opts map[string]string) *Filter {
	t.Helper()
	vals := map[string]filter.Value{}
	for k, v := range opts {
		vals[k] = filter.Value{Text: v}
	}
	f, err := New(filter.NewOptions("pcap", vals, 0, 0))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.(*Filter).Close() })
	return f.(*Filter)
}

func session(id uint64, client, upstream string) *filter.Session {
	return &filter.Session{
		ID:       id,
		Route:    "test",
		Client:   netip.MustParseAddrPort(client),
		Upstream: netip.MustParseAddrPort(upstream),
		Start:    filtertest.Epoch,
	}
}

func random(rng *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

// A conversation drives both streams of one session, on one clock.
type conversation struct {
	t   testing.TB
	f   filter.Filter
	rng *rand.Rand
	d   [2]*filtertest.Driver // client's bytes, upstream's bytes
	now time.Time
}

func converse(t testing.TB, f filter.Filter, s *filter.Session, seed uint64) *conversation {
	up, down := f.Streams(s)
	if up == nil || down == nil {
		t.Fatal("Streams left a direction out")
	}
	c := &conversation{t: t, f: f, rng: rand.New(rand.NewPCG(seed, 1)), now: s.Start}
	for i, st := range []filter.Stream{up, down} {
		c.d[i] = filtertest.New(st)
		c.d[i].Session, c.d[i].Now = s, s.Start
	}
	c.d[1].Dir = filter.ToClient
	return c
}

// send feeds up and down to the two directions, interleaved in random
// chunks (now and then one larger than a segment), and checks every byte
// passed unchanged.
func (c *conversation) send(up, down []byte) {
	data := [2][]byte{up, down}
	for len(data[0])+len(data[1]) > 0 {
		side := c.rng.IntN(2)
		if len(data[side]) == 0 {
			side = 1 - side
		}
		n := 1 + c.rng.IntN(4096)
		if c.rng.IntN(20) == 0 {
			n = 1 + c.rng.IntN(150_000)
		}
		n = min(n, len(data[side]))
		c.call(side, func(d *filtertest.Driver) error { return d.Write(data[side][:n]) })
		data[side] = data[side][n:]
	}
	if !bytes.Equal(c.d[0].Out, up) || !bytes.Equal(c.d[1].Out, down) {
		c.t.Errorf("bytes changed on the way: %d/%d up, %d/%d down out", len(c.d[0].Out), len(up), len(c.d[1].Out), len(down))
	}
}

func (c *conversation) call(side int, fn func(*filtertest.Driver) error) {
	c.now = c.now.Add(time.Duration(c.rng.IntN(1000)) * time.Microsecond)
	d := c.d[side]
	d.Now = c.now
	if err := fn(d); err != nil {
		c.t.Errorf("Process: %v", err)
	}
}

// end finishes the given sides' streams, in random order.
func (c *conversation) end(sides ...int) {
	if len(sides) == 2 && c.rng.IntN(2) == 0 {
		sides[0], sides[1] = sides[1], sides[0]
	}
	for _, s := range sides {
		c.call(s, (*filtertest.Driver).CloseWrite)
		if !c.d[s].Finished {
			c.t.Errorf("side %d not finished at EOF", s)
		}
	}
}

// close tells both streams the session ended with err, and waits for
// what they recorded to be written.
func (c *conversation) close(err error) {
	c.d[0].Close(err)
	c.d[1].Close(err)
	if f, ok := c.f.(*Filter); ok {
		if !f.out.Sync(10 * time.Second) {
			c.t.Error("capture not written within 10s")
		}
	}
}

// conns reads back the capture at path and reassembles it.
func conns(t testing.TB, path string) ([]Packet, []*Conn) {
	t.Helper()
	pkts, err := ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := Reassemble(pkts)
	if err != nil {
		t.Fatal(err)
	}
	return pkts, cs
}

func checkConn(t testing.TB, c *Conn, up, down []byte) {
	t.Helper()
	if !bytes.Equal(c.ToServer, up) {
		t.Errorf("%v: %d bytes to the server recorded, want %d (first difference at %d)", c.Client, len(c.ToServer), len(up), diff(c.ToServer, up))
	}
	if !bytes.Equal(c.ToClient, down) {
		t.Errorf("%v: %d bytes to the client recorded, want %d (first difference at %d)", c.Client, len(c.ToClient), len(down), diff(c.ToClient, down))
	}
}

func diff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

func TestRecordsEveryByteBothWays(t *testing.T) {
	path := filepath.Join(t.TempDir(), "db.pcapng")
	f := newFilter(t, map[string]string{"file": path})
	s := session(7, "192.0.2.1:40000", "198.51.100.1:5432")
	rng := rand.New(rand.NewPCG(7, 7))
	up, down := random(rng, 300_000), random(rng, 500_000)
	c := converse(t, f, s, 7)
	c.send(up, down)
	c.end(client, upstream)
	c.close(nil)

	pkts, cs := conns(t, path)
	if len(cs) != 1 {
		t.Fatalf("%d connections, want 1", len(cs))
	}
	checkConn(t, cs[0], up, down)
	if got := *cs[0]; got.Client != s.Client || got.Server != s.Upstream || !got.ClientFIN || !got.ServerFIN || got.Reset {
		t.Errorf("connection %v > %v, FINs %v %v, reset %v; want %v > %v, both FINs, no reset",
			got.Client, got.Server, got.ClientFIN, got.ServerFIN, got.Reset, s.Client, s.Upstream)
	}
	if want := "pier session 7, route test"; cs[0].Comment != want {
		t.Errorf("comment %q, want %q", cs[0].Comment, want)
	}
	for i, want := range []Flags{SYN, SYN | ACK, ACK} {
		if pkts[i].Flags != want || len(pkts[i].Payload) > 0 {
			t.Errorf("handshake packet %d: %v with %d bytes, want %v alone", i, pkts[i].Flags, len(pkts[i].Payload), want)
		}
	}
	if !bytes.Equal(pkts[0].Options, synOptions(mss(s.Client.Addr(), s.Upstream.Addr()))) {
		t.Errorf("SYN options % x, want MSS and window scale", pkts[0].Options)
	}
	last := pkts[0].Time
	for i, p := range pkts {
		if len(p.Payload) > mss(p.Src.Addr(), p.Dst.Addr()) {
			t.Errorf("packet %d carries %d bytes, more than the MSS", i, len(p.Payload))
		}
		if p.Time.Before(last) || p.Time.Before(filtertest.Epoch) {
			t.Errorf("packet %d at %v, before %v", i, p.Time, last)
		}
		last = p.Time
	}
}

func TestAddressFamilies(t *testing.T) {
	for _, tc := range []struct {
		name, client, upstream string
		wantClient, wantServer string
	}{
		{"ipv6", "[2001:db8::1]:40000", "[2001:db8::2]:443", "[2001:db8::1]:40000", "[2001:db8::2]:443"},
		{"mixed written ipv6", "192.0.2.1:40000", "[2001:db8::2]:443", "[::ffff:192.0.2.1]:40000", "[2001:db8::2]:443"},
		{"mapped written ipv4", "[::ffff:192.0.2.1]:40000", "198.51.100.1:443", "192.0.2.1:40000", "198.51.100.1:443"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "x.pcapng")
			f := newFilter(t, map[string]string{"file": path})
			rng := rand.New(rand.NewPCG(1, 2))
			up, down := random(rng, 70_000), random(rng, 140_000)
			c := converse(t, f, session(1, tc.client, tc.upstream), 3)
			c.send(up, down)
			c.end(client, upstream)
			c.close(nil)
			_, cs := conns(t, path)
			if len(cs) != 1 {
				t.Fatalf("%d connections, want 1", len(cs))
			}
			checkConn(t, cs[0], up, down)
			if cs[0].Client.String() != tc.wantClient || cs[0].Server.String() != tc.wantServer {
				t.Errorf("connection %v > %v, want %s > %s", cs[0].Client, cs[0].Server, tc.wantClient, tc.wantServer)
			}
		})
	}
}

func TestSessionEnd(t *testing.T) {
	for _, tc := range []struct {
		name      string
		ends      []int // the sides whose source ends
		err       error
		fin       [2]bool
		reset     bool
		lastFlags Flags
	}{
		{"both finish", []int{client, upstream}, nil, [2]bool{true, true}, false, ACK},
		{"error resets", nil, errors.New("upstream: connection refused"), [2]bool{}, true, RST | ACK},
		{"error after one FIN resets", []int{client}, filter.ErrReset, [2]bool{true, false}, true, RST | ACK},
		{"error after both FINs adds nothing", []int{upstream, client}, errors.New("late"), [2]bool{true, true}, false, ACK},
		{"ErrClose closes", []int{upstream}, filter.ErrClose, [2]bool{true, true}, false, ACK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "x.pcapng")
			f := newFilter(t, map[string]string{"file": path})
			rng := rand.New(rand.NewPCG(5, 5))
			up, down := random(rng, 10_000), random(rng, 20_000)
			c := converse(t, f, session(2, "192.0.2.1:40000", "198.51.100.1:5432"), 5)
			c.send(up, down)
			c.end(tc.ends...)
			c.close(tc.err)
			pkts, cs := conns(t, path)
			if len(cs) != 1 {
				t.Fatalf("%d connections, want 1", len(cs))
			}
			checkConn(t, cs[0], up, down)
			got := cs[0]
			if got.ClientFIN != tc.fin[0] || got.ServerFIN != tc.fin[1] || got.Reset != tc.reset {
				t.Errorf("FINs %v %v, reset %v; want %v %v, %v", got.ClientFIN, got.ServerFIN, got.Reset, tc.fin[0], tc.fin[1], tc.reset)
			}
			if last := pkts[len(pkts)-1]; last.Flags != tc.lastFlags {
				t.Errorf("last packet %v, want %v", last.Flags, tc.lastFlags)
			}
		})
	}
}

func TestSessionWithoutBytesStillShows(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.pcapng")
	f := newFilter(t, map[string]string{"file": path})
	c := converse(t, f, session(3, "192.0.2.1:40000", "198.51.100.1:5432"), 1)
	c.close(errors.New("idle timeout"))
	pkts, cs := conns(t, path)
	if len(cs) != 1 || !cs[0].Reset || len(pkts) != 4 {
		t.Fatalf("%d packets, %d connections; want a handshake and a reset", len(pkts), len(cs))
	}
	if !pkts[0].Time.Equal(filtertest.Epoch) {
		t.Errorf("handshake at %v, want the session's start %v", pkts[0].Time, filtertest.Epoch)
	}
}

// TestSequenceNumbersWrap pins that a stream crossing 2^32 in sequence
// space is recorded right (RFC 9293 section 3.4: arithmetic modulo 2^32).
func TestSequenceNumbersWrap(t *testing.T) {
	id := uint64(0)
	for uint32(mix(id)) < 1<<32-100_000 || uint32(mix(id)>>32) < 1<<32-100_000 {
		id++
	}
	path := filepath.Join(t.TempDir(), "x.pcapng")
	f := newFilter(t, map[string]string{"file": path})
	rng := rand.New(rand.NewPCG(id, 0))
	up, down := random(rng, 200_000), random(rng, 200_000)
	c := converse(t, f, session(id, "192.0.2.1:40000", "198.51.100.1:5432"), id)
	c.send(up, down)
	c.end(client, upstream)
	c.close(nil)
	_, cs := conns(t, path)
	checkConn(t, cs[0], up, down)
}

// sessionData is what session i of a test sends each way.
func sessionData(i int) (up, down []byte) {
	rng := rand.New(rand.NewPCG(uint64(i), 99))
	return random(rng, rng.IntN(60_000)), random(rng, rng.IntN(120_000))
}

func TestConcurrentSessionsShareAFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "route.pcapng")
	f := newFilter(t, map[string]string{"file": path})
	const sessions = 16
	var wg sync.WaitGroup
	for i := range sessions {
		wg.Go(func() {
			up, down := sessionData(i)
			c := converse(t, f, session(uint64(i), fmt.Sprintf("192.0.2.1:%d", 40000+i), "198.51.100.1:5432"), uint64(i))
			c.send(up, down)
			c.end(client, upstream)
			c.close(nil)
		})
	}
	wg.Wait()
	_, cs := conns(t, path)
	if len(cs) != sessions {
		t.Fatalf("%d connections, want %d", len(cs), sessions)
	}
	for _, c := range cs {
		i := int(c.Client.Port()) - 40000
		if want := fmt.Sprintf("pier session %d, route test", i); c.Comment != want {
			t.Errorf("comment %q, want %q", c.Comment, want)
		}
		checkConn(t, c, sessionDataUp(i), sessionDataDown(i))
	}
}

func sessionDataUp(i int) []byte   { up, _ := sessionData(i); return up }
func sessionDataDown(i int) []byte { _, down := sessionData(i); return down }

func TestRotation(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "db.pcapng")
	const maxSize = 100_000
	f := newFilter(t, map[string]string{"file": path, "max_size": "100KB", "max_files": "2"})
	for i := range 4 {
		up, down := sessionData(i)
		c := converse(t, f, session(uint64(i), fmt.Sprintf("192.0.2.1:%d", 40000+i), "198.51.100.1:5432"), uint64(i))
		c.send(up, down)
		c.end(client, upstream)
		c.close(nil)
	}
	names, _ := filepath.Glob(path + "*")
	want := []string{path, path + ".1", path + ".2"}
	if strings.Join(names, " ") != strings.Join(want, " ") {
		t.Fatalf("files %q, want %q", names, want)
	}
	for _, name := range names {
		fi, err := os.Stat(name)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Size() > maxSize {
			t.Errorf("%s: %d bytes, over max_size %d", name, fi.Size(), maxSize)
		}
		if pkts, err := ReadFile(name); err != nil || len(pkts) == 0 {
			t.Errorf("%s: %d packets, %v", name, len(pkts), err)
		}
	}
}

// TestRotatedFilesJoinUp pins that rotation loses nothing: the files,
// oldest first, hold every stream whole.
func TestRotatedFilesJoinUp(t *testing.T) {
	path := filepath.Join(t.TempDir(), "db.pcapng")
	f := newFilter(t, map[string]string{"file": path, "max_size": "64KiB", "max_files": "1000"})
	const sessions = 3
	for i := range sessions {
		up, down := sessionData(i)
		c := converse(t, f, session(uint64(i), fmt.Sprintf("192.0.2.1:%d", 40000+i), "198.51.100.1:5432"), uint64(i))
		c.send(up, down)
		c.end(client, upstream)
		c.close(nil)
	}
	names, _ := filepath.Glob(path + ".*")
	var all []Packet
	for n := len(names); n >= 1; n-- {
		pkts, err := ReadFile(fmt.Sprintf("%s.%d", path, n))
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, pkts...)
	}
	pkts, err := ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := Reassemble(append(all, pkts...))
	if err != nil {
		t.Fatal(err)
	}
	if len(names) < 3 || len(cs) != sessions {
		t.Fatalf("%d rotated files, %d connections; want several, and %d", len(names), len(cs), sessions)
	}
	for i, c := range cs {
		checkConn(t, c, sessionDataUp(i), sessionDataDown(i))
	}
}

func TestPerSessionFiles(t *testing.T) {
	for _, tc := range []struct{ file, want string }{
		{"db.pcapng", "db-%d.pcapng"},
		{"capture", "capture-%d"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			dir := t.TempDir()
			f := newFilter(t, map[string]string{"file": filepath.Join(dir, tc.file), "per_session": "true"})
			if _, err := os.Stat(filepath.Join(dir, tc.file)); err == nil {
				t.Errorf("per_session created %s", tc.file)
			}
			for _, id := range []uint64{3, 12} {
				up, down := sessionData(int(id))
				c := converse(t, f, session(id, "192.0.2.1:40000", "198.51.100.1:5432"), id)
				c.send(up, down)
				c.end(client, upstream)
				c.close(nil)
			}
			for _, id := range []uint64{3, 12} {
				_, cs := conns(t, filepath.Join(dir, fmt.Sprintf(tc.want, id)))
				if len(cs) != 1 {
					t.Fatalf("session %d: %d connections, want 1", id, len(cs))
				}
				checkConn(t, cs[0], sessionDataUp(int(id)), sessionDataDown(int(id)))
			}
		})
	}
}

// TestFiltersShareAFile pins that a second filter on the same file (a
// config reload) appends to it instead of truncating it under the first.
func TestFiltersShareAFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "db.pcapng")
	for i := range 2 {
		f := newFilter(t, map[string]string{"file": path})
		up, down := sessionData(i)
		c := converse(t, f, session(uint64(i), fmt.Sprintf("192.0.2.1:%d", 40000+i), "198.51.100.1:5432"), uint64(i))
		c.send(up, down)
		c.end(client, upstream)
		c.close(nil)
	}
	if _, cs := conns(t, path); len(cs) != 2 {
		t.Fatalf("%d connections, want 2", len(cs))
	}
}

func TestOptionErrors(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "no", "such", "dir")
	for _, tc := range []struct {
		name string
		opts map[string]string
		want string
	}{
		{"no file", map[string]string{}, "pcap: file: required"},
		{"no directory", map[string]string{"file": filepath.Join(missing, "x.pcapng")}, "pcap: file: open " + missing},
		{"no directory per session", map[string]string{"file": filepath.Join(missing, "x.pcapng"), "per_session": "true"}, "pcap: file: open " + missing},
		{"bad size", map[string]string{"file": filepath.Join(dir, "x"), "max_size": "lots"}, "pcap: max_size:"},
		{"bad count", map[string]string{"file": filepath.Join(dir, "x"), "max_files": "-1"}, "pcap: max_files:"},
		{"unknown", map[string]string{"file": filepath.Join(dir, "x"), "snaplen": "96"}, "pcap: snaplen: unknown option"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			vals := map[string]filter.Value{}
			for k, v := range tc.opts {
				vals[k] = filter.Value{Text: v}
			}
			_, err := New(filter.NewOptions("pcap", vals, 0, 0))
			if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
				t.Errorf("error %v, want one starting %q", err, tc.want)
			}
		})
	}
}

// TestWriteErrorStopsRecordingNotTheSession pins that a file that fails
// stops the capture and nothing else.
func TestWriteErrorStopsRecordingNotTheSession(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.pcapng")
	f := newFilter(t, map[string]string{"file": path})
	f.route.file.Close() // every write from now on fails
	rng := rand.New(rand.NewPCG(1, 1))
	up, down := random(rng, 100_000), random(rng, 100_000)
	c := converse(t, f, session(1, "192.0.2.1:40000", "198.51.100.1:5432"), 1)
	c.send(up, down)
	c.end(client, upstream)
	c.close(nil)
	if !errors.Is(f.route.err, os.ErrClosed) {
		t.Errorf("writer error %v, want the first failure, %v", f.route.err, os.ErrClosed)
	}
	// A new filter on the file (a reload) starts it again.
	f2 := newFilter(t, map[string]string{"file": path})
	c = converse(t, f2, session(2, "192.0.2.1:40001", "198.51.100.1:5432"), 1)
	c.send(up, down)
	c.end(client, upstream)
	c.close(nil)
	if _, cs := conns(t, path); len(cs) != 1 {
		t.Errorf("%d connections after the restart, want 1", len(cs))
	}
}

func TestParseRejectsDamage(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.pcapng")
	f := newFilter(t, map[string]string{"file": path})
	c := converse(t, f, session(1, "192.0.2.1:40000", "198.51.100.1:5432"), 1)
	c.send([]byte("hello"), []byte("world"))
	c.end(client, upstream)
	c.close(nil)
	good, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Parse(good); err != nil {
		t.Fatal(err)
	}
	hello := bytes.Index(good, []byte("hello"))
	ipStart := len(header) + 28 // the first packet's IP header
	for _, tc := range []struct {
		name string
		at   int
		want string
	}{
		{"payload", hello, "bad TCP checksum"},
		{"IP header", ipStart + 8, "bad IPv4 header checksum"},
		{"block length", len(header) + 4, "bad block length"},
		{"section header", 8, "bad byte-order magic"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bad := bytes.Clone(good)
			bad[tc.at] ^= 0x40
			if _, err := Parse(bad); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want %q", err, tc.want)
			}
		})
	}
}

func TestReassembleFindsGaps(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.pcapng")
	f := newFilter(t, map[string]string{"file": path})
	c := converse(t, f, session(1, "192.0.2.1:40000", "198.51.100.1:5432"), 1)
	for _, s := range []string{"one", "two"} {
		c.call(client, func(d *filtertest.Driver) error { return d.Write([]byte(s)) })
	}
	c.end(client, upstream)
	c.close(nil)
	pkts, _ := conns(t, path)
	// 0-2 the handshake, 3 "one", 4 its ACK, 5 "two", 6 its ACK.
	for _, tc := range []struct {
		name string
		drop []int
		want string
	}{
		{"SYN", []int{0}, "no connection open"},
		{"handshake ACK", []int{2, 3}, "want the handshake's ACK"},
		{"ACKed data", []int{3}, "acknowledges 3 bytes not sent"},
		{"data", []int{3, 4}, "3 bytes missing"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var cut []Packet
			for i, p := range pkts {
				if !slices.Contains(tc.drop, i) {
					cut = append(cut, p)
				}
			}
			if _, err := Reassemble(cut); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want %q", err, tc.want)
			}
		})
	}
}

// FuzzParse pins that Parse never panics, and that what it reads it
// reads again the same once written out as pier writes.
func FuzzParse(f *testing.F) {
	path := filepath.Join(f.TempDir(), "x.pcapng")
	fl := newFilter(f, map[string]string{"file": path})
	c := converse(f, fl, session(1, "192.0.2.1:40000", "[2001:db8::2]:5432"), 1)
	c.send([]byte("hello"), []byte("world"))
	c.end(client, upstream)
	c.close(errors.New("x"))
	seed, err := os.ReadFile(path)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed)
	f.Add(header)
	udp := Packet{UDP: true, Src: netip.MustParseAddrPort("192.0.2.1:1"), Dst: netip.MustParseAddrPort("[2001:db8::2]:53"), Payload: []byte("odd")}
	f.Add(appendEPB(bytes.Clone(header), &udp, 1))
	f.Fuzz(func(t *testing.T, data []byte) {
		pkts, err := Parse(data)
		if err != nil {
			return
		}
		out := bytes.Clone(header)
		for i := range pkts {
			out = appendEPB(out, &pkts[i], 0)
		}
		again, err := Parse(out)
		if err != nil {
			t.Fatalf("Parse of its own output: %v", err)
		}
		if len(again) != len(pkts) {
			t.Fatalf("%d packets, then %d", len(pkts), len(again))
		}
		for i := range pkts {
			a, b := pkts[i], again[i]
			if !a.Time.Equal(b.Time) || a.UDP != b.UDP || a.Comment != b.Comment || a.Src != b.Src || a.Dst != b.Dst ||
				a.Seq != b.Seq || a.Ack != b.Ack || a.Flags != b.Flags || a.Window != b.Window ||
				!bytes.Equal(a.Options, b.Options) || !bytes.Equal(a.Payload, b.Payload) {
				t.Fatalf("packet %d: %+v, then %+v", i, a, b)
			}
		}
	})
}

func BenchmarkRecord(b *testing.B) {
	for _, size := range []int{1 << 10, 16 << 10, 256 << 10} {
		b.Run(fmt.Sprintf("%dKiB", size>>10), func(b *testing.B) {
			path := filepath.Join(b.TempDir(), "x.pcapng")
			f := newFilter(b, map[string]string{"file": path, "max_size": "64MiB", "max_files": "0"})
			up, _ := f.Streams(session(1, "192.0.2.1:40000", "198.51.100.1:5432"))
			d := filtertest.New(up)
			data := make([]byte, size)
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				if err := d.Write(data); err != nil {
					b.Fatal(err)
				}
				d.Out = d.Out[:0]
			}
		})
	}
}

func TestDryRunCreatesNothing(t *testing.T) {
	dir := t.TempDir()
	for _, perSession := range []bool{false, true} {
		path := filepath.Join(dir, "db.pcapng")
		opts := map[string]filter.Value{"file": {Text: path}, "per_session": {Text: strconv.FormatBool(perSession)}}
		if _, err := New(filter.NewOptions("pcap", opts, 0, 0).CheckOnly()); err != nil {
			t.Fatalf("per_session %v: %v", perSession, err)
		}
		if names, _ := os.ReadDir(dir); len(names) != 0 {
			t.Errorf("per_session %v: a dry run made %v", perSession, names)
		}
		opts["file"] = filter.Value{Text: filepath.Join(dir, "missing", "db.pcapng")}
		if _, err := New(filter.NewOptions("pcap", opts, 0, 0).CheckOnly()); err == nil {
			t.Errorf("per_session %v: a dry run accepted a directory that does not exist", perSession)
		}
	}
}
