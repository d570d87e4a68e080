// Command pierbench is the Go half of bench/run: the echo upstream, the
// plain Go forwarder and the load generator that measure pier against
// HAProxy and nginx, and the report that puts the results in one table.
//
//	pierbench echo 127.0.0.1:9001                   # the upstream of every column
//	pierbench gocopy 127.0.0.1:9002 127.0.0.1:9001  # the io.Copy baseline proxy
//	pierbench wait -timeout 10s 127.0.0.1:9002      # until it accepts connections
//	pierbench bulk direct=127.0.0.1:9001 gocopy=127.0.0.1:9002  # a JSON line per column
//	pierbench cps -pid gocopy=1234 direct=127.0.0.1:9001 gocopy=127.0.0.1:9002  # with gocopy's CPU
//	pierbench rr -clients 16 -pid gocopy=1234 direct=127.0.0.1:9001 gocopy=127.0.0.1:9002
//	pierbench cps -hello pier-sni=db.example.com pier-sni=127.0.0.1:9004  # a ClientHello first
//	pierbench idle -column gocopy -pid 1234 127.0.0.1:9002
//	pierbench rr -rounds 1 -clients 16 -max-ops 1000 -duration 10m pier=127.0.0.1:9003  # a fixed count
//	pierbench syscalls -column pier -rr rr.jsonl strace.txt  # strace -c's summary as a result line
//	pierbench hog -procs 2                          # keep 2 CPUs busy until killed
//	pierbench report -columns direct,gocopy results.jsonl
//
// and the TLS half, bench/tls:
//
//	pierbench tlscerts DIR                          # a test CA, ECDSA P-256 and RSA 2048 server certificates
//	pierbench tlsecho DIR/ecdsa.crt DIR/ecdsa.key 127.0.0.1:9101  # direct-tls: a Go TLS echo
//	pierbench bulk -tls DIR/ecdsa.crt pier-tls=127.0.0.1:9102     # any load over TLS
//	pierbench hs -test hs-rsa -tls DIR/rsa.crt -pid pier-tls=1234 pier-tls=127.0.0.1:9103
//	pierbench hs -resume -test hs-resume -tls DIR/ecdsa.crt pier-tls=127.0.0.1:9102
//	pierbench tlsreport -columns direct-tls,pier-tls,haproxy results.jsonl
//
// and the UDP half, bench/udp:
//
//	pierbench udpecho 127.0.0.1:9201                # the UDP echo upstream
//	pierbench wait -udp 127.0.0.1:9202              # until a datagram comes back through it
//	pierbench udprate -size 64 -flows 1000 -pid pier=1234 pier=127.0.0.1:9202  # datagrams/s, loss
//	pierbench udprate -test udploss -pace 50000 -flows 1000 pier=127.0.0.1:9202  # loss at a paced rate
//	pierbench udprr -clients 1 -pid pier=1234 pier=127.0.0.1:9203  # a query per new socket
//	pierbench udpidle -column pier -flows 3000 -pid 1234 127.0.0.1:9202
//	pierbench udppace -column nginx -test udp/64/1000 -share 0.5 results.jsonl  # the paced rate
//	pierbench udpreport -columns direct,pier,nginx,socat results.jsonl
//
// The loads take turns on the columns (-rounds) so that drift on a busy
// 2-core machine spreads over all of them. A load that fails still prints
// its result line, with "error" set, and exits 1.
// Exit codes: 0 done, 1 failure, 2 usage.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/pierproxy/pier/bench"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

