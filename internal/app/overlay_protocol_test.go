package app

import (
	"context"
	"fmt"
	"log/slog"
	"testing"

	"github.com/pierproxy/pier/filter"
	"github.com/pierproxy/pier/internal/admin"
	"github.com/pierproxy/pier/internal/testutil"
)

// The admin API's filter list (the overlay) survives a reload, and
// compile used to keep a route's compiled set while its filter config was
// unchanged, whatever the route's protocol became: a tcp route given
// slicer at run time, then turned into a udp route by a reload, kept it
// (the udp engine skipped it silently). Now a route that changes protocol
// compiles its filters again, and the reload is refused.
func TestOverlayFilterChecksProtocolChange(t *testing.T) {
	echo := udpEcho(t)
	tcpUp := testutil.NewUpstream(t, testutil.Echo)
	doc := `routes:
  - name: r
    %s
    listen: ["127.0.0.1:0"]
    upstreams: [{address: %q}]
`
	d, err := Start(parse(t, fmt.Sprintf(doc, "", tcpUp.Addr())), Options{Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Stop(context.Background())
	if _, err := (control{d}).EditFilters("r", admin.FilterEdit{Op: "replace", Body: []byte("[{slicer: {size: 1}}]")}); err != nil {
		t.Fatal(err)
	}
	err = d.Reload(parse(t, fmt.Sprintf(doc, "protocol: udp", echo)))
	if err != nil {
		return // refused: fine
	}
	set := d.routes["r"].filters.Load()
	if set == nil {
		return
	}
	for _, nf := range set.Filters {
		if _, ok := nf.Filter.(filter.DatagramFilter); !ok {
			t.Errorf("reload to protocol: udp took the overlay's filter %q, which does not work on datagrams (the udp engine skips it silently)", nf.Name)
		}
	}
}
