package testutil

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// Logs is a slog.Handler that keeps every line as text, "message
// key=value ...", so tests can wait for what a component logs.
type Logs struct {
	mu    sync.Mutex
	lines []string
	seen  chan struct{}
}

// NewLogs returns a collecting logger.
func NewLogs() (*Logs, *slog.Logger) {
	l := &Logs{seen: make(chan struct{}, 1)}
	return l, slog.New(&logsHandler{l: l})
}

type logsHandler struct {
	l     *Logs
	attrs []slog.Attr
}

func (h *logsHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h *logsHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &logsHandler{l: h.l, attrs: append(slices.Clip(h.attrs), as...)}
}

func (h *logsHandler) WithGroup(string) slog.Handler { return h }

func (h *logsHandler) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(r.Message)
	for _, a := range h.attrs {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
	}
	r.Attrs(func(a slog.Attr) bool {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
		return true
	})
	h.l.mu.Lock()
	h.l.lines = append(h.l.lines, b.String())
	h.l.mu.Unlock()
	select {
	case h.l.seen <- struct{}{}:
	default:
	}
	return nil
}

// Find returns the first line containing every part, or "".
func (l *Logs) Find(parts ...string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, line := range l.lines {
		if containsAll(line, parts) {
			return line
		}
	}
	return ""
}

// Count returns how many lines contain every part.
func (l *Logs) Count(parts ...string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, line := range l.lines {
		if containsAll(line, parts) {
			n++
		}
	}
	return n
}

func containsAll(line string, parts []string) bool {
	for _, p := range parts {
		if !strings.Contains(line, p) {
			return false
		}
	}
	return true
}

// WaitFor waits up to timeout for a line containing every part, and
// returns it; the test fails if none comes.
func (l *Logs) WaitFor(t testing.TB, timeout time.Duration, parts ...string) string {
	t.Helper()
	deadline := time.After(timeout)
	for {
		if line := l.Find(parts...); line != "" {
			return line
		}
		select {
		case <-l.seen:
		case <-deadline:
			l.mu.Lock()
			all := strings.Join(l.lines, "\n")
			l.mu.Unlock()
			t.Fatalf("no log line with %q within %v; the log:\n%s", parts, timeout, all)
			return ""
		}
	}
}
