package health

import (
	"bytes"
	"io"
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"
)

// chunks is a reader that hands out a reply in reads of the given sizes
// (cycled), as a member's segments might arrive, and then EOF.
type chunks struct {
	b     []byte
	sizes []byte
	i     int
}

func (r *chunks) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	n := len(r.b)
	if len(r.sizes) > 0 {
		n = int(r.sizes[r.i%len(r.sizes)]) + 1
		r.i++
	}
	n = copy(p, r.b[:min(n, len(r.b))])
	r.b = r.b[n:]
	return n, nil
}

// The reply matcher, fed a reply in any split, agrees with bytes.HasPrefix
// and regexp.Match on the bytes it read, never reads past its bound, never
// panics, and words its failures for one log line.
func FuzzReplyMatcher(f *testing.F) {
	f.Add([]byte("+PONG\r\n"), []byte("+PONG"), "", []byte{0})
	f.Add([]byte("-ERR unknown command\r\n"), []byte("+PONG"), "", []byte{2, 5})
	f.Add([]byte("+PO"), []byte("+PONG"), "", []byte{})
	f.Add([]byte(""), []byte("+PONG"), "", []byte{})
	f.Add([]byte("220 mail.example ESMTP ready\r\n"), []byte(""), `^220 .*ESMTP`, []byte{3})
	f.Add([]byte("220 mail.example ESMTP ready\r\n"), []byte("220"), `ESMTP`, []byte{0, 7})
	f.Add([]byte("OK\r\n"), []byte(""), `^OK$`, []byte{1})
	f.Add([]byte(strings.Repeat("x", 5000)), []byte(""), `y`, []byte{255})
	f.Add([]byte("\x00\xff\n\"é"), []byte("\x00\xff\n\"é!"), "\xff", []byte{0})
	f.Fuzz(func(t *testing.T, reply, expect []byte, pattern string, sizes []byte) {
		var re *regexp.Regexp
		if pattern != "" {
			var err error
			if re, err = regexp.Compile(pattern); err != nil {
				t.Skip()
			}
		}
		c := &Check{Expect: expect, ExpectRE: re}
		if len(expect) == 0 && re == nil {
			return // Probe reads no reply
		}
		read, verdict, rerr := c.readReply(&chunks{b: reply, sizes: sizes})
		if rerr != nil || verdict == errMore {
			t.Fatalf("undecided at EOF: %v, %v", verdict, rerr)
		}
		if !bytes.HasPrefix(reply, read) {
			t.Fatalf("read %q, not a prefix of the reply", read)
		}
		if len(read) > max(c.readLimit(), quoteMax+1) {
			t.Fatalf("read %d bytes, bound %d", len(read), c.readLimit())
		}
		if verdict == nil && !(bytes.HasPrefix(read, expect) && (re == nil || re.Match(read))) {
			t.Fatalf("%q passed: Expect %q, ExpectRE %v", read, expect, re)
		}

		// Expect alone: the verdict is bytes.HasPrefix on the whole
		// reply, however it was split.
		if re == nil {
			if (verdict == nil) != bytes.HasPrefix(reply, expect) {
				t.Fatalf("reply %q, Expect %q: verdict %v", reply, expect, verdict)
			}
		}
		// ExpectRE alone: given at once, as much of the reply as the
		// bound allows passes exactly when it matches. In pieces, a
		// failure means it matched at none of the reads.
		if len(expect) == 0 {
			whole := reply[:min(len(reply), maxReply)]
			_, v, _ := c.readReply(&chunks{b: reply})
			if (v == nil) != re.Match(whole) {
				t.Fatalf("reply %q at once, ExpectRE %v: verdict %v", whole, re, v)
			}
			if verdict != nil && re.Match(read) {
				t.Fatalf("%q matches %v, yet failed: %v", read, re, verdict)
			}
		}

		if verdict != nil {
			// The quotes are escaped and bounded; only the pattern
			// is printed as configured.
			msg, rest := verdict.Error(), verdict.Error()
			if re != nil {
				rest = strings.Replace(msg, re.String(), "", 1)
			}
			if !utf8.ValidString(rest) {
				t.Fatalf("message not valid UTF-8: %q", msg)
			}
			if strings.ContainsAny(rest, "\n\r\x00") {
				t.Fatalf("control bytes in message: %q", msg)
			}
			if bound := 2*(4*quoteMax+5) + 64; len(rest) > bound {
				t.Fatalf("message of %d bytes (bound %d): %q", len(rest), bound, msg)
			}
		}
	})
}
