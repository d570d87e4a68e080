package filter_test

import (
	"bytes"
	"fmt"

	"github.com/pierproxy/pier/filter"
	"github.com/pierproxy/pier/filter/filtertest"
)

// prefix puts a prefix before every line the upstream sends, such as
// "db| " before each line of a server's replies. Registered as
// "prefix", it is configured as
//
//	filters:
//	  - prefix: {text: "db| "}
type prefix struct{ text []byte }

func newPrefix(o *filter.Options) (filter.Filter, error) {
	p := &prefix{text: []byte(o.String("text", "> "))}
	if len(p.text) > 64 {
		o.Errorf("text", "at most 64 bytes, not %d", len(p.text))
	}
	return p, o.Err()
}

// Streams makes a stream for the bytes to the client only.
func (p *prefix) Streams(*filter.Session) (toUpstream, toClient filter.Stream) {
	return nil, &prefixStream{text: p.text, atStart: true}
}

type prefixStream struct {
	text    []byte
	atStart bool // the next byte begins a line
}

// Process forwards whole lines, each after the prefix. A line not yet
// ended stays in b.In: pier offers it again with the bytes that follow,
// and at the end of the stream (b.EOF) it goes out as it is.
func (s *prefixStream) Process(b *filter.Batch) error {
	for len(b.In) > 0 {
		n := bytes.IndexByte(b.In, '\n') + 1
		if n == 0 {
			if !b.EOF {
				return nil // hold the partial line
			}
			n = len(b.In)
		}
		if s.atStart {
			b.Emit(s.text)
		}
		b.Pass(n)
		s.atStart = b.Out()[len(b.Out())-1] == '\n'
	}
	return nil
}

func init() {
	filter.Register(filter.Spec{
		Name: "prefix", New: newPrefix, Short: "put a prefix before every line to the client", FlagKey: "text",
		// Optional: the admin dashboard builds its form from them.
		Options: []filter.OptionDoc{
			{Name: "text", Kind: filter.KindString, Default: "> ", Help: "what to put before each line, at most 64 bytes"},
		},
	})
}

func Example() {
	spec, _ := filter.Lookup("prefix")
	f, err := spec.New(filter.NewOptions("prefix", map[string]filter.Value{"text": {Text: "db| "}}, 0, 0))
	if err != nil {
		panic(err)
	}
	_, toClient := f.Streams(filtertest.New(nil).Session)
	d := filtertest.New(toClient)
	d.Write([]byte("SELECT 1\nSEL"))
	d.Write([]byte("ECT 2\nbye"))
	d.CloseWrite()
	fmt.Printf("%s", d.Out)
	// Output:
	// db| SELECT 1
	// db| SELECT 2
	// db| bye
}
