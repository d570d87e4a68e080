package dump

import (
	"slices"
	"strconv"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/pierproxy/pier/filter"
)

// stamp is RFC 3339 with microseconds, always six digits, so that the
// lines of a dump line up.
const stamp = "2006-01-02T15:04:05.000000Z07:00"

// indent starts every line of text, which keeps bytes shown as text from
// ever starting a line the way a header does.
const indent = "  "

const hexDigits = "0123456789abcdef"

// hexLineLen is the length of a full line of hex dump: 8 offset digits,
// 2 spaces, 16 bytes of "xx " with a space between the groups of 8, a
// space, then 16 characters between bars and a line break.
const hexLineLen = 8 + 2 + 16*3 + 1 + 1 + 1 + 16 + 1 + 1

// appendPrefix appends the start of a direction's lines:
// "session 7 client→upstream ".
func appendPrefix(dst []byte, id uint64, dir filter.Direction) []byte {
	dst = append(dst, "session "...)
	dst = strconv.AppendUint(dst, id, 10)
	if dir == filter.ToClient {
		dst = append(dst, " upstream→client "...)
	} else {
		dst = append(dst, " client→upstream "...)
	}
	return dst
}

// appendHeader appends the line that heads a chunk of n bytes.
func appendHeader(dst, prefix []byte, now time.Time, n int) []byte {
	dst = append(dst, prefix...)
	dst = now.AppendFormat(dst, stamp)
	dst = append(dst, ' ')
	dst = appendCount(dst, int64(n))
	return append(dst, '\n')
}

// appendEOF appends the line that says a direction ended after n bytes.
func appendEOF(dst, prefix []byte, now time.Time, n int64) []byte {
	dst = append(dst, prefix...)
	dst = now.AppendFormat(dst, stamp)
	dst = append(dst, " EOF after "...)
	dst = appendCount(dst, n)
	return append(dst, '\n')
}

// appendMore appends the line that stands for the n bytes of a chunk
// that max_bytes left out.
func appendMore(dst []byte, n int) []byte {
	dst = append(dst, "... "...)
	dst = strconv.AppendInt(dst, int64(n), 10)
	if n == 1 {
		return append(dst, " more byte\n"...)
	}
	return append(dst, " more bytes\n"...)
}

// appendEnd appends the line that says session id ended, and why if err.
func appendEnd(dst []byte, id uint64, now time.Time, err error) []byte {
	dst = append(dst, "session "...)
	dst = strconv.AppendUint(dst, id, 10)
	dst = append(dst, ' ')
	dst = now.AppendFormat(dst, stamp)
	dst = append(dst, " ended"...)
	if err != nil {
		dst = append(dst, ": "...)
		dst = append(dst, err.Error()...)
	}
	return append(dst, '\n')
}

// appendCount appends "1 byte" or "n bytes".
func appendCount(dst []byte, n int64) []byte {
	dst = strconv.AppendInt(dst, n, 10)
	if n == 1 {
		return append(dst, " byte"...)
	}
	return append(dst, " bytes"...)
}

// appendHex appends p as `hexdump -C` shows it (with -v: no line is
// folded into a "*"), its first byte at offset off: per line of 16 bytes,
// the offset in at least 8 hex digits, the bytes in hex in two groups of
// 8, and the bytes again between bars with all but printable ASCII as
// dots. A short last line is padded so its bars line up. Unlike hexdump,
// no line with the end offset follows: the header gave the size.
func appendHex(dst, p []byte, off int64) []byte {
	dst = slices.Grow(dst, (len(p)+15)/16*hexLineLen)
	for len(p) > 0 {
		line := p[:min(16, len(p))]
		p = p[len(line):]
		dst = appendOffset(dst, off)
		off += int64(len(line))
		dst = append(dst, ' ', ' ')
		for i := range 16 {
			if i < len(line) {
				c := line[i]
				dst = append(dst, hexDigits[c>>4], hexDigits[c&0xf], ' ')
			} else {
				dst = append(dst, ' ', ' ', ' ')
			}
			if i == 7 {
				dst = append(dst, ' ')
			}
		}
		dst = append(dst, ' ', '|')
		for _, c := range line {
			if c < ' ' || c > '~' {
				c = '.'
			}
			dst = append(dst, c)
		}
		dst = append(dst, '|', '\n')
	}
	return dst
}

// appendOffset appends off in hex, in at least 8 digits, as hexdump's
// %08x does: a stream past 4 GiB gets more.
func appendOffset(dst []byte, off int64) []byte {
	var digits [16]byte
	i := len(digits)
	for u := uint64(off); i > len(digits)-8 || u > 0; u >>= 4 {
		i--
		digits[i] = hexDigits[u&0xf]
	}
	return append(dst, digits[i:]...)
}

// appendText appends p as indented lines of escaped text: printable ASCII
// and printable UTF-8 as they are; newline, carriage return, tab and
// backslash as \n, \r, \t and \\, with a line break after \n; any other
// byte (control bytes, invalid UTF-8, runes that are not printable, such
// as the ones that reorder text on a terminal) as \xHH. A rune split
// between two chunks shows as \xHH in both. The last line ends with a
// line break whether p did or not; p did only if the line ends with \n.
func appendText(dst, p []byte) []byte {
	if len(p) == 0 {
		return dst
	}
	dst = append(dst, indent...)
	for i := 0; i < len(p); {
		c := p[i]
		switch {
		case c == '\n':
			dst = append(dst, '\\', 'n', '\n')
			if i+1 < len(p) {
				dst = append(dst, indent...)
			}
		case c == '\r':
			dst = append(dst, '\\', 'r')
		case c == '\t':
			dst = append(dst, '\\', 't')
		case c == '\\':
			dst = append(dst, '\\', '\\')
		case c >= ' ' && c <= '~':
			dst = append(dst, c)
		case c >= utf8.RuneSelf:
			// size 1 means invalid UTF-8; a valid U+FFFD is size 3.
			if r, size := utf8.DecodeRune(p[i:]); size > 1 && unicode.IsPrint(r) {
				dst = append(dst, p[i:i+size]...)
				i += size
				continue
			}
			dst = append(dst, '\\', 'x', hexDigits[c>>4], hexDigits[c&0xf])
		default:
			dst = append(dst, '\\', 'x', hexDigits[c>>4], hexDigits[c&0xf])
		}
		i++
	}
	if p[len(p)-1] != '\n' {
		dst = append(dst, '\n')
	}
	return dst
}

// appendLost appends the line that stands in a direction's dump for the
// chunks the output had no room for: "session 7 client→upstream … 1234
// bytes not shown (3 blocks dropped: the output fell behind)".
func appendLost(dst, prefix []byte, l filter.Lost) []byte {
	dst = append(dst, prefix...)
	dst = append(dst, "… "...)
	dst = appendCount(dst, l.Units)
	dst = append(dst, " not shown ("...)
	dst = strconv.AppendInt(dst, l.Writes, 10)
	if l.Writes == 1 {
		dst = append(dst, " block"...)
	} else {
		dst = append(dst, " blocks"...)
	}
	return append(dst, " dropped: the output fell behind)\n"...)
}
