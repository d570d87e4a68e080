package builtin

import (
	"strings"
	"testing"
	"time"

	"github.com/pierproxy/pier/filter"
	"github.com/pierproxy/pier/filter/filtertest"
)

// Every built-in's factory takes any options a user can write without a
// panic, answers with a filter or an error (never both, never neither),
// and a filter it accepts passes bytes through a stream, and datagrams
// through its datagram streams, without a panic.
// The input is "name;key=value;key=v1|v2;..." (a | makes a list).
func FuzzOptions(f *testing.F) {
	for _, seed := range []string{
		"dump;format=text;to=stdout;max_bytes=10",
		"latency;delay=100ms;jitter=10ms;direction=upstream;seed=7",
		"bandwidth;rate=1MB;burst=64KiB",
		"slicer;size=3;variation=2;delay=1ms",
		"reset;bytes=64KiB;probability=0.5;seed=1;clients=10.0.0.0/8|::1/128",
		"timeout;after=0;every=3",
		"timeout;after=1s;close_at_end=true", "reset;after=1s;start=first_byte;drop=true",
		"limit;bytes=1",
		"slow_close;delay=1s;direction=both",
		"rewrite;regexp=a{1,9}b;replace=$1;max_span=100",
		"rewrite;match=x;replace=",
		"pcap;file=/nonexistent/x.pcap",
		"latency;delay=-1s", "bandwidth;rate=0", "slicer;size=1e99", "reset", "rewrite;regexp=(",
		"dump;direction=sideways", "limit;bytes=1|2",
		"loss;probability=0.5;seed=1", "duplicate;probability=1;direction=client",
		"reorder;probability=0.3;delay=1ms;seed=9", "reorder;probability=2", "loss", "pass",
		"bandwidth;rate=100;direction=both", "latency;delay=1ms;jitter=1s;seed=1",
	} {
		f.Add(seed, []byte("hello, world"))
	}
	f.Fuzz(func(t *testing.T, in string, data []byte) {
		parts := strings.Split(in, ";")
		spec, ok := filter.Lookup(parts[0])
		if !ok {
			return
		}
		vals := map[string]filter.Value{}
		for _, kv := range parts[1:] {
			k, v, _ := strings.Cut(kv, "=")
			if strings.Contains(v, "|") {
				vals[k] = filter.Value{IsList: true, List: strings.Split(v, "|")}
			} else {
				vals[k] = filter.Value{Text: v}
			}
		}
		// A dump or pcap to a file is only checked: fuzzing writes nothing.
		flt, err := spec.New(filter.NewOptions(parts[0], vals, 1, 1).CheckOnly())
		if (flt == nil) == (err == nil) {
			t.Fatalf("%q: filter %v and error %v", in, flt, err)
		}
		if err != nil {
			if err.Error() == "" {
				t.Fatalf("%q: an empty error", in)
			}
			return
		}
		if parts[0] == "dump" || parts[0] == "pcap" {
			return // checked only: not to be run
		}
		if df, ok := flt.(filter.DatagramFilter); ok {
			up, down := df.Datagrams(filtertest.Session())
			d := filtertest.NewDatagrams(up, down)
			for range 3 {
				if err := d.Send(data); err != nil {
					t.Fatalf("%q: %v", in, err)
				}
			}
		}
		up, down := flt.Streams(filtertest.New(nil).Session)
		for _, s := range []filter.Stream{up, down} {
			if s == nil {
				continue
			}
			d := filtertest.New(s)
			d.Write(data)
			d.CloseWrite()
			d.Drain(time.Hour)
		}
	})
}
