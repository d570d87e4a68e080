package dump

import (
	"time"

	"github.com/pierproxy/pier/filter"
)

// Datagrams dumps the datagrams of a UDP flow, one block each: a header
// with the flow's id, the direction, the datagram's time (its due time at
// the dump's place in the chain) and its size, then its bytes in the
// dump's format, hex offsets counting from the datagram's start:
//
//	session 9 client→upstream 2026-11-25T06:30:00.123456Z datagram 5 bytes
//	00000000  68 65 6c 6c 6f                                    |hello|
//
// max_bytes bounds what is shown of each datagram. When the flow ends
// (if the engine says so) the line "session 9 ... ended" follows, as for
// a TCP session.
func (d *dump) Datagrams(s *filter.Session) (toUpstream, toClient filter.DatagramStream) {
	end := &sessionEnd{d: d, id: s.ID}
	if d.dir&filter.ToUpstream != 0 {
		end.open++
		toUpstream = &datagramStream{d.newStream(end, filter.ToUpstream)}
	}
	if d.dir&filter.ToClient != 0 {
		end.open++
		toClient = &datagramStream{d.newStream(end, filter.ToClient)}
	}
	return toUpstream, toClient
}

// A datagramStream dumps one direction of one flow.
type datagramStream struct{ *stream }

func (s *datagramStream) Process(at time.Time, p []byte, out *filter.DatagramOut) error {
	out.Send(at, p)
	pooled := blocks.Get().(*[]byte)
	shown := p
	if s.d.max > 0 && int64(len(p)) > s.d.max {
		shown = shown[:s.d.max]
	}
	buf := append((*pooled)[:0], s.prefix...)
	buf = at.AppendFormat(buf, stamp)
	buf = append(buf, " datagram "...)
	buf = appendCount(buf, int64(len(p)))
	buf = append(buf, '\n')
	if s.d.text {
		buf = appendText(buf, shown)
	} else {
		buf = appendHex(buf, shown, 0)
	}
	if more := len(p) - len(shown); more > 0 {
		buf = appendMore(buf, more)
	}
	s.off += int64(len(p))
	if s.d.out != nil {
		s.d.out.Write(&s.track, buf, int64(len(p)))
	}
	*pooled = buf
	blocks.Put(pooled)
	return nil
}

var (
	_ filter.DatagramFilter = (*dump)(nil)
	_ filter.DatagramStream = (*datagramStream)(nil)
	_ filter.Closer         = (*datagramStream)(nil)
)