const usage = `Usage: pierbench COMMAND [flags] ARGS
  echo [-also ADDR,...] ADDR  serve the echo upstream (on more addresses too)
  gocopy LISTEN UPSTREAM      serve the plain io.Copy forwarder
  wait [-timeout D] [-pid P] ADDR   until ADDR accepts a connection
  bulk|cps|rr [flags] COLUMN=ADDR...  run one load on each, taking turns
                              (cps, rr: -pid COLUMN=PID also reads its CPU time;
                              -hello COLUMN=NAME sends a ClientHello first)
  idle [flags] -pid P ADDR    what P holds per idle connection through ADDR
  syscalls -column C -rr FILE STRACE   the result line of strace -c's summary
                              over the rr load whose result line FILE holds
  hog [-procs N]              keep N CPUs busy until interrupted
  ports N                     print N free TCP ports on 127.0.0.1
  pids PID                    print PID and its descendants
  fail -column C -test T MSG  print the result line of a test that could not run
  report -columns A,B FILE    print the table of a results file
  tlscerts DIR                write a test CA and ECDSA and RSA server certificates
  tlsecho CERT KEY ADDR [CERT KEY ADDR]...  serve a TLS echo (direct-tls)
  hs [flags] COLUMN=ADDR...   TLS handshakes/s on each, taking turns (-resume: resumed)
  tlsreport -columns A,B FILE print the TLS table of a results file
  udpecho ADDR                serve the UDP echo upstream
  udprate|udprr [flags] COLUMN=ADDR...  a UDP load on each, taking turns
  udpidle [flags] -pid P ADDR what P holds per idle UDP flow through ADDR
  udppace -column C -test K FILE  print the paced rate for the UDP loss load
  udpreport -columns A,B FILE print the UDP table of a results file
  (wait -udp, ports -udp: the same for UDP)
  (bulk, rr, idle: -tls CERTFILE,... speaks TLS, accepting those server certificates)
Run 'pierbench COMMAND -h' for its flags.
`

// errUsage marks a usage error, already explained on stderr.
var errUsage = errors.New("usage")

// run is the whole command; it returns the exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	cmd, rest := args[0], args[1:]
	var err error
	switch cmd {
	case "echo", "gocopy":
		err = runServer(ctx, cmd, rest, stderr)
	case "wait":
		err = runWait(ctx, rest, stderr)
	case "bulk", "cps", "rr", "hs":
		err = runLoad(ctx, cmd, rest, stdout, stderr)
	case "tlscerts":
		err = runTLSCerts(rest, stderr)
	case "tlsecho":
		err = runTLSEcho(ctx, rest, stderr)
	case "idle":
		err = runIdle(ctx, rest, stdout, stderr)
	case "syscalls":
		err = runSyscalls(rest, stdout, stderr)
	case "hog":
		err = runHog(ctx, rest, stderr)
	case "ports":
		err = runPorts(rest, stdout, stderr)
	case "pids":
		err = runPids(rest, stdout, stderr)
	case "fail":
		err = runFail(rest, stdout, stderr)
	case "udpecho":
		err = runUDPEcho(ctx, rest, stderr)
	case "udprate", "udprr":
		err = runUDPLoad(ctx, cmd, rest, stdout, stderr)
	case "udpidle":
		err = runUDPIdle(ctx, rest, stdout, stderr)
	case "udppace":
		err = runUDPPace(rest, stdout, stderr)
	case "report", "tlsreport", "udpreport":
		err = runReport(cmd, rest, stdout, stderr)
	default:
		fmt.Fprintf(stderr, "pierbench: unknown command %q\n%s", cmd, usage)
		return 2
	}
	switch {
	case err == nil:
		return 0
	case errors.Is(err, errUsage):
		return 2
	case errors.Is(err, flag.ErrHelp):
		return 0
	default:
		fmt.Fprintf(stderr, "pierbench %s: %v\n", cmd, err)
		return 1
	}
}

// parse parses flags, then wants exactly nargs positional arguments.
func parse(fs *flag.FlagSet, args []string, nargs int, synopsis string) ([]string, error) {
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: pierbench %s %s\n", fs.Name(), synopsis)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, err
		}
		return nil, errUsage
	}
	if fs.NArg() != nargs {
		fs.Usage()
		return nil, errUsage
	}
	return fs.Args(), nil
}

