package command

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"strconv"

	"github.com/pierproxy/pier/config"
)

const toxiproxyExamples = `  pier toxiproxy
      serve Toxiproxy's API on localhost:8474, as toxiproxy-server does
  pier toxiproxy -port 8475 -config proxies.json
      create the proxies listed in toxiproxy-server's JSON format at start
  pier toxiproxy -admin 127.0.0.1:9901
      and pier's own admin API and metrics beside it
`

// runToxiproxy is 'pier toxiproxy': a drop-in for toxiproxy-server. It
// takes toxiproxy-server's flags and serves Toxiproxy's HTTP API, with
// pier's data path under the proxies it creates. Its configuration is the
// one a file with only `toxiproxy:` (and `admin:`) would hold, through the
// same parser.
func runToxiproxy(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("toxiproxy", "pier toxiproxy [-host HOST] [-port PORT] [-config FILE] [flags]", toxiproxyExamples)
	host := fs.String("host", "localhost", "serve the Toxiproxy API on this `host`")
	port := fs.String("port", "8474", "serve the Toxiproxy API on this `port`")
	populate := fs.String("config", "", "create the proxies this JSON `file` lists at start (toxiproxy-server's -config)")
	seed := fs.String("seed", "", "seed the toxics' random draws (toxicity, jitter) with this `number`, for repeatable runs")
	admin := fs.String("admin", "", "serve pier's admin API and metrics on this `address` too")
	tokenFile := fs.String("admin-token-file", "", "require the bearer token in this `file` on every admin request")
	pidfile := fs.String("pidfile", "", "write pier's process id to this `file` once listening; removed on exit")
	var lf logFlags
	lf.register(fs.FlagSet)
	pos, err := fs.parse(args, stdout)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fs.usage(fmt.Errorf("toxiproxy: unexpected argument %q", pos[0]))
	}
	var seedValue *uint64
	if *seed != "" {
		n, err := strconv.ParseUint(*seed, 10, 64)
		if err != nil {
			return fs.usage(fmt.Errorf("-seed: %q is not a whole number", *seed))
		}
		seedValue = &n
	}
	// toxiproxy-server serves any host it is given (-host 0.0.0.0 in a
	// container is common): a host given here is the user's choice, as
	// allow_remote is in a file.
	hostGiven := false
	fs.Visit(func(f *flag.Flag) { hostGiven = hostGiven || f.Name == "host" })
	doc := fmt.Sprintf("toxiproxy: {listen: %s, allow_remote: %t}\n", strconv.Quote(net.JoinHostPort(*host, *port)), hostGiven)
	if *admin != "" {
		doc += fmt.Sprintf("admin: {listen: %s", strconv.Quote(*admin))
		if *tokenFile != "" {
			doc += fmt.Sprintf(", token_file: %s", strconv.Quote(*tokenFile))
		}
		doc += "}\n"
	} else if *tokenFile != "" {
		return fs.usage(errors.New("-admin-token-file: needs -admin"))
	}
	cfg, err := config.Parse("the command line", []byte(doc))
	if err != nil {
		return fs.usage(err)
	}
	log, err := lf.logger(stderr)
	if err != nil {
		return fs.usage(err)
	}
	defer lf.closeLog()
	opts := lf.appOptions(log)
	opts.ToxiproxySeed = seedValue
	opts.ToxiproxyConfig = *populate
	err = serve(ctx, cfg, opts, *pidfile)
	lf.logDropped(log)
	return err
}
