package fault_test

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/pierproxy/pier/filter"
	_ "github.com/pierproxy/pier/filter/fault"
	"github.com/pierproxy/pier/filter/filtertest"
)

// newFault makes the registered filter name from options written
// "key=value".
func newFault(name string, kv ...string) (filter.Filter, error) {
	spec, ok := filter.Lookup(name)
	if !ok {
		return nil, fmt.Errorf("%s is not registered", name)
	}
	vals := map[string]filter.Value{}
	for _, s := range kv {
		k, v, _ := strings.Cut(s, "=")
		vals[k] = filter.Value{Text: v}
	}
	return spec.New(filter.NewOptions(name, vals, 0, 0))
}

func mustFault(t testing.TB, name string, kv ...string) filter.Filter {
	t.Helper()
	f, err := newFault(name, kv...)
	if err != nil {
		t.Fatalf("%s %v: %v", name, kv, err)
	}
	return f
}

// A call is one Process call as a recorder saw it.
type call struct {
	at time.Time
	n  int // bytes forwarded
}

// A recorder wraps a Stream and notes when each byte it forwarded left,
// and what each call forwarded. It fails a stream called more than
// maxCalls times, which would otherwise keep a driver's Advance going
// for good if it kept asking to wake at the time it was called.
type recorder struct {
	s     filter.Stream
	left  []time.Time
	calls []call
}

const maxCalls = 100_000

func (r *recorder) Process(b *filter.Batch) error {
	if len(r.calls) >= maxCalls {
		return fmt.Errorf("recorder: more than %d calls to Process", maxCalls)
	}
	before := len(b.Out())
	err := r.s.Process(b)
	n := len(b.Out()) - before
	for range n {
		r.left = append(r.left, b.Now)
	}
	r.calls = append(r.calls, call{b.Now, n})
	return err
}

// drive returns a driver, on filtertest's session, for f's stream in
// direction dir, wrapped in a recorder.
func drive(t *testing.T, f filter.Filter, dir filter.Direction) (*filtertest.Driver, *recorder) {
	t.Helper()
	d := filtertest.New(nil)
	d.Dir = dir
	up, down := f.Streams(d.Session)
	s := up
	if dir == filter.ToClient {
		s = down
	}
	if s == nil {
		t.Fatalf("no stream for direction %v", dir)
	}
	r := &recorder{s: s}
	d.Stream = r
	return d, r
}

// pattern returns n bytes that differ from their neighbours, so that a
// lost, repeated or reordered byte shows.
func pattern(from, n int) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = byte((from + i) % 251)
	}
	return p
}

// faults is every fault with options it needs, and its default direction.
var faults = []struct {
	name    string
	opts    []string
	dir     filter.Direction
	flagKey string
}{
	{"latency", []string{"delay=10ms"}, filter.ToClient, "delay"},
	{"bandwidth", []string{"rate=1MB"}, filter.ToClient, "rate"},
	{"slicer", nil, filter.ToClient, "size"},
	{"reset", []string{"after=1s"}, filter.Both, "after"},
	{"timeout", nil, filter.Both, "after"},
	{"limit", []string{"bytes=10"}, filter.ToClient, "bytes"},
	{"slow_close", []string{"delay=1s"}, filter.ToClient, "delay"},
}

func session(id uint64, client string) *filter.Session {
	return &filter.Session{ID: id, Client: netip.MustParseAddrPort(client), Start: filtertest.Epoch}
}

func dirs(up, down filter.Stream) filter.Direction {
	var d filter.Direction
	if up != nil {
		d |= filter.ToUpstream
	}
	if down != nil {
		d |= filter.ToClient
	}
	return d
}

func TestEveryFaultIsRegisteredWithItsFlagKey(t *testing.T) {
	for _, fc := range faults {
		spec, ok := filter.Lookup(fc.name)
		if !ok {
			t.Errorf("%s is not registered", fc.name)
			continue
		}
		if spec.FlagKey != fc.flagKey || spec.Short == "" {
			t.Errorf("%s: FlagKey %q, Short %q; want FlagKey %q and a description", fc.name, spec.FlagKey, spec.Short, fc.flagKey)
		}
	}
}

func TestDirectionPicksTheStreams(t *testing.T) {
	for _, fc := range faults {
		for _, c := range []struct {
			opt  string
			want filter.Direction
		}{
			{"", fc.dir},
			{"direction=upstream", filter.ToUpstream},
			{"direction=client", filter.ToClient},
			{"direction=both", filter.Both},
		} {
			opts := fc.opts
			if c.opt != "" {
				opts = append(opts[:len(opts):len(opts)], c.opt)
			}
			f := mustFault(t, fc.name, opts...)
			up, down := f.Streams(session(1, "192.0.2.1:1"))
			if got := dirs(up, down); got != c.want {
				t.Errorf("%s %v: streams for %v, want %v", fc.name, opts, got, c.want)
			}
			if up != nil && up == down {
				t.Errorf("%s %v: one Stream for both directions; each needs its own state", fc.name, opts)
			}
		}
	}
}

