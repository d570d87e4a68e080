package rewrite

import (
	"fmt"
	"regexp/syntax"
	"unicode"
	"unicode/utf8"
)

// unbounded is maxLen's answer for a regexp whose matches have no length
// limit (a+, .*x). It is far above maxSpan, so min(span, bound) never
// overflows and never picks it.
const unbounded = 1 << 40

// A shape is what the stream needs to know about a regexp beyond its
// compiled form: how long a match can be, and which of its assertions
// look at the bytes around a match.
type shape struct {
	maxLen    int  // longest possible match in bytes, or unbounded
	empty     bool // it can match the empty string
	before    bool // ^, (?m)^, \b or \B: a match depends on the byte before it
	after     bool // $, (?m)$, \b or \B: a match depends on the byte after it
	numSubexp int
}

// analyze parses expr the way regexp.Compile does (Perl flags) and
// measures it.
func analyze(expr string) (shape, error) {
	re, err := syntax.Parse(expr, syntax.Perl)
	if err != nil {
		return shape{}, err
	}
	var s shape
	s.maxLen = maxLen(re)
	s.empty = canBeEmpty(re)
	s.before, s.after = assertions(re)
	s.numSubexp = re.MaxCap()
	return s, nil
}

// maxLen returns the most bytes re can match, or unbounded.
func maxLen(re *syntax.Regexp) int {
	switch re.Op {
	case syntax.OpLiteral:
		n := 0
		for _, r := range re.Rune {
			n += runeMaxLen(r, re.Flags&syntax.FoldCase != 0)
		}
		return min(n, unbounded)
	case syntax.OpCharClass:
		n := 0
		for i := 1; i < len(re.Rune); i += 2 {
			n = max(n, runeLen(re.Rune[i])) // longest encoding is the highest rune's
		}
		return n
	case syntax.OpAnyChar, syntax.OpAnyCharNotNL:
		return utf8.UTFMax
	case syntax.OpCapture, syntax.OpQuest:
		return maxLen(re.Sub[0])
	case syntax.OpStar, syntax.OpPlus:
		if maxLen(re.Sub[0]) == 0 {
			return 0
		}
		return unbounded
	case syntax.OpRepeat:
		n := maxLen(re.Sub[0])
		if n == 0 {
			return 0
		}
		if re.Max < 0 || n >= unbounded/max(re.Max, 1) {
			return unbounded
		}
		return n * re.Max
	case syntax.OpConcat:
		n := 0
		for _, sub := range re.Sub {
			n = min(n+maxLen(sub), unbounded)
		}
		return n
	case syntax.OpAlternate:
		n := 0
		for _, sub := range re.Sub {
			n = max(n, maxLen(sub))
		}
		return n
	}
	// OpNoMatch, OpEmptyMatch and the assertions take no bytes.
	return 0
}

// runeMaxLen is the longest UTF-8 encoding r matches, counting its other
// cases when the regexp ignores case (k also matches the 3-byte Kelvin
// sign).
func runeMaxLen(r rune, fold bool) int {
	n := runeLen(r)
	if fold {
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			n = max(n, runeLen(f))
		}
	}
	return n
}

// runeLen is utf8.RuneLen without its -1 for surrogates, which a class
// range may end on.
func runeLen(r rune) int {
	switch {
	case r < 0x80:
		return 1
	case r < 0x800:
		return 2
	case r < 0x10000:
		return 3
	}
	return 4
}

// canBeEmpty reports whether re can match the empty string somewhere.
// Assertions count as empty: \b alone matches nothing but a position.
func canBeEmpty(re *syntax.Regexp) bool {
	switch re.Op {
	case syntax.OpNoMatch, syntax.OpCharClass, syntax.OpAnyChar, syntax.OpAnyCharNotNL:
		return false
	case syntax.OpLiteral:
		return len(re.Rune) == 0
	case syntax.OpCapture, syntax.OpPlus:
		return canBeEmpty(re.Sub[0])
	case syntax.OpRepeat:
		return re.Min == 0 || canBeEmpty(re.Sub[0])
	case syntax.OpConcat:
		for _, sub := range re.Sub {
			if !canBeEmpty(sub) {
				return false
			}
		}
		return true
	case syntax.OpAlternate:
		for _, sub := range re.Sub {
			if canBeEmpty(sub) {
				return true
			}
		}
		return false
	}
	// OpEmptyMatch, OpStar, OpQuest and the assertions.
	return true
}

// assertions reports whether re looks at the byte before a position
// (before) or after it (after).
func assertions(re *syntax.Regexp) (before, after bool) {
	switch re.Op {
	case syntax.OpBeginLine, syntax.OpBeginText:
		before = true
	case syntax.OpEndLine, syntax.OpEndText:
		after = true
	case syntax.OpWordBoundary, syntax.OpNoWordBoundary:
		before, after = true, true
	}
	for _, sub := range re.Sub {
		b, a := assertions(sub)
		before, after = before || b, after || a
	}
	return before, after
}

// checkTemplate finds a reference in a replacement template to a group
// the regexp does not have, which regexp.Expand would silently replace
// with nothing. The common case is "$1x", which names group "1x": the
// user meant "${1}x". It follows Expand's own reading of the template.
func checkTemplate(tmpl string, numSubexp int, names []string) error {
	for i := 0; i < len(tmpl); i++ {
		if tmpl[i] != '$' {
			continue
		}
		rest := tmpl[i+1:]
		if len(rest) > 0 && rest[0] == '$' {
			i++ // "$$" is a literal '$'
			continue
		}
		name, n, ok := reference(rest)
		if !ok {
			continue // Expand writes a malformed '$' as it is
		}
		i += n
		if num, isNum := groupNumber(name); isNum {
			if num > numSubexp {
				return fmt.Errorf("$%s refers to group %s, but the regexp has %d (write $$ for a literal $)", name, name, numSubexp)
			}
			continue
		}
		known := false
		for _, g := range names {
			if g != "" && g == name {
				known = true
			}
		}
		if !known {
			return fmt.Errorf("$%s refers to no group named %q (write ${1}x for group 1 then x, $$ for a literal $)", name, name)
		}
	}
	return nil
}

// reference reads a group name after a '$' the way regexp.Expand does:
// {name} or the longest run of letters, digits and '_'. n is how many
// bytes of s it took.
func reference(s string) (name string, n int, ok bool) {
	brace := len(s) > 0 && s[0] == '{'
	if brace {
		n = 1
	}
	start := n
	for n < len(s) {
		r, size := utf8.DecodeRuneInString(s[n:])
		if !unicode.IsLetter(r) && !unicode.IsDigit(r) && r != '_' {
			break
		}
		n += size
	}
	if n == start {
		return "", 0, false
	}
	name = s[start:n]
	if brace {
		if n >= len(s) || s[n] != '}' {
			return "", 0, false
		}
		n++
	}
	return name, n, true
}

// groupNumber reads name as Expand does: decimal digits, no leading zero.
func groupNumber(name string) (int, bool) {
	if name[0] == '0' && len(name) > 1 {
		return 0, false
	}
	num := 0
	for i := 0; i < len(name); i++ {
		if name[i] < '0' || name[i] > '9' || num >= 1e8 {
			return 0, false
		}
		num = num*10 + int(name[i]-'0')
	}
	return num, true
}
