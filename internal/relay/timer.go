package relay

import "time"

// timers is a min-heap of sessions ordered by their next check time. A
// session's real deadline moves later with every byte; rather than fix the
// heap per read, the entry is checked when it comes due and pushed back if
// the session has been active since (the deadline only ever moves earlier
// through reschedule).
type timers []*conn

func (h timers) less(i, j int) bool { return h[i].due < h[j].due }

func (h timers) swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].heapIdx = i
	h[j].heapIdx = j
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

// schedule puts c in the heap at due, or moves it there.
func (h *timers) schedule(c *conn, due time.Duration) {
	c.due = due
	if c.heapIdx < 0 {
		c.heapIdx = len(*h)
		*h = append(*h, c)
		h.up(c.heapIdx)
		return
	}
	h.down(c.heapIdx)
	h.up(c.heapIdx)
}

// remove takes c out of the heap if it is there.
func (h *timers) remove(c *conn) {
	i := c.heapIdx
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
	c.heapIdx = -1
}

// next returns the earliest entry, or nil.
func (h timers) next() *conn {
	if len(h) == 0 {
		return nil
	}
	return h[0]
}
