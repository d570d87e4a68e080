package builtin

import (
	"slices"
	"testing"

	"github.com/pierproxy/pier/filter"
)

// The built-ins that work on udp routes are these, and only netem's are
// datagram-only; the rest are for byte streams (the config refuses them
// on udp routes).
func TestBuiltinDatagramFilters(t *testing.T) {
	samples := map[string]map[string]filter.Value{
		"dump":       {"to": {Text: "stderr"}},
		"pcap":       {"file": {Text: t.TempDir() + "/x.pcapng"}},
		"latency":    {"delay": {Text: "1ms"}},
		"bandwidth":  {"rate": {Text: "1MB"}},
		"slicer":     {},
		"reset":      {"after": {Text: "1s"}},
		"timeout":    {},
		"limit":      {"bytes": {Text: "1"}},
		"slow_close": {"delay": {Text: "1s"}},
		"rewrite":    {"match": {Text: "a"}},
		"pass":       {},
		"loss":       {"probability": {Text: "0.1"}},
		"duplicate":  {"probability": {Text: "0.1"}},
		"reorder":    {"probability": {Text: "0.1"}},
	}
	var datagram, only []string
	for _, name := range filter.Names() {
		spec, _ := filter.Lookup(name)
		vals, ok := samples[name]
		if !ok {
			t.Errorf("%s: no sample options in this test", name)
			continue
		}
		f, err := spec.New(filter.NewOptions(name, vals, 0, 0).CheckOnly())
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if _, ok := f.(filter.DatagramFilter); ok {
			datagram = append(datagram, name)
		} else if spec.DatagramOnly {
			t.Errorf("%s is DatagramOnly but not a DatagramFilter", name)
		}
		if spec.DatagramOnly {
			only = append(only, name)
		}
	}
	if want := []string{"bandwidth", "dump", "duplicate", "latency", "loss", "pass", "pcap", "reorder"}; !slices.Equal(datagram, want) {
		t.Errorf("datagram filters %v, want %v", datagram, want)
	}
	if want := []string{"duplicate", "loss", "reorder"}; !slices.Equal(only, want) {
		t.Errorf("datagram-only filters %v, want %v", only, want)
	}
}
