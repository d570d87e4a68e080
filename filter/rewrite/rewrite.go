// Package rewrite is the rewrite filter: it replaces a literal or a
// regular expression in the bytes of one or both directions of a session,
// with the same result as replacing over the whole stream at once, however
// the bytes happen to be split into reads.
//
//	routes:
//	  - name: db
//	    filters:
//	      - rewrite: {match: "FROM users", replace: "FROM users_test", direction: upstream}
//	      - rewrite: {regexp: 'user=([a-z]{1,32})', replace: 'user=${1}_test'}
//
// or from the command line, as a list of options (FlagKey is empty):
// match=foo,replace=bar.
//
// # What is replaced
//
// The output of a direction is exactly bytes.ReplaceAll (for match) or
// regexp.ReplaceAll (for regexp, with $1 and ${name} expanded as by
// regexp.Expand) applied to everything that direction sends, from its first
// byte to its end: matches are found leftmost first and do not overlap; ^
// and \A mean the start of the stream, $ and \z its end, (?m)^ and (?m)$
// line starts and ends, and \b and \B see the bytes on both sides of a
// read. A regexp is matched over UTF-8 as Go's regexp package does,
// invalid bytes included.
//
// That is exact whenever no match can be longer than max_span bytes:
// always for a literal (its span is its length), and for a regexp whose
// own bound fits (x{1,40}, not x+). max_span defaults to that bound when
// it is at most 4096 bytes, and to 4096 otherwise. For a regexp without a
// bound (user=[a-z]+) it stays exact as long as every match the
// whole-stream replacement makes is at most max_span bytes, and the
// regexp has no $, (?m)$, \b or \B. Past that the filter decides within
// max_span bytes of where a match begins: a longer run may be cut into
// several matches, a longer alternative passed over for a shorter one, or
// an end assertion taken to hold where more bytes were yet to come.
//
// A regexp that can match the empty string (a*, x?, \b alone) is refused:
// replacing "nothing" between bytes has no stable meaning across reads.
//
// # How
//
// Bytes that could still be the start of a match are held in Batch.In
// until enough follow to decide: at most max_span-1 for a literal, and at
// most max_span plus a few bytes for a regexp (one more when it looks past
// a match with $ or \b, up to six for a UTF-8 character split by a read, and
// one already forwarded byte kept so that ^ and \b can look behind).
// Everything before them is forwarded at once; at the end of the stream
// the rest is. The stream is a filter.Holder, allowing that tail plus
// filter.DefaultHold, so a full read always fits behind it.
package rewrite

import (
	"bytes"
	"regexp"
	"strings"
	"unicode/utf8"

	"github.com/pierproxy/pier/filter"
)

func init() {
	filter.Register(filter.Spec{
		Name:  "rewrite",
		New:   New,
		Short: "replace a literal or regexp in the bytes, as over the whole stream, across reads",
		Options: []filter.OptionDoc{
			{Name: "match", Kind: filter.KindString, Help: "the literal to replace (this or regexp)"},
			{Name: "regexp", Kind: filter.KindString, Help: "the regular expression to replace, Go syntax (this or match)"},
			{Name: "replace", Kind: filter.KindString, Help: "what to put instead, empty to delete; for a regexp $1 and ${name} expand, $$ is $"},
			{Name: "max_span", Kind: filter.KindSize, Help: "for a regexp, the longest match sure to be found whole, at most 1MiB (default: the regexp's own bound, else 4096)"},
			filter.DirectionOption(filter.Both, "which bytes to rewrite"),
		},
	})
}

const (
	// defaultSpan is max_span for a regexp with no bound of its own (or a
	// larger one): long enough for a header line or a query, short enough
	// that holding it back costs little.
	defaultSpan = 4096
	// maxSpan bounds max_span, and with it what a stream may hold.
	maxSpan = 1 << 20
)

