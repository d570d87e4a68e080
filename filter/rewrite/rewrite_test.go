package rewrite

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pierproxy/pier/filter"
	"github.com/pierproxy/pier/filter/filtertest"
	"github.com/pierproxy/pier/internal/chain"
)

// options builds a rewrite's options from key, value pairs.
func options(kv ...string) *filter.Options {
	vals := map[string]filter.Value{}
	for i := 0; i+1 < len(kv); i += 2 {
		vals[kv[i]] = filter.Value{Text: kv[i+1]}
	}
	return filter.NewOptions("rewrite", vals, 0, 0)
}

func mustNew(t testing.TB, kv ...string) *rewriter {
	t.Helper()
	f, err := New(options(kv...))
	if err != nil {
		t.Fatalf("New(%q): %v", kv, err)
	}
	return f.(*rewriter)
}

// wholeStream is the promise: the replacement run over the whole stream at
// once, by the standard library, from the options as written.
func wholeStream(kv []string, in []byte) []byte {
	o := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		o[kv[i]] = kv[i+1]
	}
	if m, ok := o["match"]; ok {
		return bytes.ReplaceAll(in, []byte(m), []byte(o["replace"]))
	}
	return regexp.MustCompile(o["regexp"]).ReplaceAll(in, []byte(o["replace"]))
}

// feed runs in through a fresh stream of f in the given chunks, then the
// end, checking after every call that the stream holds no more than its
// tail, and returns what it forwarded.
func feed(t testing.TB, f *rewriter, chunks ...[]byte) []byte {
	t.Helper()
	d := filtertest.New(&stream{f: f})
	for _, c := range chunks {
		if err := d.Write(c); err != nil {
			t.Fatalf("Write: %v", err)
		}
		if len(d.In) > f.tail {
			t.Fatalf("holds %d bytes after a read, more than its tail of %d", len(d.In), f.tail)
		}
	}
	if err := d.CloseWrite(); err != nil {
		t.Fatalf("CloseWrite: %v", err)
	}
	if !d.Finished {
		t.Fatalf("not finished at EOF: %d bytes held, wake %v", len(d.In), d.Wake)
	}
	return d.Out
}

// narrow returns a copy of f that searches in the smallest windows that
// still make progress, so that short test inputs cross window edges too.
func narrow(f *rewriter) *rewriter {
	g := *f
	if g.lit == nil {
		g.window = g.span + 8
	}
	return &g
}

func TestRegistered(t *testing.T) {
	spec, ok := filter.Lookup("rewrite")
	if !ok {
		t.Fatal("rewrite is not registered")
	}
	if spec.FlagKey != "" || spec.Short == "" || strings.Contains(spec.Short, "\n") {
		t.Errorf("FlagKey %q, Short %q; want no FlagKey (the flag takes a list) and a one-line description", spec.FlagKey, spec.Short)
	}
	if _, err := spec.New(options("match", "a", "replace", "b")); err != nil {
		t.Errorf("the registered factory: %v", err)
	}
}

