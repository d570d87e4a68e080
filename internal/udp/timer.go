package udp

import "time"

// timers is a min-heap of flows by their next check time, as a relay
// loop keeps its sessions: a flow's idle deadline moves later with every
// datagram, and rather than fix the heap per datagram, the entry is
// checked when it comes due and pushed back if the flow was active since.
type timers []*flow

func (h timers) less(i, j int) bool { return h[i].due < h[j].due }

func (h timers) swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].heap = int32(i)
	h[j].heap = int32(j)
}

func (h timers) up(j int) {
	for j > 0 {
		i := (j - 1) / 2
		if !h.less(j, i) {
			break
		}
		h.swap(i, j)
		j = i
	}
}

func (h timers) down(i int) {
	n := len(h)
	for {
		j := 2*i + 1
		if j >= n {
			return
		}
		if r := j + 1; r < n && h.less(r, j) {
			j = r
		}
		if !h.less(j, i) {
			return
		}
		h.swap(i, j)
		i = j
	}
}

// schedule puts f in the heap at due, or moves it there.
func (h *timers) schedule(f *flow, due time.Duration) {
	f.due = due
	if f.heap < 0 {
		f.heap = int32(len(*h))
		*h = append(*h, f)
		h.up(int(f.heap))
		return
	}
	h.down(int(f.heap))
	h.up(int(f.heap))
}

// remove takes f out of the heap if it is there.
func (h *timers) remove(f *flow) {
	i := int(f.heap)
	if i < 0 {
		return
	}
	last := len(*h) - 1
	if i != last {
		h.swap(i, last)
	}
	(*h)[last] = nil
	*h = (*h)[:last]
	if i != last {
		h.down(i)
		h.up(i)
	}
	f.heap = -1
}

// next returns the earliest entry, or nil.
func (h timers) next() *flow {
	if len(h) == 0 {
		return nil
	}
	return h[0]
}
