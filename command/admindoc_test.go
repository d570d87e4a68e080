package command

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"

	"github.com/pierproxy/pier/internal/testutil"
)

// example is one curl command of docs/admin.md and the status it notes.
type example struct {
	line   int
	cmd    string
	status string
}

var statusNote = regexp.MustCompile(`\s+# → (\d{3})$`)

// adminDocExamples reads the page's sh blocks: every command ends on a
// line with its status note; a block's lines without one (export) are
// the setup, which the test does itself.
func adminDocExamples(t *testing.T, doc string) []example {
	t.Helper()
	var out []example
	var cur []string
	in := false
	start := 0
	for i, l := range strings.Split(doc, "\n") {
		switch {
		case l == "```sh":
			in, cur = true, nil
		case in && l == "```":
			in = false
		case in:
			if len(cur) == 0 {
				start = i + 1
			}
			cur = append(cur, l)
			if m := statusNote.FindStringSubmatch(l); m != nil {
				cmd := strings.Join(cur, "\n")
				cmd = cmd[:len(cmd)-len(m[0])]
				out = append(out, example{line: start, cmd: cmd, status: m[1]})
				cur = nil
			} else if strings.HasPrefix(l, "export ") {
				cur = nil
			}
		}
	}
	return out
}

// Every curl example of docs/admin.md, run in order against a pier
// started with the page's own configuration, answers the status the page
// says.
func TestAdminDocExamples(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		if os.Getenv("PIER_REQUIRE_CURL") != "" {
			t.Fatal("curl is not installed")
		}
		t.Skip("curl is not installed")
	}
	b, err := os.ReadFile("../docs/admin.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	// The page's configuration: the yaml block with the token file.
	blocks := regexp.MustCompile("(?s)```yaml\n(.*?)```").FindAllStringSubmatch(doc, -1)
	var cfg string
	for _, bl := range blocks {
		if strings.Contains(bl[1], "token_file: admin.token") && strings.Contains(bl[1], "routes:") {
			cfg = bl[1]
		}
	}
	if cfg == "" {
		t.Fatal("docs/admin.md has no example configuration with token_file: admin.token")
	}
	dir := t.TempDir()
	token := filepath.Join(dir, "admin.token")
	if err := os.WriteFile(token, []byte("s3cret-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg = strings.NewReplacer(
		"127.0.0.1:9901", "127.0.0.1:0",
		"127.0.0.1:15432", "127.0.0.1:0",
		"token_file: admin.token", "token_file: "+token,
	).Replace(cfg)
	file := filepath.Join(dir, "pier.yaml")
	writeFile(t, file, cfg)

	p := startPier(t, nil, 1, "run", file)
	admin := p.logged(t, "admin server listening")
	examples := adminDocExamples(t, doc)
	if len(examples) < 20 {
		t.Fatalf("found %d examples in docs/admin.md; the page has more", len(examples))
	}
	for _, ex := range examples {
		cmd := exec.Command("sh", "-c", ex.cmd+" -o /dev/null -w '%{http_code}'")
		cmd.Env = append(os.Environ(), "ADMIN="+admin, "TOKEN=s3cret-token")
		got, err := cmd.Output()
		if err != nil {
			t.Errorf("docs/admin.md:%d: %s: %v", ex.line, ex.cmd, err)
			continue
		}
		if string(got) != ex.status {
			t.Errorf("docs/admin.md:%d: %s\nanswered %s, the page says %s", ex.line, ex.cmd, got, ex.status)
		}
	}
	p.signal(t, syscall.SIGTERM)
	p.wait(t)
}

// The README's quick start for the admin API works as written: pier
// forward with -admin, then each curl answers 200.
func TestREADMEAdminQuickStart(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		if os.Getenv("PIER_REQUIRE_CURL") != "" {
			t.Fatal("curl is not installed")
		}
		t.Skip("curl is not installed")
	}
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var block string
	for _, bl := range regexp.MustCompile("(?s)```sh\n(.*?)```").FindAllStringSubmatch(string(b), -1) {
		if strings.Contains(bl[1], "-admin 127.0.0.1:9901") {
			block = bl[1]
			break
		}
	}
	if block == "" {
		t.Fatal("README has no quick start with -admin 127.0.0.1:9901")
	}
	lines := strings.Split(strings.ReplaceAll(block, "\\\n", " "), "\n")
	fields := strings.Fields(lines[0])
	if len(fields) < 4 || fields[0] != "pier" {
		t.Fatalf("the block does not start with a pier command: %q", lines[0])
	}
	up := testutil.NewUpstream(t, testutil.Echo)
	args := fields[1:]
	for i, a := range args {
		switch a {
		case "127.0.0.1:9090", "127.0.0.1:9901":
			args[i] = "127.0.0.1:0"
		case "127.0.0.1:8080":
			args[i] = up.Addr()
		}
	}
	p := startPier(t, nil, 1, args...)
	admin := p.logged(t, "admin server listening")
	n := 0
	for _, l := range lines[1:] {
		if !strings.HasPrefix(l, "curl ") {
			continue
		}
		cmd, _, _ := strings.Cut(l, "#")
		cmd = strings.ReplaceAll(cmd, "127.0.0.1:9901", admin)
		got, err := exec.Command("sh", "-c", cmd+" -o /dev/null -w '%{http_code}'").Output()
		if err != nil || string(got) != "200" {
			t.Errorf("README: %s: %s, %v", cmd, got, err)
		}
		n++
	}
	if n < 3 {
		t.Errorf("%d curl commands in the README's admin quick start; it has more", n)
	}
	p.signal(t, syscall.SIGTERM)
	p.wait(t)
}