// New makes a rewrite filter from its options:
//
//	match      the literal to replace (this or regexp)
//	regexp     the regular expression to replace, Go syntax (this or match)
//	replace    what to put in its place; for a regexp, $1 and ${name}
//	           are expanded and $$ is a '$' (default "": delete)
//	max_span   for a regexp, the longest match guaranteed to be found
//	           whole (default: the regexp's bound, at most 4096; at most
//	           1MiB)
//	direction  upstream, client or both (default both)
func New(o *filter.Options) (filter.Filter, error) {
	f := &rewriter{dir: o.Direction("direction", filter.Both)}
	hasMatch, hasRegexp, hasSpan := o.Has("match"), o.Has("regexp"), o.Has("max_span")
	match := o.String("match", "")
	expr := o.String("regexp", "")
	repl := o.String("replace", "")
	span := int(o.Size("max_span", defaultSpan, 1, maxSpan))
	switch {
	case hasMatch && hasRegexp:
		o.Errorf("regexp", "give match (a literal) or regexp, not both")
	case hasMatch:
		f.setLiteral(o, match, repl, hasSpan)
	case hasRegexp:
		f.setRegexp(o, expr, repl, span, hasSpan)
	default:
		o.Errorf("", "give match (a literal) or regexp (a regular expression) to replace")
	}
	if err := o.Err(); err != nil {
		return nil, err
	}
	return f, nil
}

// A rewriter is one configured rewrite filter. It is shared by every
// session on its route and never changes after New.
type rewriter struct {
	dir filter.Direction

	lit []byte // the literal to replace, or nil for a regexp

	re *regexp.Regexp
	// When re looks behind (^, \b), a search that starts after the first
	// byte must show it the byte before, and Go's regexp API cannot search
	// from an offset with the bytes before it in view. So such a search
	// runs from the byte before, with that byte taken by a (?s:.) prefix:
	// reAt (`^(?s:.)(?:re)`) for a match at the start, reAfter
	// (`(?s:.)(?:re)`) for one anywhere after it. Plain re finds the rest,
	// and faster: the prefix would hide re's literal prefix from it.
	reAt, reAfter *regexp.Regexp
	look          int // 1 when a match depends on the byte after it ($, \b)

	repl   []byte // the replacement, when it needs no expanding
	tmpl   []byte // the regexp.Expand template, when it does
	expand bool

	span   int // the longest match decided whole
	tail   int // the most bytes a stream holds after a call (before EOF)
	window int // the most bytes one regexp search looks at
}

func (f *rewriter) setLiteral(o *filter.Options, match, repl string, hasSpan bool) {
	if match == "" {
		o.Errorf("match", "is empty; give the bytes to replace")
		return
	}
	if hasSpan {
		o.Errorf("max_span", "is for regexp only; a literal's span is its own length")
	}
	f.lit, f.repl = []byte(match), []byte(repl)
	f.span = len(match)
	f.tail = len(match) - 1
}

func (f *rewriter) setRegexp(o *filter.Options, expr, repl string, span int, hasSpan bool) {
	re, err := regexp.Compile(expr)
	if err != nil {
		o.Errorf("regexp", "%v", err)
		return
	}
	sh, err := analyze(expr)
	if err != nil { // regexp.Compile parsed it the same way
		o.Errorf("regexp", "%v", err)
		return
	}
	if sh.empty {
		o.Errorf("regexp", "%q can match the empty string, which has no stable place in a stream; make every match at least one byte (a+ rather than a*)", expr)
		return
	}
	if err := checkTemplate(repl, sh.numSubexp, re.SubexpNames()); err != nil {
		o.Errorf("replace", "%v", err)
		return
	}
	if !hasSpan {
		span = defaultSpan
	}
	// A regexp that cannot match more than span bytes needs no more held.
	span = max(1, min(span, sh.maxLen))

	f.re = re
	if sh.before {
		f.reAt = regexp.MustCompile(`^(?s:.)(?:` + expr + `)`)
		f.reAfter = regexp.MustCompile(`(?s:.)(?:` + expr + `)`)
	}
	if sh.after {
		f.look = 1
	}
	f.expand = strings.Contains(repl, "$")
	if f.expand {
		f.tmpl = []byte(repl)
	} else {
		f.repl = []byte(repl)
	}
	f.span = span
	// What decided leaves undecided: span-1 bytes, the byte after a match
	// (look), up to 3 bytes of a character cut at the end of the bytes
	// and 3 more to move back to the start of a character; plus the
	// context byte kept for reAt and reAfter.
	f.tail = span - 1 + f.look + 3 + 3 + 1
	// Searching a window rather than all of In keeps the cost of one
	// search, which for Go's backtracking matcher includes clearing a
	// bitmap as long as its input, near the span rather than the read.
	f.window = 4*span + 1024
}