func runServer(ctx context.Context, cmd string, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	nargs, synopsis := 1, "[-also ADDR,...] ADDR"
	if cmd == "gocopy" {
		nargs, synopsis = 2, "LISTEN UPSTREAM"
	}
	var also string
	if cmd == "echo" {
		fs.StringVar(&also, "also", "", "more addresses to echo on, comma-separated (a pool's members)")
	}
	pos, err := parse(fs, args, nargs, synopsis)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", pos[0])
	if err != nil {
		return err
	}
	if cmd == "gocopy" {
		return bench.GoCopy(ctx, ln, pos[1])
	}
	if also == "" {
		return bench.Echo(ctx, ln)
	}
	lns := []net.Listener{ln}
	for _, a := range strings.Split(also, ",") {
		l, err := net.Listen("tcp", a)
		if err != nil {
			for _, l := range lns {
				l.Close()
			}
			return err
		}
		lns = append(lns, l)
	}
	// One failing ends them all: the rest are stopped and waited for.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make(chan error, len(lns))
	for _, l := range lns {
		go func() { errs <- bench.Echo(ctx, l) }()
	}
	var first error
	for range lns {
		if err := <-errs; err != nil && first == nil {
			first = err
			cancel()
		}
	}
	return first
}

// runWait polls ADDR with connects until one succeeds, the deadline passes,
// or the process that should be listening there has exited.
func runWait(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("wait", flag.ContinueOnError)
	fs.SetOutput(stderr)
	timeout := fs.Duration("timeout", 10*time.Second, "give up after this long")
	pid := fs.Int("pid", 0, "give up at once if this process has exited (0: don't watch)")
	udp := fs.Bool("udp", false, "send datagrams until one comes back, instead of connecting")
	pos, err := parse(fs, args, 1, "[flags] ADDR")
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	if *udp {
		return waitUDP(ctx, pos[0], *pid)
	}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		d := net.Dialer{Timeout: time.Second}
		c, err := d.DialContext(ctx, "tcp", pos[0])
		if err == nil {
			return c.Close()
		}
		if *pid > 0 && !alive(*pid) {
			return fmt.Errorf("process %d exited before %s accepted a connection", *pid, pos[0])
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s accepted no connection within %v: %v", pos[0], *timeout, err)
		case <-tick.C:
		}
	}
}

// alive reports whether pid is a running process (not gone, not a zombie).
func alive(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(stat)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || !strings.HasPrefix(s[i+1:], " Z")
}

