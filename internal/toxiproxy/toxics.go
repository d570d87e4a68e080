package toxiproxy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"io"
	"strings"
)

// The attribute types carry Toxiproxy's names (LatencyToxic, ...) and
// field types, so that encoding/json's errors, which name them, read as
// Toxiproxy's do ("... Go struct field LatencyToxic.attributes.latency of
// type int64"), and their JSON lists every attribute, zeros included.

// LatencyToxic is the latency toxic's attributes, in milliseconds.
type LatencyToxic struct {
	Latency int64 `json:"latency"`
	Jitter  int64 `json:"jitter"`
}

// BandwidthToxic is the bandwidth toxic's rate, in KB/s (1 KB = 1000 B).
type BandwidthToxic struct {
	Rate int64 `json:"rate"`
}

// SlowCloseToxic is the slow_close toxic's delay, in milliseconds.
type SlowCloseToxic struct {
	Delay int64 `json:"delay"`
}

// TimeoutToxic is the timeout toxic's time, in milliseconds (0: never).
type TimeoutToxic struct {
	Timeout int64 `json:"timeout"`
}

// ResetToxic is the reset_peer toxic's time, in milliseconds.
type ResetToxic struct {
	Timeout int64 `json:"timeout"`
}

// SlicerToxic is the slicer toxic's sizes, in bytes, and delay, in
// microseconds.
type SlicerToxic struct {
	AverageSize   int `json:"average_size"`
	SizeVariation int `json:"size_variation"`
	Delay         int `json:"delay"`
}

// LimitDataToxic is the limit_data toxic's byte count.
type LimitDataToxic struct {
	Bytes int64 `json:"bytes"`
}

// NoopToxic has no attributes.
type NoopToxic struct{}

// newAttributes returns the zero attributes of a toxic type, or nil for a
// type Toxiproxy does not have.
func newAttributes(typ string) any {
	switch typ {
	case "latency":
		return new(LatencyToxic)
	case "bandwidth":
		return new(BandwidthToxic)
	case "slow_close":
		return new(SlowCloseToxic)
	case "timeout":
		return new(TimeoutToxic)
	case "reset_peer":
		return new(ResetToxic)
	case "slicer":
		return new(SlicerToxic)
	case "limit_data":
		return new(LimitDataToxic)
	case "noop":
		return new(NoopToxic)
	}
	return nil
}

// cloneAttributes copies attributes (a pointer to one of the types above).
func cloneAttributes(a any) any {
	switch a := a.(type) {
	case *LatencyToxic:
		c := *a
		return &c
	case *BandwidthToxic:
		c := *a
		return &c
	case *SlowCloseToxic:
		c := *a
		return &c
	case *TimeoutToxic:
		c := *a
		return &c
	case *ResetToxic:
		c := *a
		return &c
	case *SlicerToxic:
		c := *a
		return &c
	case *LimitDataToxic:
		c := *a
		return &c
	}
	return new(NoopToxic)
}

// ToxicWrapper is a toxic as the API reads and shows it. Stream is kept as
// sent ("UpStream" stays so); upstream says which way it acts.
type ToxicWrapper struct {
	Attributes any     `json:"attributes"`
	Name       string  `json:"name"`
	Type       string  `json:"type"`
	Stream     string  `json:"stream"`
	Toxicity   float32 `json:"toxicity"`
	upstream   bool
}

// parseToxic reads a toxic-create body as Toxiproxy does: the name, type,
// stream and toxicity first (absent toxicity is 1, absent stream
// downstream), then the attributes into the type's own struct. exists
// says whether a toxic of that name is already on the proxy.
func parseToxic(body io.Reader, exists func(name string) bool) (*ToxicWrapper, *apiError) {
	var buf bytes.Buffer
	w := &ToxicWrapper{Stream: "downstream", Toxicity: 1, Attributes: new(NoopToxic)}
	if err := json.NewDecoder(io.TeeReader(body, &buf)).Decode(w); err != nil {
		return nil, badBody(err)
	}
	switch strings.ToLower(w.Stream) {
	case "upstream":
		w.upstream = true
	case "downstream":
	default:
		return nil, errInvalidStream
	}
	if w.Name == "" {
		w.Name = w.Type + "_" + w.Stream
	}
	attrs := newAttributes(w.Type)
	if attrs == nil {
		return nil, errInvalidType
	}
	if exists(w.Name) {
		return nil, errToxicExists
	}
	in := struct {
		Attributes any `json:"attributes"`
	}{attrs}
	if err := json.NewDecoder(&buf).Decode(&in); err != nil {
		return nil, badBody(err)
	}
	w.Attributes = attrs
	return w, nil
}

