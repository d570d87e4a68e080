package command

import (
	"flag"
	"io"
	"net"
	"os"
	"runtime"
	"testing"

	"github.com/pierproxy/pier/internal/testutil"
)

// The command runs one relay loop per P the runtime would give it, and
// one P more for everything else; GOMAXPROCS set by the user is kept, with
// a loop per P.
func TestOneLoopPerCPUAndASpareP(t *testing.T) {
	if _, set := os.LookupEnv("GOMAXPROCS"); set {
		t.Skip("GOMAXPROCS is set for the tests: the default cannot be seen")
	}
	up := testutil.NewUpstream(t, func(c *net.TCPConn) { io.Copy(c, c) })
	// The child's runtime finds what ours did, unless go test -cpu
	// changed ours: then the loops are whatever it found, still with a
	// spare P.
	cpus := runtime.GOMAXPROCS(0)
	if flag.Lookup("test.cpu").Value.String() != "" {
		cpus = 0
	}
	for _, c := range []struct {
		env             []string
		loops, maxprocs float64
	}{
		{nil, float64(cpus), float64(cpus + 1)},
		{[]string{"GOMAXPROCS=3"}, 3, 3},
	} {
		p := startPier(t, c.env, 1, "forward", "-log-level", "debug", "127.0.0.1:0", up.Addr())
		lines := p.waitLog(t, func(ls []map[string]any) bool { return count(ls, "relay loops started") == 1 })
		for _, l := range lines {
			if l["msg"] != "relay loops started" {
				continue
			}
			loops, _ := l["loops"].(float64)
			if c.loops == 0 {
				c.loops, c.maxprocs = max(loops, 1), max(loops, 1)+1
			}
			if l["loops"] != c.loops || l["gomaxprocs"] != c.maxprocs {
				t.Errorf("env %q: %v loops, GOMAXPROCS %v; want %v and %v", c.env, l["loops"], l["gomaxprocs"], c.loops, c.maxprocs)
			}
		}
	}
}