var splitCases = []struct {
	name   string
	opts   []string
	inputs []string
}{
	{"literal", []string{"match", "foo", "replace", "bar"},
		[]string{"", "foo", "xfoo", "foox", "fofoo", "foofoo", "ffoooo", "fo", "f", "oof", "a foo b foo c fo"}},
	{"literal overlapping candidates", []string{"match", "aa", "replace", "b"},
		[]string{"a", "aa", "aaa", "aaaaa", "baaab"}},
	{"literal self-overlapping", []string{"match", "abab", "replace", "X"},
		[]string{"abababab", "ababab", "aababababb"}},
	{"literal longer replacement", []string{"match", "a", "replace", "xyz"},
		[]string{"a", "banana", "aaa"}},
	{"literal shorter replacement", []string{"match", "abc", "replace", "z"},
		[]string{"abcabc", "ababcc", "xabcabx"}},
	{"literal deleted", []string{"match", "--", "replace", ""},
		[]string{"a--b---c----", "--", "-"}},
	{"regexp", []string{"regexp", "user=[a-z]{1,8}", "replace", "user=X"},
		[]string{"user=bob;user=alice", "user=abcdefghij", "user=", "xuser=auser=b"}},
	{"regexp groups", []string{"regexp", `(\w{1,5})@(\w{1,5})`, "replace", "${2} at $1"},
		[]string{"bob@host", "a@b c@d", "@@x@y@", "toolong@names"}},
	{"regexp named groups and $$", []string{"regexp", `(?P<k>[a-z]{1,4})=(?P<v>\d{1,4})`, "replace", "$v=${k}$$"},
		[]string{"a=1&bb=22&ccccc=3", "=1", "a="}},
	{"greedy", []string{"regexp", "a{1,5}", "replace", "X"},
		[]string{"aaaaaaaaaaaa", "abaab", "a"}},
	{"first alternative short", []string{"regexp", "ab|abcd", "replace", "X"},
		[]string{"abcd", "abcabcd", "ab"}},
	{"first alternative long", []string{"regexp", "abcd|ab", "replace", "X"},
		[]string{"abcd", "abcabcd", "ababcdab"}},
	{"word boundaries", []string{"regexp", `\bcat\b`, "replace", "dog"},
		[]string{"cat concat cat, cats cat", "cat", "xcat", "catx", "(cat)"}},
	{"not a word boundary", []string{"regexp", `\Bat`, "replace", "AT"},
		[]string{"at cat at", "atat"}},
	{"start of stream", []string{"regexp", "^ab", "replace", "X"},
		[]string{"abab", "xab", "ab"}},
	{"end of stream", []string{"regexp", "ab$", "replace", "X"},
		[]string{"abab", "abx", "ab"}},
	{"line starts and ends", []string{"regexp", "(?m)^x|y$", "replace", "_"},
		[]string{"x\nx\nyx\ny\n", "xyxy", "\nx"}},
	{"unicode", []string{"regexp", "é{1,3}", "replace", "e"},
		[]string{"ééé é", "éééé", "aé"}},
	{"any character", []string{"regexp", ".{2}", "replace", "<$0>"},
		[]string{"a€b€€", "€\xff€", "\xe2\x82", "ab\xe2\x82\xac"}},
	{"invalid bytes", []string{"regexp", "[^a]", "replace", "."},
		[]string{"a\xffa\xe2\x82a", "€a€"}},
	{"replacement character", []string{"regexp", `\x{FFFD}`, "replace", "?"},
		// A read that splits € or 😀 must not show the regexp an invalid
		// byte, which \x{FFFD} would match.
		[]string{"x€€y", "x😀y", "\xff😀\xf0\x9f", "\xef\xbf\xbd€"}},
	{"fold case", []string{"regexp", "(?i)k{1,2}", "replace", "_"},
		[]string{"kK\u212a", "a\u212ak"}},
	{"unbounded within span", []string{"regexp", "a+", "max_span", "64", "replace", "X"},
		[]string{"aaabaaaaaa", "baaab"}},
}

// TestAnySplitEqualsWholeStream pins the promise: however the stream is
// cut into reads, the output is the whole-stream replacement. It tries
// every cut, every pair of cuts for short inputs, and one byte at a time,
// with whole and with the narrowest search windows.
func TestAnySplitEqualsWholeStream(t *testing.T) {
	for _, tc := range splitCases {
		t.Run(tc.name, func(t *testing.T) {
			f := mustNew(t, tc.opts...)
			for _, g := range []*rewriter{f, narrow(f)} {
				for _, s := range tc.inputs {
					in := []byte(s)
					want := wholeStream(tc.opts, in)
					check := func(how string, chunks ...[]byte) {
						t.Helper()
						if got := feed(t, g, chunks...); !bytes.Equal(got, want) {
							t.Fatalf("%q cut %s: got %q, want %q", in, how, got, want)
						}
					}
					check("nowhere", in)
					bytewise := make([][]byte, len(in))
					for i := range in {
						bytewise[i] = in[i : i+1]
					}
					check("into bytes", bytewise...)
					for i := 0; i <= len(in); i++ {
						check(fmt.Sprintf("at %d", i), in[:i], in[i:])
						if len(in) > 24 {
							continue
						}
						for j := i; j <= len(in); j++ {
							check(fmt.Sprintf("at %d and %d", i, j), in[:i], in[i:j], in[j:])
						}
					}
				}
			}
		})
	}
}