// Streams returns a fresh matcher for each direction the filter rewrites.
func (f *rewriter) Streams(*filter.Session) (toUpstream, toClient filter.Stream) {
	if f.dir&filter.ToUpstream != 0 {
		toUpstream = &stream{f: f}
	}
	if f.dir&filter.ToClient != 0 {
		toClient = &stream{f: f}
	}
	return toUpstream, toClient
}

// A stream rewrites one direction of one session.
type stream struct {
	f *rewriter
	// ctx is set when b.In[0] is the last byte already handled, left in
	// In only so that reAt and reAfter can see it.
	ctx bool
	buf []byte // an expanded replacement, reused
	rep []byte // the replacement for the last match found
}

// HoldLimit lets the stream keep its undecided tail and still take a full
// read after it.
func (s *stream) HoldLimit() int { return s.f.tail + filter.DefaultHold }

// Process forwards every byte of b.In that no match still to come could
// begin at, replacing the matches among them, and leaves the rest.
func (s *stream) Process(b *filter.Batch) error {
	in, pos := b.In, 0
	if s.ctx {
		pos = 1
	}
	var done int
	if s.f.lit != nil {
		done = s.replaceLiteral(b, in, pos)
	} else {
		done = s.replaceRegexp(b, in, pos)
	}
	keep := 0
	if s.f.reAt != nil && done > 0 && !b.EOF {
		keep = 1
	}
	b.Drop(done - keep)
	s.ctx = keep == 1
	return nil
}

// replaceLiteral handles in[pos:] for a literal and returns how much of in it
// handled. Any match bytes.Index finds lies wholly in the bytes, so it is
// final; only the last len(lit)-1 bytes can begin one still to come.
func (s *stream) replaceLiteral(b *filter.Batch, in []byte, pos int) int {
	lit, out := s.f.lit, pos
	for {
		i := bytes.Index(in[pos:], lit)
		if i < 0 {
			break
		}
		start := pos + i
		b.Emit(in[out:start])
		b.Emit(s.f.repl)
		pos = start + len(lit)
		out = pos
	}
	end := len(in)
	if !b.EOF {
		end = max(out, len(in)-len(lit)+1)
	}
	b.Emit(in[out:end])
	return end
}

// replaceRegexp handles in[pos:] for a regexp and returns how much of in it
// handled.
//
// A match starts only where decided says its every byte, and the byte
// after it, is known, so it is the match the whole stream has there: with
// matches at most span long, which match (if any) begins at a position
// depends only on the span bytes from it and the byte each side. Each
// search restarts at the end of the last match or of the last window, so
// no byte is searched more than about twice.
func (s *stream) replaceRegexp(b *filter.Batch, in []byte, pos int) int {
	f, out := s.f, pos
	limit := len(in)
	if !b.EOF {
		limit = f.decided(in, pos, len(in))
	}
	for pos < limit {
		end, wl := len(in), limit
		if end-pos > f.window {
			end = pos + f.window
			wl = min(limit, f.decided(in, pos, end))
		}
		start, stop := s.match(in, pos, end)
		if start < 0 || start >= wl {
			pos = wl // no match begins before wl
			continue
		}
		b.Emit(in[out:start])
		b.Emit(s.rep)
		pos, out = stop, stop
	}
	end := max(out, limit)
	b.Emit(in[out:end])
	return end
}

