package dump

import (
	"bytes"
	"context"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// request is 33 bytes: two full hex lines and one byte over, with
// printable and unprintable bytes on each.
const request = "GET / HTTP/1.1\r\nHost: pier\r\n\x00\x01\x7f\x80\xff"

// The expected lines are hexdump -C -v's output (util-linux) for the same
// bytes, less its closing line with the end offset.
func TestHexMatchesHexdumpLayout(t *testing.T) {
	tests := []struct {
		name string
		n    int
		off  int64
		want string
	}{
		{"0 bytes", 0, 0, ""},
		{"1 byte", 1, 0, "" +
			"00000000  47                                                |G|\n"},
		{"15 bytes", 15, 0, "" +
			"00000000  47 45 54 20 2f 20 48 54  54 50 2f 31 2e 31 0d     |GET / HTTP/1.1.|\n"},
		{"16 bytes", 16, 0, "" +
			"00000000  47 45 54 20 2f 20 48 54  54 50 2f 31 2e 31 0d 0a  |GET / HTTP/1.1..|\n"},
		{"17 bytes", 17, 0, "" +
			"00000000  47 45 54 20 2f 20 48 54  54 50 2f 31 2e 31 0d 0a  |GET / HTTP/1.1..|\n" +
			"00000010  48                                                |H|\n"},
		{"33 bytes", 33, 0, "" +
			"00000000  47 45 54 20 2f 20 48 54  54 50 2f 31 2e 31 0d 0a  |GET / HTTP/1.1..|\n" +
			"00000010  48 6f 73 74 3a 20 70 69  65 72 0d 0a 00 01 7f 80  |Host: pier......|\n" +
			"00000020  ff                                                |.|\n"},
		// hexdump -C -v -s 5 -n 8: lines start where the chunk does.
		{"8 bytes at offset 5", 8, 5, "" +
			"00000005  47 45 54 20 2f 20 48 54                           |GET / HT|\n"},
		{"past 4 GiB", 1, 1 << 32, "" +
			"100000000  47                                                |G|\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := string(appendHex(nil, []byte(request[:tt.n]), tt.off))
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("appendHex(%d bytes, offset %d) (-want +got):\n%s", tt.n, tt.off, diff)
			}
		})
	}
}

// The layout is checked against the hexdump program itself, where one is
// installed, for chunks at every kind of offset: a chunk's lines are
// `hexdump -C -v -s offset -n size` of the whole stream.
func TestHexAgreesWithHexdumpProgram(t *testing.T) {
	hexdump, err := exec.LookPath("hexdump")
	if err != nil {
		t.Skip("no hexdump program")
	}
	rng := rand.New(rand.NewPCG(1, 2))
	stream := make([]byte, 300)
	for i := range stream {
		stream[i] = byte(rng.UintN(256))
	}
	copy(stream[40:], "plain text, for the ASCII column")
	path := filepath.Join(t.TempDir(), "stream")
	if err := os.WriteFile(path, stream, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	off := 0
	for _, n := range []int{1, 15, 16, 17, 33, 5, 64, 100, 49} {
		out, err := exec.CommandContext(ctx, hexdump, "-C", "-v", "-s", strconv.Itoa(off), "-n", strconv.Itoa(n), path).Output()
		if err != nil {
			t.Fatalf("hexdump: %v", err)
		}
		// Drop hexdump's last line, the end offset.
		want := out[:bytes.LastIndexByte(out[:len(out)-1], '\n')+1]
		got := appendHex(nil, stream[off:off+n], int64(off))
		if diff := cmp.Diff(string(want), string(got)); diff != "" {
			t.Errorf("%d bytes at offset %d (-hexdump +appendHex):\n%s", n, off, diff)
		}
		off += n
	}
}

func TestTextEscapes(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"empty", "", ""},
		{"printable ASCII as is", "GET /a?b=c HTTP/1.1", "  GET /a?b=c HTTP/1.1\n"},
		{"newline escaped and broken after", "a\nb", "  a\\n\n  b\n"},
		{"trailing newline ends the block", "a\n", "  a\\n\n"},
		{"blank lines", "\n\n", "  \\n\n  \\n\n"},
		{"CR, tab, backslash", "\r\t\\", `  \r\t\\` + "\n"},
		{"a backslash is never an escape's start", `\x41`, `  \\x41` + "\n"},
		{"control bytes and DEL", "\x00\x1b\x7f", `  \x00\x1b\x7f` + "\n"},
		{"invalid UTF-8", "\xff\x80\xc3", `  \xff\x80\xc3` + "\n"},
		{"printable UTF-8 as is", "héllo → 世界", "  héllo → 世界\n"},
		{"valid U+FFFD as is", "\uFFFD", "  \uFFFD\n"},
		{"bidi override escaped", "a\u202eb", `  a\xe2\x80\xaeb` + "\n"},
		{"rune cut at the chunk's end", "\xe2\x86", `  \xe2\x86` + "\n"},
		{"header lookalike is indented", "session 9 client→upstream 1 byte\n", "  session 9 client→upstream 1 byte\\n\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := string(appendText(nil, []byte(tt.in)))
			if got != tt.want {
				t.Errorf("appendText(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}