// runLoad runs bulk, cps or rr on every COLUMN=ADDR target, taking turns,
// and prints one result line per target. It fails if any target failed.
func runLoad(ctx context.Context, test string, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet(test, flag.ContinueOnError)
	fs.SetOutput(stderr)
	rounds := fs.Int("rounds", 5, "turns each target takes, so drift spreads over all of them")
	var (
		streams, mib, workers, clients *int
		maxOps                         *int64
		dur                            *time.Duration
		resume                         *bool
		hsTest                         *string
		tlsCerts                       *string
		pids                           = columnPIDs{}
		hellos                         = columnHellos{}
	)
	switch test {
	case "bulk":
		streams = fs.Int("streams", 4, "parallel connections")
		mib = fs.Int("mib", 256, "MiB sent and read back per stream, over all rounds")
	case "cps":
		workers = fs.Int("workers", 32, "concurrent workers")
		dur = fs.Duration("duration", 10*time.Second, "per target, over all rounds")
	case "rr":
		clients = fs.Int("clients", 1, "persistent connections, one request in flight each")
		dur = fs.Duration("duration", 10*time.Second, "per target, over all rounds")
		maxOps = fs.Int64("max-ops", 0, "most requests per client in each round (0: 10 million); with a long -duration, a fixed count")
	case "hs":
		workers = fs.Int("workers", 32, "concurrent workers")
		dur = fs.Duration("duration", 10*time.Second, "per target, over all rounds")
		resume = fs.Bool("resume", false, "resume sessions (TLS 1.3 tickets) and count only the handshakes that did")
		hsTest = fs.String("test", "hs", "the test name of the result lines (hs-ecdsa, hs-rsa, hs-resume)")
	}
	if test != "cps" {
		tlsCerts = fs.String("tls", "", "`CERTFILE,...`: speak TLS to every target, accepting exactly these server certificates (hs: required)")
	}
	if test != "bulk" {
		fs.Var(pids, "pid", "`COLUMN=PID`: read the CPU time of that column's proxy and its children around every round (repeatable)")
		fs.Var(hellos, "hello", "`COLUMN=SERVERNAME`: send a TLS ClientHello for SERVERNAME first on each of that column's connections, and read its echo back (repeatable)")
	}
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: pierbench %s [flags] COLUMN=ADDR...\n", test)
		fs.PrintDefaults()
	}
	err := fs.Parse(args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	var clientTLS *tls.Config
	if tlsCerts != nil && *tlsCerts != "" {
		if clientTLS, err = bench.ClientTLS(strings.Split(*tlsCerts, ",")...); err != nil {
			return err
		}
	} else if test == "hs" {
		fmt.Fprintf(stderr, "pierbench hs: -tls is required\n")
		return errUsage
	}
	var targets []bench.Target
	for _, a := range fs.Args() {
		col, addr, ok := strings.Cut(a, "=")
		if !ok || col == "" || addr == "" {
			fs.Usage()
			return errUsage
		}
		tg := bench.Target{Column: col, Addr: addr, PID: pids[col], TLS: clientTLS}
		if name, ok := hellos[col]; ok {
			if tg.Hello, err = bench.ClientHello(name); err != nil {
				return err
			}
		}
		targets = append(targets, tg)
		delete(pids, col)
		delete(hellos, col)
	}
	if len(targets) == 0 {
		fs.Usage()
		return errUsage
	}
	if len(pids) > 0 {
		fmt.Fprintf(stderr, "pierbench %s: -pid %s: no such target\n", test, pids)
		return errUsage
	}
	if len(hellos) > 0 {
		fmt.Fprintf(stderr, "pierbench %s: -hello %s: no such target\n", test, hellos)
		return errUsage
	}
	var results []bench.Result
	switch test {
	case "bulk":
		results = bench.Bulk(ctx, bench.BulkConfig{Streams: *streams, Bytes: int64(*mib) << 20, Rounds: *rounds}, targets)
	case "cps":
		results = bench.CPS(ctx, bench.CPSConfig{Workers: *workers, Duration: *dur, Rounds: *rounds}, targets)
	case "rr":
		results = bench.RR(ctx, bench.RRConfig{Clients: *clients, Duration: *dur, Rounds: *rounds, MaxOps: *maxOps}, targets)
	case "hs":
		results = bench.Handshakes(ctx, bench.HandshakeConfig{Test: *hsTest, Workers: *workers, Duration: *dur, Rounds: *rounds, Resume: *resume}, targets)
	}
	var failed []string
	for _, r := range results {
		if err := r.WriteJSON(stdout); err != nil {
			return err
		}
		if r.Error != "" {
			failed = append(failed, r.Column+": "+r.Error)
		}
	}
	if len(failed) > 0 {
		return errors.New(strings.Join(failed, "; "))
	}
	return nil
}

// columnPIDs is the -pid flag of cps and rr: each column's proxy process.
type columnPIDs map[string]int

func (m columnPIDs) String() string {
	parts := make([]string, 0, len(m))
	for col, pid := range m {
		parts = append(parts, fmt.Sprintf("%s=%d", col, pid))
	}
	return strings.Join(parts, ",")
}

func (m columnPIDs) Set(v string) error {
	col, p, ok := strings.Cut(v, "=")
	pid, err := strconv.Atoi(p)
	if !ok || col == "" || err != nil || pid <= 0 {
		return fmt.Errorf("%q: want COLUMN=PID", v)
	}
	m[col] = pid
	return nil
}

// columnHellos is the -hello flag of cps and rr: the server name each
// column's ClientHello asks for.
type columnHellos map[string]string

func (m columnHellos) String() string {
	parts := make([]string, 0, len(m))
	for col, name := range m {
		parts = append(parts, col+"="+name)
	}
	return strings.Join(parts, ",")
}

func (m columnHellos) Set(v string) error {
	col, name, ok := strings.Cut(v, "=")
	if !ok || col == "" || name == "" {
		return fmt.Errorf("%q: want COLUMN=SERVERNAME", v)
	}
	m[col] = name
	return nil
}

