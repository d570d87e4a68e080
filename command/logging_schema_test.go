package command

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pierproxy/pier/config"
	"github.com/pierproxy/pier/internal/session"
	"github.com/pierproxy/pier/internal/testutil"
)

// openTestLog opens the command's logger over a buffer and returns the logger
// and a function that closes it and returns what it wrote.
func openTestLog(t *testing.T, format string) (*slog.Logger, func() string) {
	t.Helper()
	lf := logFlags{format: format, level: "info"}
	var out testutil.Buffer
	log, closeLog, err := lf.open(&out)
	if err != nil {
		t.Fatal(err)
	}
	return log, func() string {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		if err := closeLog(ctx); err != nil {
			t.Fatal(err)
		}
		return out.String()
	}
}

// fullSessionRecord is a session record with every optional field set, so its
// access log line has every field.
func fullSessionRecord() *session.Record {
	return &session.Record{
		ID: 7, Route: "db",
		Client:   netip.MustParseAddrPort("10.1.2.3:51234"),
		Upstream: "db-1:5432", Dialed: netip.MustParseAddrPort("10.9.8.7:5432"), Tries: 2,
		ToUpstream: 18234, ToClient: 1882734, Duration: 1234567 * time.Microsecond,
		Reason: session.ConnectFailed, Err: errors.New("connection refused"),
	}
}

// In json every duration is a number of seconds, wherever it stands: the
// access log's duration, a daemon message's grace_period, one in a group.
func TestJSONDurationsAreSeconds(t *testing.T) {
	log, closeLog := openTestLog(t, "json")
	log.LogAttrs(context.Background(), slog.LevelInfo, "session", fullSessionRecord().Attrs()...)
	log.Info("stopping", "grace_period", 30*time.Second, slog.Group("g", "d", 2*time.Millisecond))
	lines := strings.Split(strings.TrimSpace(closeLog()), "\n")
	if len(lines) != 2 {
		t.Fatalf("lines: %q", lines)
	}
	var access, stopping map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &access); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(lines[1]), &stopping); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		got  any
		want float64
	}{
		{"duration", access["duration"], 1.234567},
		{"grace_period", stopping["grace_period"], 30},
		{"g.d", stopping["g"].(map[string]any)["d"], 0.002},
	} {
		if f, ok := c.got.(float64); !ok || f != c.want {
			t.Errorf("%s = %#v, want the number %v (seconds)", c.name, c.got, c.want)
		}
	}
}

// In text a duration is a Go duration.
func TestTextDurationsAreGoDurations(t *testing.T) {
	log, closeLog := openTestLog(t, "text")
	log.LogAttrs(context.Background(), slog.LevelInfo, "session", fullSessionRecord().Attrs()...)
	log.Info("stopping", "grace_period", 30*time.Second)
	out := closeLog()
	for _, want := range []string{" duration=1.234567s ", " grace_period=30s"} {
		if !strings.Contains(out, want) {
			t.Errorf("text log lacks %q:\n%s", want, out)
		}
	}
}

// A config file with several mistakes gives a multi-line error; in text,
// "reload failed" prints it as lines under the record, not as one line of
// \n escapes.
func TestTextConfigErrorOnItsOwnLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pier.yaml")
	bad := "routes:\n  - name: r\n    listen: [\"127.0.0.1:0\"]\n    upstreams: [{address: \"127.0.0.1\"}]\n    idle_timeout: forever\n"
	if err := os.WriteFile(path, []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := config.Load(path)
	if err == nil || !strings.Contains(err.Error(), "\n") {
		t.Fatalf("config.Load: %v, want an error of several lines", err)
	}
	log, closeLog := openTestLog(t, "text")
	log.Error("reload failed, keeping the running configuration", "file", path, "error", err)
	out := closeLog()
	t.Logf("logged:\n%s", out)
	if strings.Contains(out, `\n`) {
		t.Errorf("the error is printed with \\n escapes:\n%s", out)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if !strings.HasSuffix(lines[0], " error=|") || !strings.Contains(lines[0], `msg="reload failed, keeping the running configuration"`) {
		t.Errorf("first line %q, want the record with error=| at its end", lines[0])
	}
	want := strings.Split(strings.TrimSuffix(err.Error(), "\n"), "\n")
	if len(lines) != 1+len(want) {
		t.Fatalf("%d lines, want the record and the error's %d", len(lines), len(want))
	}
	for i, w := range want {
		if lines[1+i] != "  "+w {
			t.Errorf("line %d %q, want %q indented by two spaces", 1+i, lines[1+i], w)
		}
	}
}

// docs/logging.md documents every field of the access log, and the fields
// every record has.
func TestAccessLogFieldsDocumented(t *testing.T) {
	doc, err := os.ReadFile("../docs/logging.md")
	if err != nil {
		t.Fatal(err)
	}
	fields := []string{slog.TimeKey, slog.LevelKey, slog.MessageKey}
	for _, a := range fullSessionRecord().Attrs() {
		fields = append(fields, a.Key)
	}
	for _, f := range fields {
		if !bytes.Contains(doc, []byte("| `"+f+"`")) {
			t.Errorf("docs/logging.md has no table row for the field %q", f)
		}
	}
	for r := session.Reason(1); r.String() != "unknown"; r++ {
		if !bytes.Contains(doc, []byte("`"+r.String()+"`")) {
			t.Errorf("docs/logging.md does not name the reason %q", r)
		}
	}
}

// logger (the entry the commands use today) and closeLog: every line
// logged before closeLog is written.
func TestLoggerClosedByCloseLog(t *testing.T) {
	lf := logFlags{format: "json", level: "info"}
	var out testutil.Buffer
	log, err := lf.logger(&out)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		log.Info("line", "i", i)
	}
	if err := lf.closeLog(); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(out.String(), `"msg":"line"`); n != 100 {
		t.Errorf("%d lines written before closeLog returned, want 100", n)
	}
}