// TestLongInputsEqualWholeStream runs inputs many windows long, in reads
// of several sizes, so searches start and stop at window edges.
func TestLongInputsEqualWholeStream(t *testing.T) {
	var sb strings.Builder
	for i := range 1500 {
		fmt.Fprintf(&sb, "user=%s€ cat %d\n", strings.Repeat("ab", i%7), i)
	}
	in := []byte(sb.String())
	for _, opts := range [][]string{
		{"match", "cat", "replace", "dog"},
		{"regexp", `user=([a-z]{1,12})`, "replace", "u=$1"},
		{"regexp", `\bcat\b|(?m)^user|\d$`, "replace", "#"},
		{"regexp", `.{1,3}€`, "replace", ""},
	} {
		want := wholeStream(opts, in)
		f := mustNew(t, opts...)
		for _, g := range []*rewriter{f, narrow(f)} {
			for _, size := range []int{3, 100, 4096, 32 << 10, len(in)} {
				var chunks [][]byte
				for p := 0; p < len(in); p += size {
					chunks = append(chunks, in[p:min(p+size, len(in))])
				}
				if got := feed(t, g, chunks...); !bytes.Equal(got, want) {
					t.Fatalf("%q in reads of %d (window %d): output differs from the whole-stream replacement", opts, size, g.window)
				}
			}
		}
	}
}

// TestForwardsAllButTheTail checks that bytes no match can begin at go
// out at once, not at the end of the stream: only span-1 bytes are held,
// plus, for \b, the byte after a match and the byte before the next.
func TestForwardsAllButTheTail(t *testing.T) {
	for _, tc := range []struct {
		opts      []string
		held, ctx int // ctx: held bytes already forwarded
	}{
		{[]string{"match", "needle"}, 6 - 1, 0},
		{[]string{"regexp", "needle[0-9]{1,4}"}, 10 - 1, 0},
		{[]string{"regexp", `\bneedle\b`}, 6 - 1 + 1 + 1, 1},
	} {
		f := mustNew(t, tc.opts...)
		d := filtertest.New(&stream{f: f})
		in := bytes.Repeat([]byte("hay "), 10000)
		if err := d.Write(in); err != nil {
			t.Fatal(err)
		}
		if len(d.In) != tc.held {
			t.Errorf("%q: holds %d bytes, want %d", tc.opts, len(d.In), tc.held)
		}
		if want := in[:len(in)-tc.held+tc.ctx]; !bytes.Equal(d.Out, want) {
			t.Errorf("%q: forwarded %d of %d bytes before the end, want %d", tc.opts, len(d.Out), len(in), len(want))
		}
	}
}

// TestEOFFlushesThePartialMatch checks that bytes held as the possible
// start of a match are forwarded as they are when the stream ends.
func TestEOFFlushesThePartialMatch(t *testing.T) {
	for _, opts := range [][]string{
		{"match", "foobar", "replace", "X"},
		{"regexp", "foo(bar){1,3}", "replace", "X"},
	} {
		f := mustNew(t, opts...)
		d := filtertest.New(&stream{f: f})
		if err := d.Write([]byte("xx foob")); err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(d.Out, []byte("foob")) {
			t.Fatalf("%q: forwarded %q before it could tell foob from foobar", opts, d.Out)
		}
		if err := d.CloseWrite(); err != nil {
			t.Fatal(err)
		}
		if !d.Finished || string(d.Out) != "xx foob" {
			t.Fatalf("%q: at EOF got %q (finished %v), want %q", opts, d.Out, d.Finished, "xx foob")
		}
	}
}

// TestMatchLongerThanSpanIsCut pins what max_span gives up: a run longer
// than the span, arriving in small reads, becomes several matches, while
// the same run in one read is one.
func TestMatchLongerThanSpanIsCut(t *testing.T) {
	f := mustNew(t, "regexp", "a+", "max_span", "4", "replace", "X")
	run := []byte(strings.Repeat("a", 20) + "b")
	if got := feed(t, f, run); string(got) != "Xb" {
		t.Errorf("in one read: got %q, want %q", got, "Xb")
	}
	var bytewise [][]byte
	for i := range run {
		bytewise = append(bytewise, run[i:i+1])
	}
	got := string(feed(t, f, bytewise...))
	if strings.Trim(got, "X") != "b" || strings.Count(got, "X") < 2 {
		t.Errorf("a byte at a time: got %q, want the run cut into several X", got)
	}
}

