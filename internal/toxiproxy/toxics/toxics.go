// Package toxics holds the JSON forms of Toxiproxy's toxics, with
// Toxiproxy's type names in a package named as Toxiproxy's is, so that
// the errors encoding/json words with them ("... Go value of type
// toxics.ToxicWrapper", "... of type toxics.NoopToxic", "... Go struct
// field LatencyToxic.attributes.latency of type int64") read as
// Toxiproxy's do, word for word. The toxiproxy package decodes into them
// and keeps its own state beside them.
package toxics

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

// NewAttributes returns the zero attributes of a toxic type, or nil for a
// type Toxiproxy does not have.
func NewAttributes(typ string) any {
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

// CloneAttributes copies attributes (a pointer to one of the types above).
func CloneAttributes(a any) any {
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

// ToxicWrapper is a toxic as the API reads and shows it, fields in
// Toxiproxy's order. Stream is kept as sent ("UpStream" stays so).
type ToxicWrapper struct {
	Attributes any     `json:"attributes"`
	Name       string  `json:"name"`
	Type       string  `json:"type"`
	Stream     string  `json:"stream"`
	Toxicity   float32 `json:"toxicity"`
}
