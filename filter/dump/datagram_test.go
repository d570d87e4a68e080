package dump

import (
	"testing"
	"time"

	"github.com/pierproxy/pier/filter"
	"github.com/pierproxy/pier/filter/filtertest"
)

// A datagram is one block: its flow, direction, due time and size, then
// its bytes with offsets from its own start, at most max_bytes of them;
// the datagram passes on unchanged, at its time; the flow's end is said
// once both directions are closed.
func TestDumpDatagrams(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts map[string]string
		want string
	}{
		{"hex", nil, "" +
			"session 9 client→upstream 2026-01-02T03:04:05.000000Z datagram 18 bytes\n" +
			"00000000  68 65 6c 6c 6f 2c 20 64  61 74 61 67 72 61 6d 21  |hello, datagram!|\n" +
			"00000010  0d 0a                                             |..|\n" +
			"session 9 upstream→client 2026-01-02T03:04:05.003000Z datagram 3 bytes\n" +
			"00000000  61 63 6b                                          |ack|\n" +
			"session 9 client→upstream 2026-01-02T03:04:05.003000Z datagram 0 bytes\n" +
			"session 9 2026-01-02T04:04:05.000000Z ended: closed by filter\n"},
		{"text, max_bytes", map[string]string{"format": "text", "max_bytes": "5"}, "" +
			"session 9 client→upstream 2026-01-02T03:04:05.000000Z datagram 18 bytes\n" +
			"  hello\n" +
			"... 13 more bytes\n" +
			"session 9 upstream→client 2026-01-02T03:04:05.003000Z datagram 3 bytes\n" +
			"  ack\n" +
			"session 9 client→upstream 2026-01-02T03:04:05.003000Z datagram 0 bytes\n" +
			"session 9 2026-01-02T04:04:05.000000Z ended: closed by filter\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, path := newTestDump(t, tc.opts)
			s := filtertest.Session()
			s.ID = 9
			up, down := d.Datagrams(s)
			u, c := filtertest.NewDatagrams(up), filtertest.NewDatagrams(down)
			if err := u.Send([]byte("hello, datagram!\r\n")); err != nil {
				t.Fatal(err)
			}
			u.Advance(3 * time.Millisecond)
			c.Advance(3 * time.Millisecond)
			c.Send([]byte("ack"))
			u.Send(nil)
			u.Close(filter.ErrClose)
			c.Close(filter.ErrClose)
			if got := readDump(t, d, path); got != tc.want {
				t.Errorf("dump:\n%s\nwant:\n%s", got, tc.want)
			}
			if len(u.Out) != 2 || string(u.Out[0].Data) != "hello, datagram!\r\n" || !u.Out[0].At.Equal(filtertest.Epoch) {
				t.Errorf("passed on: %+v", u.Out)
			}
		})
	}
}

// direction leaves the other datagram stream out.
func TestDumpDatagramsDirection(t *testing.T) {
	d, _ := newTestDump(t, map[string]string{"direction": "client"})
	if up, down := d.Datagrams(filtertest.Session()); up != nil || down == nil {
		t.Errorf("direction client: streams %v, %v", up, down)
	}
}