// decided returns how far, knowing only in[:end], matches can be decided:
// a match of at most span bytes that begins before it lies, with the byte
// after it, within the complete characters of in[:end]. It is at least
// pos, and at a character boundary.
func (f *rewriter) decided(in []byte, pos, end int) int {
	end = completeRunes(in[:end])
	limit := end - f.span + 1 - f.look
	if limit <= pos {
		return pos
	}
	return runeStart(in, pos, limit)
}

// completeRunes returns len(p) less a UTF-8 character cut off at its end,
// which the regexp would read as invalid bytes but the whole stream as one
// character.
func completeRunes(p []byte) int {
	for i := len(p) - 1; i >= 0 && i > len(p)-utf8.UTFMax; i-- {
		if utf8.RuneStart(p[i]) {
			if !utf8.FullRune(p[i:]) {
				return i
			}
			break
		}
	}
	return len(p)
}

// runeStart moves i back to the start of the character covering it, if
// one begins at or after pos. Go's regexp reads characters from where a
// search starts, so a search must start where the whole stream's would
// have, not inside a character.
func runeStart(in []byte, pos, i int) int {
	for j := i - 1; j >= pos && j > i-utf8.UTFMax; j-- {
		if utf8.RuneStart(in[j]) {
			if _, w := utf8.DecodeRune(in[j:]); j+w > i {
				return j
			}
			break
		}
	}
	return i
}

// match finds the leftmost match in in[pos:end], with in[pos-1] as the
// byte before it, and sets s.rep to its replacement. It returns -1, -1
// when there is none.
func (s *stream) match(in []byte, pos, end int) (start, stop int) {
	f := s.f
	re, from, loc := s.find(in, pos, end)
	if loc == nil {
		return -1, -1
	}
	if re != f.re {
		// Skip the character the (?s:.) prefix took.
		_, w := utf8.DecodeRune(in[from+loc[0] : end])
		loc[0] += w
	}
	s.rep = f.repl
	if f.expand {
		s.buf = re.Expand(s.buf[:0], f.tmpl, in[from:end], loc)
		s.rep = s.buf
	}
	return from + loc[0], from + loc[1]
}

// find runs the search for match, and returns the regexp that found the
// match and the offset in in of the bytes it ran on.
func (s *stream) find(in []byte, pos, end int) (re *regexp.Regexp, from int, loc []int) {
	f := s.f
	if f.reAt == nil || pos == 0 {
		return f.re, pos, s.index(f.re, in[pos:end])
	}
	// The match, if any, at pos, seen with the byte before. Only span
	// bytes and their last character count, so the search stops there.
	if loc := s.index(f.reAt, in[pos-1:min(end, pos+f.span+f.look+utf8.UTFMax)]); loc != nil {
		return f.reAt, pos - 1, loc
	}
	// After pos, re sees the true byte before every position.
	if loc := s.index(f.re, in[pos:end]); loc == nil || loc[0] > 0 {
		return f.re, pos, loc
	}
	// re's match at pos was an artefact of starting there (\bx after a
	// letter): look again after pos, seeing the byte at pos.
	return f.reAfter, pos, s.index(f.reAfter, in[pos:end])
}

// index is re's leftmost match in p, with its groups when the
// replacement needs them.
func (s *stream) index(re *regexp.Regexp, p []byte) []int {
	if s.f.expand {
		return re.FindSubmatchIndex(p)
	}
	return re.FindIndex(p)
}

var (
	_ filter.Filter = (*rewriter)(nil)
	_ filter.Stream = (*stream)(nil)
	_ filter.Holder = (*stream)(nil)
)