// runIdle measures one proxy process with Idle and prints its result line.
func runIdle(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("idle", flag.ContinueOnError)
	fs.SetOutput(stderr)
	column := fs.String("column", "", "column name the result is for")
	conns := fs.Int("conns", 3000, "connections to hold open")
	pid := fs.Int("pid", 0, "proxy process to measure, with its children")
	tlsCerts := fs.String("tls", "", "`CERTFILE,...`: TLS sessions, accepting exactly these server certificates")
	pos, err := parse(fs, args, 1, "[flags] ADDR")
	if err != nil {
		return err
	}
	cfg := bench.IdleConfig{Addr: pos[0], Conns: *conns, PID: *pid}
	if *tlsCerts != "" {
		if cfg.TLS, err = bench.ClientTLS(strings.Split(*tlsCerts, ",")...); err != nil {
			return err
		}
	}
	res, err := bench.Idle(ctx, cfg)
	res.Column = *column
	if err != nil {
		res.Error = err.Error()
	}
	if werr := res.WriteJSON(stdout); werr != nil {
		return werr
	}
	return err
}

func runFail(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("fail", flag.ContinueOnError)
	fs.SetOutput(stderr)
	column := fs.String("column", "", "column name")
	test := fs.String("test", "*", "bulk, cps, rr, idle, or * for the whole column")
	clients := fs.Int("clients", 0, "rr: the client count of the row")
	skip := fs.Bool("skip", false, "the test was skipped rather than failed")
	pos, err := parse(fs, args, 1, "[flags] MESSAGE")
	if err != nil {
		return err
	}
	res := bench.Result{Column: *column, Test: *test, Workers: *clients}
	if *skip {
		res.Skipped = pos[0]
	} else {
		res.Error = pos[0]
	}
	return res.WriteJSON(stdout)
}

func runReport(cmd string, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	def := "direct,pier,gocopy,haproxy,nginx"
	switch cmd {
	case "tlsreport":
		def = "direct-tls,pier-tls,haproxy,nginx,stunnel,pier"
	case "udpreport":
		def = "direct,pier,nginx,socat"
	}
	columns := fs.String("columns", def, "columns in order, comma-separated")
	pos, err := parse(fs, args, 1, "[flags] RESULTS.jsonl")
	if err != nil {
		return err
	}
	f, err := os.Open(pos[0])
	if err != nil {
		return err
	}
	defer f.Close()
	results, err := bench.ReadResults(f)
	if err != nil {
		return err
	}
	switch cmd {
	case "tlsreport":
		return bench.TLSReport(stdout, results, strings.Split(*columns, ","))
	case "udpreport":
		return bench.UDPReport(stdout, results, strings.Split(*columns, ","))
	}
	return bench.Report(stdout, results, strings.Split(*columns, ","))
}

