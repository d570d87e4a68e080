package rewrite

import (
	"bytes"
	"regexp"
	"testing"
	"unicode/utf8"
)

// fuzzRegexps are regexps whose matches are bounded, so the promise holds
// in full: each covers a feature that reaches across a read (alternatives
// of different lengths, greedy and lazy repeats, assertions on both sides,
// multi-byte and invalid UTF-8, case folding).
var fuzzRegexps = []string{
	`ab`, `a{1,4}`, `(a|ab)(c|bcd)`, `[ab]{2,5}c?`, `\bab\b`, `\Ba{1,2}`,
	`(?m)^a.`, `b$`, `^a{1,3}`, `(?m)b$|\n`, `é{1,3}`, `(?i)k{1,2}`,
	`(?s).{3}`, `.{1,2}b`, `[^a]{1,2}`, `\x{FFFD}`, `(?s)a.b`, `(?U)a{1,3}`,
	`a{2}|b`, `(?i)AB|a`, `[€a]{1,3}`, `\d{1,3}|\w`, `(a{1,2})(b{0,2})\b`,
}

// fuzzAlphabet is what a data byte spells when kind's high bit is set:
// the characters the regexps care about, whole, cut short and invalid,
// which the fuzzer would seldom put together from single bytes.
var fuzzAlphabet = []string{
	"a", "b", "c", "d", "ab", " ", "\n", "0", "é", "€", "😀", "\u212a", "k",
	"\ufffd", "\xe2\x82", "\xf0\x9f", "\xff", "\xc3",
}

// FuzzRewrite checks the promise on fuzzed input, pattern, replacement
// and reads: the stream's output equals the whole-stream replacement.
// kind picks the pattern: 0 is lit as a literal, 1 lit quoted as a
// regexp, the rest fuzzRegexps; with its high bit set, each byte of data
// stands for a string of fuzzAlphabet. Each byte of cuts is the length of
// the next read, less one.
func FuzzRewrite(f *testing.F) {
	f.Add([]byte("foo foofoo fo"), uint8(0), "foo", "bar", []byte{0, 1, 2})
	f.Add([]byte("aaaa"), uint8(0), "aa", "", []byte{0})
	f.Add([]byte("a.b a.b"), uint8(1), "a.b", "X", []byte{2, 0})
	f.Add([]byte("ab abab ab"), uint8(6), "", "[$0]", []byte{0, 0, 0, 1})
	f.Add([]byte("abcd abc ab"), uint8(4), "", "${2}-$1", []byte{3, 1})
	f.Add([]byte("a\nab\nb"), uint8(8), "", "_", []byte{0, 0})
	f.Add([]byte("ééé\xc3 é"), uint8(12), "", "e", []byte{0, 1, 0})
	f.Add([]byte("€\xff€ab"), uint8(14), "", "<$0>", []byte{1, 0, 0})
	f.Add([]byte("x😀€\xf0\x9f"), uint8(17), "", "?", []byte{1, 2, 3})
	f.Add([]byte{9, 10, 14, 15, 10, 16, 13}, uint8(0x80+17), "", "?", []byte{0, 4, 1})
	f.Add([]byte{0, 4, 6, 0, 1, 6, 9, 12}, uint8(0x80+9), "", "<$0>", []byte{2, 1, 1})
	f.Add([]byte("kK\u212ak"), uint8(13), "", "", []byte{0, 1})
	f.Fuzz(func(t *testing.T, data []byte, kind uint8, lit, repl string, cuts []byte) {
		if len(data) > 4096 || len(lit) > 16 || len(repl) > 32 {
			return
		}
		if kind&0x80 != 0 {
			var spelled []byte
			for _, c := range data {
				spelled = append(spelled, fuzzAlphabet[int(c)%len(fuzzAlphabet)]...)
			}
			data = spelled
		}
		var opts []string
		switch k := int(kind&0x7f) % (len(fuzzRegexps) + 2); k {
		case 0:
			opts = []string{"match", lit}
		case 1:
			if !utf8.ValidString(lit) {
				return
			}
			opts = []string{"regexp", regexp.QuoteMeta(lit)}
		default:
			opts = []string{"regexp", fuzzRegexps[k-2]}
		}
		opts = append(opts, "replace", repl)
		rw, err := New(options(opts...))
		if err != nil {
			return // an empty literal, or a replacement naming a missing group
		}
		var chunks [][]byte
		rest := data
		for i := 0; len(rest) > 0; i++ {
			n := len(rest)
			if i < len(cuts) {
				n = min(n, int(cuts[i])+1)
			}
			chunks = append(chunks, rest[:n])
			rest = rest[n:]
		}
		want := wholeStream(opts, data)
		for _, g := range []*rewriter{rw.(*rewriter), narrow(rw.(*rewriter))} {
			if got := feed(t, g, chunks...); !bytes.Equal(got, want) {
				t.Fatalf("%q on %q in reads of %v (window %d):\ngot  %q\nwant %q", opts, data, lens(chunks), g.window, got, want)
			}
		}
	})
}

func lens(chunks [][]byte) []int {
	ns := make([]int, len(chunks))
	for i, c := range chunks {
		ns[i] = len(c)
	}
	return ns
}
