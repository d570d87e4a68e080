package asynclog

import (
	"bytes"
	"strconv"
	"strings"
)

// unfoldText appends line, one record in slog's text format, to dst; a
// quoted value that holds line breaks becomes "key=|" on the record's line
// and its lines follow, each indented by two spaces, so a multi-line error
// (a config file with three mistakes) reads as it was written:
//
//	time=... level=ERROR msg="reload failed" file=pier.yaml error=|
//	  pier.yaml:3:5: routes[0].listen: missing port
//	  pier.yaml:7:9: ...
//
// slog's text handler quotes (strconv.Quote) every value with a line break,
// and only quoted strings can hold one, so unquoting those is exact.
func unfoldText(dst, line []byte) []byte {
	if !bytes.Contains(line, []byte(`\n`)) {
		return append(dst, line...) // the common case: one line
	}
	line = bytes.TrimSuffix(line, []byte("\n"))
	var blocks []string
	for i := 0; i < len(line); {
		c := line[i]
		if c != '"' {
			dst = append(dst, c)
			i++
			continue
		}
		end, breaks := quotedEnd(line, i)
		token := line[i:end]
		if breaks && i > 0 && line[i-1] == '=' {
			if s, err := strconv.Unquote(string(token)); err == nil {
				dst = append(dst, '|')
				blocks = append(blocks, s)
				i = end
				continue
			}
		}
		dst = append(dst, token...)
		i = end
	}
	dst = append(dst, '\n')
	for _, s := range blocks {
		for l := range strings.Lines(s) {
			dst = append(dst, "  "...)
			dst = append(dst, strings.TrimSuffix(l, "\n")...)
			dst = append(dst, '\n')
		}
	}
	return dst
}

// quotedEnd returns the index just past the quoted string that starts at
// line[start] (or len(line) if it never ends), and whether the string holds
// an escaped line break.
func quotedEnd(line []byte, start int) (end int, breaks bool) {
	for i := start + 1; i < len(line); i++ {
		switch line[i] {
		case '\\':
			if i+1 < len(line) && line[i+1] == 'n' {
				breaks = true
			}
			i++ // skip the escaped character
		case '"':
			return i + 1, breaks
		}
	}
	return len(line), breaks
}
