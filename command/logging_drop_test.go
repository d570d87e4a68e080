package command

import (
	"strings"
	"testing"

	"github.com/pierproxy/pier/internal/testutil"
)

// blockedWriter blocks every Write until released: a log reader that
// stopped reading.
type blockedWriter struct {
	release chan struct{}
	out     testutil.Buffer
}

func (b *blockedWriter) Write(p []byte) (int, error) {
	<-b.release
	return b.out.Write(p)
}

// With stderr stuck, the command's logger drops what does not fit, counts
// it for the exit summary, and says so in the log once stderr moves again.
func TestLoggerDropsAndCounts(t *testing.T) {
	w := &blockedWriter{release: make(chan struct{})}
	lf := logFlags{format: "json", level: "info"}
	log, err := lf.logger(w)
	if err != nil {
		t.Fatal(err)
	}
	const n = 10000 // more than the queue holds
	for i := range n {
		log.Info("session", "id", i)
	}
	log.Warn("something else")
	access, other := lf.dropped()
	if access == 0 || access >= n || other != 1 {
		t.Errorf("dropped %d access and %d other records of %d and 1", access, other, n)
	}
	close(w.release)
	if err := lf.closeLog(); err != nil {
		t.Fatal(err)
	}
	out := w.out.String()
	for _, want := range []string{`"level":"WARN","msg":"access log: dropped `, `"msg":"log: dropped 1 records","dropped":1`} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %s", want)
		}
	}
	if written := strings.Count(out, `"msg":"session"`); uint64(written)+access != n {
		t.Errorf("%d written + %d dropped != %d logged", written, access, n)
	}
}