// TestUnboundedExactWhileMatchesFit pins the package doc's promise for a
// regexp without a bound and without $ or \b: exact for every stream
// whose whole-stream matches are all at most max_span bytes.
func TestUnboundedExactWhileMatchesFit(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, expr := range []string{`a+b?`, `[ab]+c|a`, `(a|ab)+`, `b(a*)b`, `(?m)^a+`, `\ba+`} {
		opts := []string{"regexp", expr, "max_span", "6", "replace", "<$0>"}
		f := mustNew(t, opts...)
		re := regexp.MustCompile(expr)
		tried := 0
		for range 400 {
			in := make([]byte, rng.IntN(14))
			for i := range in {
				in[i] = "aabc\n "[rng.IntN(6)]
			}
			fits := true
			for _, m := range re.FindAllIndex(in, -1) {
				fits = fits && m[1]-m[0] <= f.span
			}
			if !fits {
				continue
			}
			tried++
			want := wholeStream(opts, in)
			for i := 0; i <= len(in); i++ {
				for j := i; j <= len(in); j++ {
					if got := feed(t, f, in[:i], in[i:j], in[j:]); !bytes.Equal(got, want) {
						t.Fatalf("%s on %q cut at %d and %d: got %q, want %q", expr, in, i, j, got, want)
					}
				}
			}
		}
		if tried < 100 {
			t.Errorf("%s: only %d inputs whose matches fit", expr, tried)
		}
	}
}

func TestOptionErrors(t *testing.T) {
	for _, tc := range []struct {
		opts []string
		want string
	}{
		{[]string{"match", "a", "regexp", "a"}, "rewrite: regexp: give match (a literal) or regexp, not both"},
		{[]string{"replace", "x"}, "rewrite: give match (a literal) or regexp (a regular expression) to replace"},
		{[]string{"match", ""}, "rewrite: match: is empty"},
		{[]string{"match", "abc", "max_span", "10"}, "rewrite: max_span: is for regexp only"},
		{[]string{"regexp", "a("}, "rewrite: regexp: error parsing regexp: missing closing ): `a(`"},
		{[]string{"regexp", "a*"}, `rewrite: regexp: "a*" can match the empty string`},
		{[]string{"regexp", `\b`}, `rewrite: regexp: "\\b" can match the empty string`},
		{[]string{"regexp", "(x|y?)"}, `can match the empty string`},
		{[]string{"regexp", "a+", "max_span", "0"}, `rewrite: max_span: "0" is not a size from 1 to 1048576 bytes`},
		{[]string{"regexp", "a+", "max_span", "2MiB"}, `rewrite: max_span: "2MiB" is not a size from 1 to 1048576`},
		{[]string{"regexp", "(a)", "replace", "$2"}, "rewrite: replace: $2 refers to group 2, but the regexp has 1"},
		{[]string{"regexp", "(a)", "replace", "$1x"}, `rewrite: replace: $1x refers to no group named "1x" (write ${1}x`},
		{[]string{"regexp", "(?P<k>a)", "replace", "${v}"}, `$v refers to no group named "v"`},
		{[]string{"match", "a", "direction", "sideways"}, `rewrite: direction: "sideways" is not one of upstream, client, both`},
		{[]string{"match", "a", "count", "2"}, "rewrite: count: unknown option"},
	} {
		f, err := New(options(tc.opts...))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%q) = %v, want an error containing %q", tc.opts, err, tc.want)
		}
		var oe filter.OptionErrors
		if err != nil && !errors.As(err, &oe) {
			t.Errorf("New(%q): error is a %T, want filter.OptionErrors", tc.opts, err)
		}
		if f != nil {
			t.Errorf("New(%q) returned a filter with its error", tc.opts)
		}
	}
}

