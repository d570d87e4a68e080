package asynclog

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/pierproxy/pier/internal/testutil"
)

func textFormat(w io.Writer) slog.Handler {
	return slog.NewTextHandler(w, &slog.HandlerOptions{
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{} // a fixed line to compare
			}
			return a
		},
	})
}

// A multi-line error in text format prints as real lines under the
// record's line, not as one line full of \n.
func TestTextUnfoldsMultilineValues(t *testing.T) {
	for _, tc := range []struct {
		name  string
		attrs []any
		want  string
	}{{
		name:  "one line stays as slog writes it",
		attrs: []any{"file", "p.yaml", "error", errors.New("bad: \"x\"")},
		want:  `level=ERROR msg="reload failed" file=p.yaml error="bad: \"x\""` + "\n",
	}, {
		name:  "a config error of three lines",
		attrs: []any{"file", "p.yaml", "error", errors.New("p.yaml:2:3: missing port\np.yaml:4:1: \"10\" has no unit\np.yaml:5:9: unknown field")},
		want: `level=ERROR msg="reload failed" file=p.yaml error=|` + "\n" +
			"  p.yaml:2:3: missing port\n" +
			"  p.yaml:4:1: \"10\" has no unit\n" +
			"  p.yaml:5:9: unknown field\n",
	}, {
		name:  "two multi-line values, in order, and a trailing break dropped",
		attrs: []any{"a", "1\n2\n", "b", "3\n4", "c", `not\nbroken`},
		want:  `level=ERROR msg="reload failed" a=| b=| c=not\nbroken` + "\n  1\n  2\n  3\n  4\n",
	}, {
		name:  "a quoted key is left alone",
		attrs: []any{"a key", "x\ny"},
		want:  `level=ERROR msg="reload failed" "a key"=|` + "\n  x\n  y\n",
	}} {
		t.Run(tc.name, func(t *testing.T) {
			var out testutil.Buffer
			h := New(&out, textFormat, Options{UnfoldText: true})
			slog.New(h).Error("reload failed", tc.attrs...)
			if err := closeWithin(t, h, wait); err != nil {
				t.Fatal(err)
			}
			if got := out.String(); got != tc.want {
				t.Errorf("got\n%s\nwant\n%s", got, tc.want)
			}
		})
	}
}

// Whatever a value holds, unfolding loses nothing: its lines, read back
// from under the record, are the value.
func FuzzUnfoldText(f *testing.F) {
	for _, s := range []string{"", "a", "a\nb", "a\n\nb\n", "\"q\"\n\\n", "\x00\xff\n\r\n", "é\nü"} {
		f.Add("msg", s)
	}
	f.Fuzz(func(t *testing.T, msg, v string) {
		var line bytes.Buffer
		r := slog.NewRecord(time.Time{}, slog.LevelInfo, msg, 0)
		r.AddAttrs(slog.String("v", v))
		if err := textFormat(&line).Handle(context.Background(), r); err != nil {
			t.Fatal(err)
		}
		out := string(unfoldText(nil, line.Bytes()))
		if !strings.HasSuffix(out, "\n") {
			t.Fatalf("no final line break: %q", out)
		}
		if !strings.Contains(line.String(), `\n`) {
			if out != line.String() {
				t.Fatalf("a line without breaks changed: %q -> %q", line.String(), out)
			}
			return
		}
		first, rest, _ := strings.Cut(out, "\n")
		if strings.Contains(v, "\n") {
			if !strings.HasSuffix(first, " v=|") {
				t.Fatalf("record line %q does not end v=|", first)
			}
			// The msg's lines, if it had breaks, come first.
			var ls []string
			for l := range strings.Lines(rest) {
				ls = append(ls, strings.TrimPrefix(strings.TrimSuffix(l, "\n"), "  "))
			}
			want := strings.Split(strings.TrimSuffix(v, "\n"), "\n")
			if got := ls[len(ls)-len(want):]; strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Fatalf("value %q came back as %q", v, got)
			}
		}
	})
}
