package toxiproxy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"io"
	"strings"

	"github.com/pierproxy/pier/internal/toxiproxy/toxics"
)

// A toxic is a proxy's toxic: its JSON form, and which way it acts.
type toxic struct {
	toxics.ToxicWrapper
	upstream bool
}

// parseToxic reads a toxic-create body as Toxiproxy does: the name, type,
// stream and toxicity first (absent toxicity is 1, absent stream
// downstream), then the attributes into the type's own struct. exists
// says whether a toxic of that name is already on the proxy.
func parseToxic(body io.Reader, exists func(name string) bool) (*toxic, *apiError) {
	var buf bytes.Buffer
	w := &toxic{ToxicWrapper: toxics.ToxicWrapper{Stream: "downstream", Toxicity: 1, Attributes: new(toxics.NoopToxic)}}
	if err := json.NewDecoder(io.TeeReader(body, &buf)).Decode(&w.ToxicWrapper); err != nil {
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
	attrs := toxics.NewAttributes(w.Type)
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
func (t *toxic) update(body io.Reader) (*toxic, *apiError) {
	c := *t
	c.Attributes = toxics.CloneAttributes(t.Attributes)
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
func (t *toxic) filter(seed *uint64) string {
	var name string
	opts := [][2]string{}
	add := func(k, v string) { opts = append(opts, [2]string{k, v}) }
	ms := func(v int64) string { return fmt.Sprintf("%dms", clamp(v, 0, maxMillis)) }
	switch a := t.Attributes.(type) {
	case *toxics.LatencyToxic:
		name = "latency"
		add("delay", ms(a.Latency))
		add("jitter", ms(a.Jitter))
	case *toxics.BandwidthToxic:
		if a.Rate < 0 {
			return "" // Toxiproxy's arithmetic goes wrong; no limit is the kindest reading
		}
		name = "bandwidth"
		// 100ms worth of bucket: Toxiproxy slices a chunk into 100ms pieces.
		rate := clamp(a.Rate, 0, maxRateKB)
		add("rate", fmt.Sprint(rate*1000))
		add("burst", fmt.Sprint(max(rate*100, 1)))
	case *toxics.SlowCloseToxic:
		name = "slow_close"
		add("delay", ms(a.Delay))
	case *toxics.TimeoutToxic:
		name = "timeout"
		add("after", ms(a.Timeout))
		add("close_at_end", "true")
	case *toxics.ResetToxic:
		name = "reset"
		add("after", ms(a.Timeout))
		add("start", "first_byte")
		add("drop", "true")
	case *toxics.SlicerToxic:
		name = "slicer"
		// average_size 0 makes Toxiproxy recurse until it crashes; one byte
		// is the nearest thing that works. pier wants variation < size.
		size := clamp(int64(a.AverageSize), 1, 1<<30)
		add("size", fmt.Sprint(size))
		add("variation", fmt.Sprint(clamp(int64(a.SizeVariation), 0, size-1)))
		add("delay", fmt.Sprintf("%dus", clamp(int64(a.Delay), 0, maxMillis*1000)))
	case *toxics.LimitDataToxic:
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
