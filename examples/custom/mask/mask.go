// Package mask is a pier filter of a user's own, outside pier's module: it
// hides the digits the upstream sends, so a demo or a screen recording
// shows no account numbers. Importing it registers it as "mask":
//
//	filters:
//	  - mask: {char: "*"}
//
// or, on the command line, pier forward ... --mask '*'.
package mask

import (
	"unicode/utf8"

	"github.com/pierproxy/pier/filter"
)

func init() {
	filter.Register(filter.Spec{
		Name:    "mask",
		New:     newMask,
		Short:   "replace every digit the upstream sends with a character",
		FlagKey: "char",
	})
}

type mask struct{ char byte }

func newMask(o *filter.Options) (filter.Filter, error) {
	c := o.String("char", "#")
	if len(c) != 1 || c[0] >= utf8.RuneSelf {
		o.Errorf("char", "want one ASCII character, not %q", c)
		c = "#"
	}
	return &mask{char: c[0]}, o.Err()
}

// Streams works on the bytes to the client only.
func (m *mask) Streams(*filter.Session) (toUpstream, toClient filter.Stream) {
	return nil, &maskStream{char: m.char}
}

type maskStream struct {
	char byte
	buf  []byte // reused: Emit copies
}

// Process forwards every byte at once, digits replaced.
func (s *maskStream) Process(b *filter.Batch) error {
	s.buf = append(s.buf[:0], b.In...)
	for i, c := range s.buf {
		if '0' <= c && c <= '9' {
			s.buf[i] = s.char
		}
	}
	b.Emit(s.buf)
	b.Drop(len(b.In))
	return nil
}