// TestSpan checks max_span's default and that a regexp's own bound,
// when shorter, is what is held.
func TestSpan(t *testing.T) {
	for _, tc := range []struct {
		opts []string
		span int
	}{
		{[]string{"match", "hello"}, 5},
		{[]string{"regexp", "a{1,10}"}, 10},
		{[]string{"regexp", "a{1,10}", "max_span", "100"}, 10},
		{[]string{"regexp", "a{1,10}", "max_span", "3"}, 3},
		{[]string{"regexp", "a+"}, defaultSpan},
		{[]string{"regexp", "a+", "max_span", "1KiB"}, 1024},
		{[]string{"regexp", "[a-z]{1000}"}, 1000},
		{[]string{"regexp", "(?s).{1000}"}, 4000},
		{[]string{"regexp", "(?s).{1000}.{100}"}, defaultSpan},
		{[]string{"regexp", "(?i)k"}, 3}, // the Kelvin sign is 3 bytes
		{[]string{"regexp", `[\x{10000}-\x{10FFFF}]`}, 4},
		{[]string{"regexp", "(ab|c)(d|efg)?"}, 5},
	} {
		f := mustNew(t, tc.opts...)
		if f.span != tc.span {
			t.Errorf("%q: span %d, want %d", tc.opts, f.span, tc.span)
		}
		if h := (&stream{f: f}).HoldLimit(); h < f.tail+filter.DefaultHold {
			t.Errorf("%q: hold limit %d leaves no room for a read after a tail of %d", tc.opts, h, f.tail)
		}
	}
}

func TestDirections(t *testing.T) {
	for _, tc := range []struct {
		dir      string
		up, down bool
	}{
		{"", true, true},
		{"both", true, true},
		{"upstream", true, false},
		{"client", false, true},
	} {
		opts := []string{"match", "a"}
		if tc.dir != "" {
			opts = append(opts, "direction", tc.dir)
		}
		up, down := mustNew(t, opts...).Streams(&filter.Session{})
		if (up != nil) != tc.up || (down != nil) != tc.down {
			t.Errorf("direction %q: streams (%v, %v), want (%v, %v)", tc.dir, up != nil, down != nil, tc.up, tc.down)
		}
		if up != nil && up == down {
			t.Errorf("direction %q: both directions share one matcher", tc.dir)
		}
	}
}

// TestStreamsKeepTheirOwnState checks that two streams of one filter,
// each holding half a match, do not mix.
func TestStreamsKeepTheirOwnState(t *testing.T) {
	f := mustNew(t, "regexp", `\bab\b`, "replace", "X")
	up, down := f.Streams(&filter.Session{})
	du, dd := filtertest.New(up), filtertest.New(down)
	for _, step := range []struct {
		d *filtertest.Driver
		p string
	}{{du, "x a"}, {dd, "a"}, {du, "b "}, {dd, "b"}} {
		if err := step.d.Write([]byte(step.p)); err != nil {
			t.Fatal(err)
		}
	}
	if err := errors.Join(du.CloseWrite(), dd.CloseWrite()); err != nil {
		t.Fatal(err)
	}
	if string(du.Out) != "x X " || string(dd.Out) != "X" {
		t.Fatalf("got %q and %q, want %q and %q", du.Out, dd.Out, "x X ", "X")
	}
}

// TestThroughChain runs a large stream through pier's filter chain with
// the longest max_span, reading whatever room the chain offers, to check
// that the hold limit always leaves room for the next read.
func TestThroughChain(t *testing.T) {
	opts := []string{"regexp", `key=[0-9a-f]+;`, "max_span", "1MiB", "replace", "key=*;"}
	f := mustNew(t, opts...)
	var sb strings.Builder
	for i := range 40000 {
		fmt.Fprintf(&sb, "key=%x; ", i*7919)
	}
	src := []byte(sb.String())
	want := wholeStream(opts, src)

	up, _ := f.Streams(&filter.Session{})
	c := chain.New(&filter.Session{}, filter.ToUpstream, []chain.Stage{{Name: "rewrite", Stream: up}})
	defer c.Close(nil)
	var got []byte
	now, rest, closed := filtertest.Epoch, src, false
	for steps := 0; !c.Done(); steps++ {
		if steps > 1e5 {
			t.Fatalf("no end after %d steps: %d of %d bytes read, %d out", steps, len(src)-len(rest), len(src), len(got))
		}
		moved := false
		if space := c.ReadSpace(); space != nil && len(rest) > 0 {
			n := copy(space, rest)
			rest = rest[n:]
			c.Fill(n)
			moved = true
		} else if len(rest) == 0 && !closed {
			c.CloseInput()
			closed, moved = true, true
		}
		progress, err := c.Run(now)
		if err != nil {
			t.Fatal(err)
		}
		if out := c.Out(); len(out) > 0 {
			got = append(got, out...)
			c.Sent(len(out))
			moved = true
		}
		if !moved && !progress {
			t.Fatalf("stalled: %d bytes read, %d held, %d out", len(src)-len(rest), c.Held(), len(got))
		}
		now = now.Add(time.Millisecond)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("through the chain: %d bytes out, want %d, equal to the whole-stream replacement", len(got), len(want))
	}
}

