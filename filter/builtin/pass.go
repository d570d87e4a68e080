package builtin

import (
	"time"

	"github.com/pierproxy/pier/filter"
)

// pass forwards every byte unchanged, both ways: the cost of the filtered
// path itself, for benchmarks, and a placeholder in a config.
type pass struct{}

func (pass) Streams(*filter.Session) (toUpstream, toClient filter.Stream) {
	return passStream{}, passStream{}
}

// Datagrams passes every datagram on at once, both ways: the cost of the
// filtered path on a udp route.
func (pass) Datagrams(*filter.Session) (toUpstream, toClient filter.DatagramStream) {
	return passDatagrams{}, passDatagrams{}
}

type passStream struct{}

func (passStream) Process(b *filter.Batch) error {
	b.Pass(len(b.In))
	return nil
}

type passDatagrams struct{}

func (passDatagrams) Process(at time.Time, d []byte, out *filter.DatagramOut) error {
	out.Send(at, d)
	return nil
}

func init() {
	filter.Register(filter.Spec{
		Name:  "pass",
		Short: "forward every byte unchanged (the filtered path's own cost)",
		// It takes no options: empty, and not nil, says so.
		Options: []filter.OptionDoc{},
		New: func(o *filter.Options) (filter.Filter, error) {
			if err := o.Err(); err != nil {
				return nil, err
			}
			return pass{}, nil
		},
	})
}