func TestTargetedSessionsOnly(t *testing.T) {
	for _, fc := range faults {
		t.Run(fc.name, func(t *testing.T) {
			withOpts := func(kv ...string) filter.Filter {
				return mustFault(t, fc.name, append(kv, fc.opts...)...)
			}

			f := withOpts("clients=10.0.0.0/8")
			if got := dirs(f.Streams(session(1, "192.0.2.1:1"))); got != 0 {
				t.Errorf("clients 10.0.0.0/8: a client from 192.0.2.1 got streams for %v", got)
			}
			if got := dirs(f.Streams(session(2, "10.1.2.3:1"))); got != fc.dir {
				t.Errorf("clients 10.0.0.0/8: a client from 10.1.2.3 got streams for %v, want %v", got, fc.dir)
			}

			f = withOpts("every=3")
			var chosen []uint64
			for id := uint64(1); id <= 9; id++ {
				if dirs(f.Streams(session(id, "192.0.2.1:1"))) != 0 {
					chosen = append(chosen, id)
				}
			}
			if fmt.Sprint(chosen) != "[3 6 9]" {
				t.Errorf("every 3 chose sessions %v, want [3 6 9]", chosen)
			}

			choices := func() string {
				f := withOpts("probability=0.5", "seed=42")
				var s strings.Builder
				for id := range uint64(200) {
					s.WriteByte("-x"[min(dirs(f.Streams(session(id, "192.0.2.1:1"))), 1)])
				}
				return s.String()
			}
			a, b := choices(), choices()
			if a != b {
				t.Errorf("probability 0.5 with seed 42 chose differently twice:\n%s\n%s", a, b)
			}
			if n := strings.Count(a, "x"); n < 60 || n > 140 {
				t.Errorf("probability 0.5 chose %d of 200 sessions", n)
			}
		})
	}
}

func TestOptionErrorsSayWhatIsWrong(t *testing.T) {
	for _, c := range []struct {
		name string
		opts []string
		want string
	}{
		{"latency", nil, "latency: delay: missing"},
		{"latency", []string{"delay=-5ms"}, "delay: -5ms is negative"},
		{"latency", []string{"delay=soon"}, `delay: "soon" is not a duration`},
		{"latency", []string{"delay=10ms", "jitter=forever"}, `jitter: "forever" is not a duration`},
		{"latency", []string{"delay=48h"}, "delay: 48h0m0s is more than 24h0m0s"},
		{"latency", []string{"delay=10ms", "hold=0"}, `hold: "0" is not a size`},
		{"latency", []string{"delay=10ms", "direction=sideways"}, `direction: "sideways" is not one of upstream, client, both`},
		{"latency", []string{"delay=10ms", "probability=2"}, `probability: "2" is not a number from 0 to 1`},
		{"latency", []string{"delay=10ms", "clients=10.0.0.0/99"}, `clients: "10.0.0.0/99" is not a CIDR prefix`},
		{"latency", []string{"delay=10ms", "seed=-1"}, `seed: "-1" is not a whole number`},
		{"latency", []string{"delay=10ms", "dealy=5ms"}, "dealy: unknown option"},
		{"bandwidth", nil, "bandwidth: rate: missing"},
		{"bandwidth", []string{"rate=-1"}, `rate: "-1" is not a size`},
		{"reset", []string{"after=1s", "start=first"}, `start: "first" is not one of take_up, first_byte`},
		{"reset", []string{"after=1s", "drop=yes"}, `drop: "yes" is not true or false`},
		{"timeout", []string{"close_at_end=1"}, `close_at_end: "1" is not true or false`},
		{"bandwidth", []string{"rate=-1MB"}, `rate: "-1MB" is not a size`},
		{"bandwidth", []string{"rate=1MB", "burst=0"}, `burst: "0" is not a size from 1`},
		{"slicer", []string{"size=0"}, `size: "0" is not a size from 1`},
		{"slicer", []string{"size=4", "variation=4"}, "variation: 4 is not less than size (4)"},
		{"slicer", []string{"delay=-1s"}, "delay: -1s is negative"},
		{"reset", nil, "reset: missing bytes or after"},
		{"reset", []string{"bytes=lots"}, `bytes: "lots" is not a size`},
		{"reset", []string{"after=-1s"}, "after: -1s is negative"},
		{"timeout", []string{"after=1"}, `after: "1" is not a duration`},
		{"limit", nil, "limit: bytes: missing"},
		{"limit", []string{"bytes=-1"}, `bytes: "-1" is not a size`},
		{"slow_close", nil, "slow_close: delay: missing"},
	} {
		_, err := newFault(c.name, c.opts...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s %v: error %v, want one with %q", c.name, c.opts, err, c.want)
		}
	}
}