// raceEnabled is set under the race detector (race_test.go).
var raceEnabled bool

// TestSteadyStateDoesNotAllocate checks that a call that finds no match,
// or only literal ones, allocates nothing.
func TestSteadyStateDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under the race detector")
	}
	chunk := bytes.Repeat([]byte("some ordinary bytes, nothing to see "), 1000)
	withLit := bytes.ReplaceAll(chunk, []byte("nothing"), []byte("needle!"))
	for _, tc := range []struct {
		opts []string
		in   []byte
	}{
		{[]string{"match", "needle", "replace", "pin"}, chunk},
		{[]string{"match", "needle", "replace", "pin"}, withLit},
		{[]string{"regexp", `needle[0-9]{1,4}`, "replace", "pin"}, chunk},
		{[]string{"regexp", `\bneedle\b`, "replace", "pin"}, chunk},
	} {
		s := &stream{f: mustNew(t, tc.opts...)}
		var b filter.Batch
		out := make([]byte, 0, 2*len(tc.in))
		allocs := testing.AllocsPerRun(20, func() {
			b.Reset(tc.in, out, false, filtertest.Epoch)
			if err := s.Process(&b); err != nil {
				t.Fatal(err)
			}
		})
		if allocs != 0 {
			t.Errorf("%q: %v allocations per call, want 0", tc.opts, allocs)
		}
	}
}

func BenchmarkRewrite32KiB(b *testing.B) {
	var sb strings.Builder
	for sb.Len() < 1<<20 {
		fmt.Fprintf(&sb, "GET /users/%d?session=abc%d HTTP/1.1\r\nHost: example.com\r\n\r\n", sb.Len(), sb.Len()%977)
	}
	data := []byte(sb.String())
	for _, bc := range []struct {
		name string
		opts []string
	}{
		{"literal", []string{"match", "example.com", "replace", "example.org"}},
		{"literal-none", []string{"match", "nowhere to be found", "replace", "x"}},
		{"regexp", []string{"regexp", `session=[a-z0-9]{1,32}`, "replace", "session=X"}},
		{"regexp-expand", []string{"regexp", `session=([a-z]{1,8})(\d{1,8})`, "replace", "s=$2$1"}},
		{"regexp-unbounded", []string{"regexp", `Host: [a-z.]+`, "replace", "Host: x"}},
		{"regexp-wordboundary", []string{"regexp", `\bHTTP/1\.1\b`, "replace", "HTTP/1.0"}},
		{"regexp-none", []string{"regexp", `zz[0-9]{1,8}`, "replace", "x"}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			f := mustNew(b, bc.opts...)
			s := &stream{f: f}
			var batch filter.Batch
			const chunk = 32 << 10
			in := make([]byte, 0, chunk+f.tail+chunk)
			out := make([]byte, 0, 4*chunk)
			b.SetBytes(chunk)
			b.ReportAllocs()
			p := 0
			for b.Loop() {
				if p+chunk > len(data) {
					p = 0
				}
				in = append(in, data[p:p+chunk]...)
				p += chunk
				batch.Reset(in, out[:0], false, filtertest.Epoch)
				if err := s.Process(&batch); err != nil {
					b.Fatal(err)
				}
				in = append(in[:0], batch.In...)
			}
		})
	}
}