// update applies a toxic-update body to a copy of t: the attributes are
// merged (only the keys given change), toxicity kept if absent; name,
// type and stream in the body are ignored, as by Toxiproxy.
func (t *ToxicWrapper) update(body io.Reader) (*ToxicWrapper, *apiError) {
	c := *t
	c.Attributes = cloneAttributes(t.Attributes)
	in := struct {
		Attributes any     `json:"attributes"`
		Toxicity   float32 `json:"toxicity"`
	}{c.Attributes, c.Toxicity}
	if err := json.NewDecoder(body).Decode(&in); err != nil {
		return nil, badBody(err)
	}
	c.Toxicity = in.Toxicity
	return &c, nil
}

// filter returns the pier filter that does what the toxic does, as one
// item of a route's filters list (a YAML flow mapping), or "" for a toxic
// that needs none (noop). seed, if not nil, seeds its choice of sessions.
// The values are clamped into what pier's filters take: Toxiproxy checks
// none of them.
func (t *ToxicWrapper) filter(seed *uint64) string {
	var name string
	opts := [][2]string{}
	add := func(k, v string) { opts = append(opts, [2]string{k, v}) }
	ms := func(v int64) string { return fmt.Sprintf("%dms", clamp(v, 0, maxMillis)) }
	switch a := t.Attributes.(type) {
	case *LatencyToxic:
		name = "latency"
		add("delay", ms(a.Latency))
		add("jitter", ms(a.Jitter))
	case *BandwidthToxic:
		if a.Rate < 0 {
			return "" // Toxiproxy's arithmetic goes wrong; no limit is the kindest reading
		}
		name = "bandwidth"
		// 100ms worth of bucket: Toxiproxy slices a chunk into 100ms pieces.
		rate := clamp(a.Rate, 0, maxRateKB)
		add("rate", fmt.Sprint(rate*1000))
		add("burst", fmt.Sprint(max(rate*100, 1)))
	case *SlowCloseToxic:
		name = "slow_close"
		add("delay", ms(a.Delay))
	case *TimeoutToxic:
		name = "timeout"
		add("after", ms(a.Timeout))
		add("close_at_end", "true")
	case *ResetToxic:
		name = "reset"
		add("after", ms(a.Timeout))
		add("start", "first_byte")
		add("drop", "true")
	case *SlicerToxic:
		name = "slicer"
		// average_size 0 makes Toxiproxy recurse until it crashes; one byte
		// is the nearest thing that works. pier wants variation < size.
		size := clamp(int64(a.AverageSize), 1, 1<<30)
		add("size", fmt.Sprint(size))
		add("variation", fmt.Sprint(clamp(int64(a.SizeVariation), 0, size-1)))
		add("delay", fmt.Sprintf("%dus", clamp(int64(a.Delay), 0, maxMillis*1000)))
	case *LimitDataToxic:
		name = "limit"
		add("bytes", fmt.Sprint(clamp(a.Bytes, 0, 1<<62)))
	default:
		return ""
	}
	if t.upstream {
		add("direction", "upstream")
	} else {
		add("direction", "client")
	}
	if t.Toxicity < 1 {
		add("probability", fmt.Sprint(min(max(float64(t.Toxicity), 0), 1)))
	}
	if seed != nil {
		h := fnv.New64a()
		h.Write([]byte(t.Name))
		add("seed", fmt.Sprint((*seed^h.Sum64())&(1<<62-1)))
	}
	var b strings.Builder
	fmt.Fprintf(&b, "{%q: {", name)
	for i, kv := range opts {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%q: %q", kv[0], kv[1])
	}
	b.WriteString("}}")
	return b.String()
}

// maxMillis is the longest time a toxic's attribute gives pier (24h, the
// latency filter's bound); maxRateKB keeps rate*1000 within bandwidth's.
const (
	maxMillis = 24 * 3600 * 1000
	maxRateKB = 1 << 33 / 1000
)

func clamp(v, lo, hi int64) int64 { return min(max(v, lo), hi) }