// runPorts prints n distinct ports that 127.0.0.1 has free now: it holds
// all n listeners open at once so the kernel hands out different ones.
func runPorts(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("ports", flag.ContinueOnError)
	fs.SetOutput(stderr)
	udp := fs.Bool("udp", false, "UDP ports instead of TCP")
	pos, err := parse(fs, args, 1, "[-udp] N")
	if err != nil {
		return err
	}
	n, err := strconv.Atoi(pos[0])
	if err != nil || n < 1 || n > 100 {
		return fmt.Errorf("%q: want a count from 1 to 100", pos[0])
	}
	var ports []string
	for range n {
		if *udp {
			c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			if err != nil {
				return err
			}
			defer c.Close()
			ports = append(ports, strconv.Itoa(c.LocalAddr().(*net.UDPAddr).Port))
			continue
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		defer ln.Close()
		ports = append(ports, strconv.Itoa(ln.Addr().(*net.TCPAddr).Port))
	}
	_, err = fmt.Fprintln(stdout, strings.Join(ports, " "))
	return err
}

// runPids prints a process and all its descendants, one pid a line.
func runPids(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("pids", flag.ContinueOnError)
	fs.SetOutput(stderr)
	pos, err := parse(fs, args, 1, "PID")
	if err != nil {
		return err
	}
	pid, err := strconv.Atoi(pos[0])
	if err != nil {
		return fmt.Errorf("%q is not a pid", pos[0])
	}
	pids, err := bench.Descendants(pid)
	if err != nil {
		return err
	}
	for _, p := range pids {
		fmt.Fprintln(stdout, p)
	}
	return nil
}

// runSyscalls prints the "syscalls" result line of a column: the summary
// strace -c wrote to STRACE while the proxy served the rr load whose
// result line (for that column) is in the -rr file.
func runSyscalls(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("syscalls", flag.ContinueOnError)
	fs.SetOutput(stderr)
	column := fs.String("column", "", "column name")
	rrFile := fs.String("rr", "", "the results file of the rr load strace watched")
	pos, err := parse(fs, args, 1, "-column C -rr RESULTS.jsonl STRACE-SUMMARY")
	if err != nil {
		return err
	}
	if *column == "" || *rrFile == "" {
		fs.Usage()
		return errUsage
	}
	rr := bench.Result{Column: *column, Test: "rr", Error: "no rr result for the column in " + *rrFile}
	if f, err := os.Open(*rrFile); err == nil {
		results, err := bench.ReadResults(f)
		f.Close()
		if err != nil {
			rr.Error = err.Error()
		}
		for _, r := range results {
			if r.Column == *column && r.Test == "rr" {
				rr = r
			}
		}
	} else {
		rr.Error = err.Error()
	}
	var res bench.Result
	if f, err := os.Open(pos[0]); err == nil {
		res = bench.SyscallResult(*column, rr, f)
		f.Close()
	} else {
		res = bench.Result{Column: *column, Test: "syscalls", Error: err.Error()}
	}
	if err := res.WriteJSON(stdout); err != nil {
		return err
	}
	if res.Error != "" {
		return errors.New(res.Error)
	}
	return nil
}

// runHog keeps -procs CPUs busy until it is interrupted or terminated.
func runHog(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("hog", flag.ContinueOnError)
	fs.SetOutput(stderr)
	procs := fs.Int("procs", runtime.NumCPU(), "busy goroutines, one per CPU to keep busy")
	if _, err := parse(fs, args, 0, "[-procs N]"); err != nil {
		return err
	}
	if *procs < 1 || *procs > 1024 {
		return fmt.Errorf("-procs %d: want 1 to 1024", *procs)
	}
	if runtime.GOMAXPROCS(0) < *procs {
		runtime.GOMAXPROCS(*procs)
	}
	bench.Hog(ctx, *procs)
	return nil
}

// runTLSCerts writes bench/tls's certificates into DIR (bench.WriteCerts).
func runTLSCerts(args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("tlscerts", flag.ContinueOnError)
	fs.SetOutput(stderr)
	pos, err := parse(fs, args, 1, "DIR")
	if err != nil {
		return err
	}
	_, err = bench.WriteCerts(pos[0])
	return err
}

// runTLSEcho serves a TLS echo on each ADDR with its CERT and KEY, until
// interrupted: direct-tls, one process for its ECDSA and RSA listeners.
func runTLSEcho(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("tlsecho", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprintln(stderr, "Usage: pierbench tlsecho CERT KEY ADDR [CERT KEY ADDR]...") }
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	pos := fs.Args()
	if len(pos) == 0 || len(pos)%3 != 0 {
		fs.Usage()
		return errUsage
	}
	type server struct {
		ln   net.Listener
		cert tls.Certificate
	}
	var servers []server
	defer func() {
		for _, s := range servers {
			s.ln.Close()
		}
	}()
	for i := 0; i < len(pos); i += 3 {
		cert, err := tls.LoadX509KeyPair(pos[i], pos[i+1])
		if err != nil {
			return err
		}
		ln, err := net.Listen("tcp", pos[i+2])
		if err != nil {
			return err
		}
		servers = append(servers, server{ln, cert})
	}
	// One failing ends them all: the rest are stopped and waited for.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make(chan error, len(servers))
	for _, s := range servers {
		go func() { errs <- bench.TLSEcho(ctx, s.ln, s.cert) }()
	}
	var first error
	for range servers {
		if err := <-errs; err != nil && first == nil {
			first = err
			cancel()
		}
	}
	return first
}
