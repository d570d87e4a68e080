package admin_test

// The dashboard, tested in a real browser: headless Chromium driven by
// chromedp over a real pier (app.Start) with echo upstreams on
// 127.0.0.1:0. Every wait polls the DOM or a socket with a deadline.
//
// Without chromium the tests skip, unless PIER_REQUIRE_CHROMIUM=1 (CI),
// where they fail. PIER_SCREENSHOTS=DIR writes the screenshots there (a
// relative DIR from the repository's root: docs/img for the README's);
// else to a temporary directory.

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/pierproxy/pier/config"
	"github.com/pierproxy/pier/filter"
	"github.com/pierproxy/pier/internal/app"
	"github.com/pierproxy/pier/internal/testutil"
)

// within bounds every wait of a browser test: generous for two shared
// cores, while the page itself polls once a second.
const within = 10 * time.Second

// chromiumPath finds the browser, or skips (fails under
// PIER_REQUIRE_CHROMIUM=1).
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("PIER_REQUIRE_CHROMIUM") == "1" {
		t.Fatal("chromium not found in PATH and PIER_REQUIRE_CHROMIUM=1")
	}
	t.Skip("chromium not found (install it, or set PIER_REQUIRE_CHROMIUM=1 to fail instead)")
	return ""
}

// browser starts headless Chromium for the test; tabs share it.
func browser(t *testing.T) context.Context {
	t.Helper()
	path := chromiumPath(t)
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox, // as root in a container
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.WindowSize(1280, 900),
	)
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(alloc)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil { // starts the browser
		t.Fatalf("starting chromium: %v", err)
	}
	return ctx
}

// tab is one page of the browser, with what its console said.
type tab struct {
	t   *testing.T
	ctx context.Context
	mu  sync.Mutex
	// problems are console errors, uncaught exceptions and the browser's
	// own error entries (a CSP violation, a failed load).
	problems []string
}

// openTab opens url in a new tab; each of init runs in the page before
// any of the page's own scripts.
func openTab(t *testing.T, b context.Context, url string, init ...string) *tab {
	t.Helper()
	ctx, cancel := chromedp.NewContext(b)
	t.Cleanup(cancel)
	tb := &tab{t: t, ctx: ctx}
	err := chromedp.Listen(ctx, func(ev any) {
		var p string
		switch ev := ev.(type) {
		case *runtime.EventConsoleAPICalled:
			if ev.Type == runtime.ConsoleAPICalledTypeError || ev.Type == runtime.ConsoleAPICalledTypeWarning || ev.Type == runtime.ConsoleAPICalledTypeAssert {
				var args []string
				for _, a := range ev.Args {
					args = append(args, string(a.Value)+a.Description)
				}
				p = "console." + string(ev.Type) + ": " + strings.Join(args, " ")
			}
		case *runtime.EventExceptionThrown:
			p = "exception: " + ev.ExceptionDetails.Text
			if ev.ExceptionDetails.Exception != nil {
				p += " " + ev.ExceptionDetails.Exception.Description
			}
		case *cdplog.EventEntryAdded:
			if ev.Entry.Level == cdplog.EntryLevelError || ev.Entry.Level == cdplog.EntryLevelWarning {
				p = "log " + string(ev.Entry.Source) + ": " + ev.Entry.Text + " " + ev.Entry.URL
			}
		}
		if p != "" {
			tb.mu.Lock()
			tb.problems = append(tb.problems, p)
			tb.mu.Unlock()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, js := range init {
		tb.do(chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
			_, err := chromedp.Call(ctx, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: js})
			return err
		}))
	}
	tb.do(chromedp.Navigate(url))
	return tb
}

// do runs actions with the tab's deadline.
func (tb *tab) do(actions ...chromedp.Action[chromedp.Void]) {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, within)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		tb.t.Fatalf("browser: %v", err)
	}
}

// eval evaluates a JavaScript expression and decodes its value into T.
func eval[T any](tb *tab, js string) T {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, within)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](js))
	if err != nil {
		tb.t.Fatalf("evaluating %s: %v", js, err)
	}
	return v
}

// waitFor polls a JavaScript condition until it holds, at most d; it
// returns how long that took.
func (tb *tab) waitFor(what, js string, d time.Duration) time.Duration {
	tb.t.Helper()
	start := time.Now()
	for {
		if eval[bool](tb, "!!("+js+")") {
			return time.Since(start)
		}
		if time.Since(start) > d {
			tb.screenshot("failed-" + strings.NewReplacer(" ", "-", "/", "-").Replace(what))
			tb.t.Fatalf("waited %v for %s (%s)", d, what, js)
		}
		time.Sleep(50 * time.Millisecond) // a poll of the DOM, not a wait for a server
	}
}

// click clicks an element the page does not re-render (a dialog's
// button) as a person would: the mouse at its place.
func (tb *tab) click(sel string) {
	tb.t.Helper()
	tb.do(chromedp.Click(chromedp.CSS(sel), chromedp.NodeVisible))
}

// press clicks an element of a table or card the page re-renders every
// second as a person does: the mouse pressed at its place, then released.
func (tb *tab) press(sel string) { tb.pressHolding(sel, nil) }

// pressHolding presses the mouse on the element sel names, runs hold
// with the button down (nil: none), and releases it at the same place.
// The element's place is read before the press: should a render move
// it in between (the page holds its renders only once the button is
// down), the mouse is released away from it and the press tried again.
func (tb *tab) pressHolding(sel string, hold func()) {
	tb.t.Helper()
	tb.waitFor("an element "+sel, "document.querySelector("+q(sel)+")", within)
	for attempt := 1; ; attempt++ {
		xy := eval[[]float64](tb, `(() => { const e = document.querySelector(`+q(sel)+`); if (!e) return [];
			e.scrollIntoView({block: "center"}); const r = e.getBoundingClientRect();
			return [r.left + r.width / 2, r.top + r.height / 2] })()`)
		if len(xy) != 2 {
			tb.t.Fatalf("no element %s to press", sel)
		}
		x, y := xy[0], xy[1]
		tb.do(chromedp.MouseEvent(chromedp.MousePressed, x, y, chromedp.ButtonLeft, chromedp.ClickCount(1)))
		if eval[bool](tb, fmt.Sprintf(`(() => { const e = document.elementFromPoint(%g, %g); return !!e && !!e.closest(%s) })()`, x, y, q(sel))) {
			if hold != nil {
				hold()
			}
			tb.do(chromedp.MouseEvent(chromedp.MouseReleased, x, y, chromedp.ButtonLeft, chromedp.ClickCount(1)))
			return
		}
		// Not on it: release on the page's margin, where a click does nothing.
		tb.do(chromedp.MouseEvent(chromedp.MouseReleased, 2, 2, chromedp.ButtonLeft, chromedp.ClickCount(1)))
		if attempt == 3 {
			tb.t.Fatalf("pressed %s %d times, and each time another element was under the mouse", sel, attempt)
		}
	}
}

// afterPolls waits until the page has had n more poll answers.
func (tb *tab) afterPolls(n int) {
	tb.t.Helper()
	now := eval[float64](tb, `Number(document.body.dataset.polls || 0)`)
	tb.waitFor(fmt.Sprintf("%d polls", n), fmt.Sprintf(`Number(document.body.dataset.polls || 0) >= %d`, int(now)+n), within)
}

// confirm waits for the confirmation dialog, checks its title says want,
// and accepts it.
func (tb *tab) confirm(want string) {
	tb.t.Helper()
	tb.waitFor("the confirmation", `document.querySelector("#ask").open`, within)
	if title := eval[string](tb, `document.querySelector("#ask-title").textContent`); !strings.Contains(title, want) {
		tb.t.Fatalf("confirmation %q, want it to say %q", title, want)
	}
	tb.click("#ask-ok")
	tb.waitFor("the confirmation to close", `!document.querySelector("#ask").open`, within)
}

// screenshot writes the whole page as NAME.png to $PIER_SCREENSHOTS or
// the test's temporary directory.
func (tb *tab) screenshot(name string) { tb.capture(name, chromedp.FullScreenshot(100)) }

// capture writes what shot takes as NAME.png.
func (tb *tab) capture(name string, shot chromedp.Action[[]byte]) {
	dir := os.Getenv("PIER_SCREENSHOTS")
	switch {
	case dir == "":
		dir = tb.t.TempDir()
	case !filepath.IsAbs(dir):
		dir = filepath.Join("..", "..", dir) // from the repository's root, not this package's
	}
	ctx, cancel := context.WithTimeout(tb.ctx, within)
	defer cancel()
	png, err := chromedp.Run(ctx, shot)
	if err != nil {
		tb.t.Errorf("screenshot %s: %v", name, err)
		return
	}
	path := filepath.Join(dir, name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		tb.t.Errorf("screenshot: %v", err)
		return
	}
	tb.t.Logf("screenshot %s", path)
}

// noProblems fails the test if the page logged an error, but for those
// the test expects (allowed substrings).
func (tb *tab) noProblems(allowed ...string) {
	tb.t.Helper()
	tb.mu.Lock()
	defer tb.mu.Unlock()
next:
	for _, p := range tb.problems {
		for _, a := range allowed {
			if strings.Contains(p, a) {
				continue next
			}
		}
		tb.t.Errorf("the page logged: %s", p)
	}
}

// testPier is a running pier with its admin server, two echo members on
// route web and a route whose member refuses.
type testPier struct {
	d       *app.Daemon
	file    string // the config file, which a reload reads
	doc     string // what the file held at the start
	admin   string // http://127.0.0.1:port
	web     string // route web's address
	members [2]string
	dialed  [2]*atomic.Int64 // sessions each member accepted
}

func startPier(t *testing.T, token string) *testPier {
	t.Helper()
	p := &testPier{}
	for i := range p.members {
		n := new(atomic.Int64)
		p.dialed[i] = n
		up := testutil.NewUpstream(t, func(c *net.TCPConn) { n.Add(1); testutil.Echo(c) })
		p.members[i] = up.Addr()
	}
	dir := t.TempDir()
	admin := `admin: {listen: "127.0.0.1:0"}`
	if token != "" {
		file := filepath.Join(dir, "admin.token")
		if err := os.WriteFile(file, []byte(token), 0o600); err != nil {
			t.Fatal(err)
		}
		admin = fmt.Sprintf("admin: {listen: \"127.0.0.1:0\", token_file: %q}", file)
	}
	doc := fmt.Sprintf(`%s
routes:
  - name: web
    listen: ["127.0.0.1:0"]
    upstreams: [{address: %q}, {address: %q}]
  - name: legacy
    listen: ["127.0.0.1:0"]
    upstreams: [{address: %q}]
`, admin, p.members[0], p.members[1], testutil.RefusedAddr(t))
	file := filepath.Join(dir, "pier.yaml")
	if err := os.WriteFile(file, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse(file, []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	d, err := app.Start(cfg, app.Options{Log: slog.New(slog.DiscardHandler), Loops: 1, ConfigFile: file})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), within)
		defer cancel()
		d.Stop(ctx)
	})
	p.d, p.file, p.doc = d, file, doc
	p.admin = "http://" + d.AdminAddr().String()
	p.web = d.Addrs("web")[0].String()
	return p
}

func (p *testPier) route(name string) string { return p.d.Addrs(name)[0].String() }

// dial opens a session through addr; the test's end closes it.
func dial(t *testing.T, addr string) *net.TCPConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, within)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn)
}

// echo writes n bytes and reads them back, and says how long it took.
func echo(t *testing.T, c net.Conn, n int) time.Duration {
	t.Helper()
	start := time.Now()
	c.SetDeadline(time.Now().Add(within))
	msg := []byte(strings.Repeat("p", n))
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, msg); err != nil {
		t.Fatalf("echo: %v", err)
	}
	return time.Since(start)
}

// get asks the admin API without a token and answers the status.
func get(t *testing.T, url string) (int, http.Header) {
	t.Helper()
	c := &http.Client{Timeout: within, Transport: &http.Transport{}}
	defer c.CloseIdleConnections()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, resp.Header
}

func q(s string) string { b, _ := json.Marshal(s); return string(b) }

// send asks the admin API without a token and answers the status.
func send(t *testing.T, method, url, body string) int {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	c := &http.Client{Timeout: within, Transport: &http.Transport{}}
	defer c.CloseIdleConnections()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// freeFilter is a filter that declares no options (Spec.Options nil), as
// a user's own may: the form offers it a list of option=value lines.
// freeSeen is what it last read: "TAG SIZE".
const freeFilter = "test_undeclared"

var freeSeen atomic.Pointer[string]

func init() {
	filter.Register(filter.Spec{Name: freeFilter, Short: "passes bytes; reads tag and size", New: func(o *filter.Options) (filter.Filter, error) {
		seen := fmt.Sprintf("%s %d", o.String("tag", ""), o.Int("size", 0, 0, 100))
		if err := o.Err(); err != nil {
			return nil, err
		}
		if !o.DryRun() {
			freeSeen.Store(&seen)
		}
		return passFilter{}, nil
	}})
}

// passFilter passes every byte: no Stream either way.
type passFilter struct{}

func (passFilter) Streams(*filter.Session) (toUpstream, toClient filter.Stream) { return nil, nil }

// TestDashboardInBrowser runs the browser checks against one
// pier and one browser, each check in its own tab.
func TestDashboardInBrowser(t *testing.T) {
	b := browser(t)
	p := startPier(t, "")

	t.Run("PageLoadsWithoutErrors", func(t *testing.T) {
		start := time.Now()
		tb := openTab(t, b, p.admin+"/")
		tb.waitFor("route web's card", `document.querySelector('.route[data-route="web"] table.members tbody tr')`, within)
		tb.waitFor("the ready status", `document.querySelector("#status").textContent === "ready"`, within)
		if !eval[bool](tb, `document.querySelector("#login").hidden`) {
			t.Error("the login form shows on a pier without a token")
		}
		t.Logf("page ready in %v", time.Since(start))
		// A few polls, so an error of a later render would show too.
		tb.waitFor("three polls", `Number(document.body.dataset.polls) >= 3`, within)
		tb.noProblems()
		status, h := get(t, p.admin+"/")
		csp := h.Get("Content-Security-Policy")
		if status != 200 || !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe-inline") ||
			!strings.Contains(csp, "frame-ancestors 'none'") || h.Get("X-Content-Type-Options") != "nosniff" || h.Get("Referrer-Policy") != "no-referrer" {
			t.Errorf("GET /: %d, headers %v", status, h)
		}
	})

	t.Run("SessionAppearsAndGrowsThenEnds", func(t *testing.T) {
		tb := openTab(t, b, p.admin+"/")
		tb.waitFor("route web's card", `document.querySelector('.route[data-route="web"]')`, within)
		c := dial(t, p.web)
		echo(t, c, 100)
		row := `#sessions-table tr[data-client=` + q(c.LocalAddr().String()) + `]`
		took := tb.waitFor("the session's row", `document.querySelector(`+q(row)+`)`, within)
		t.Logf("the session appeared in the table after %v", took)
		if took > 2*time.Second {
			t.Errorf("the session took %v to appear, want ≤ 2 s", took)
		}
		upBytes := `Number(document.querySelector(` + q(row+" td.up") + `).dataset.bytes)`
		before := eval[float64](tb, upBytes)
		echo(t, c, 5000)
		tb.waitFor("the session's bytes to grow", upBytes+` >= `+fmt.Sprint(before+5000), within)

		tb.press(row + ` button.end-session[data-mode="close"]`)
		tb.confirm("Close session")
		c.SetReadDeadline(time.Now().Add(within))
		if n, err := c.Read(make([]byte, 1)); !errors.Is(err, io.EOF) && !testutil.IsReset(err) {
			t.Fatalf("the client read %d bytes, %v after the end, want EOF or a reset", n, err)
		}
		tb.waitFor("the row to go", `!document.querySelector(`+q(row)+`)`, within)
		tb.waitFor("the result shown", `document.querySelector("#toasts").textContent.includes("ended")`, within)
		tb.waitFor("the end in recent ends", `[...document.querySelectorAll("#ends-table td .pill")].some(e => e.textContent === "admin")`, within)
		tb.noProblems()
	})

	t.Run("DrainStopsNewSessions", func(t *testing.T) {
		tb := openTab(t, b, p.admin+"/")
		member := p.members[0]
		btn := `.route[data-route="web"] button.member-act[data-member=` + q(member) + `]`
		tb.press(btn + `[data-act="drain"]`)
		tb.confirm("Drain")
		tb.waitFor("the member draining", `document.querySelector(`+q(`.route[data-route="web"] tr[data-member=`+q(member)+`] .health`)+`).textContent === "draining"`, within)
		tb.waitFor("the change highlighted", `document.querySelector(`+q(`.route[data-route="web"] tr[data-member=`+q(member)+`].flash`)+`)`, within)
		drained, other := p.dialed[0].Load(), p.dialed[1].Load()
		for range 4 {
			echo(t, dial(t, p.web), 10)
		}
		if got := p.dialed[0].Load(); got != drained {
			t.Errorf("the drained member got %d new sessions, want 0", got-drained)
		}
		if got := p.dialed[1].Load(); got != other+4 {
			t.Errorf("the other member got %d new sessions, want 4", got-other)
		}
		tb.press(btn + `[data-act="undrain"]`)
		tb.waitFor("the member up", `document.querySelector(`+q(`.route[data-route="web"] tr[data-member=`+q(member)+`] .health`)+`).textContent === "up"`, within)
		tb.noProblems()
	})

	t.Run("LatencyFilterFromTheForm", func(t *testing.T) {
		tb := openTab(t, b, p.admin+"/")
		base := echo(t, dial(t, p.web), 10)
		if base >= 150*time.Millisecond {
			t.Fatalf("echo without a filter took %v", base)
		}
		tb.press(`.route[data-route="web"] button.add-filter`)
		tb.waitFor("the filter form", `document.querySelector("#filter-dialog").open && document.querySelector("#opt-delay")`, within)
		if name := eval[string](tb, `document.querySelector("#filter-name").value`); name != "latency" {
			t.Fatalf("the form starts on %q, want latency", name)
		}
		tb.screenshot("filter-form")
		tb.do(chromedp.SendKeys(chromedp.CSS("#opt-delay"), "200ms"))
		tb.click("#filter-add")
		tb.confirm("Add latency to web")
		tb.waitFor("the form to close", `!document.querySelector("#filter-dialog").open`, within)
		tb.waitFor("the latency chip", `document.querySelector('.route[data-route="web"] .chip[data-filter="latency"]')`, within)
		if d := echo(t, dial(t, p.web), 10); d < 200*time.Millisecond {
			t.Errorf("echo with a 200ms latency took %v, want ≥ 200ms", d)
		} else {
			t.Logf("echo with the filter: %v (without: %v)", d, base)
		}
		tb.press(`.route[data-route="web"] .chip[data-filter="latency"] button.remove-filter`)
		tb.confirm("Remove latency")
		tb.waitFor("the chip to go", `!document.querySelector('.route[data-route="web"] .chip[data-filter="latency"]')`, within)
		if d := echo(t, dial(t, p.web), 10); d >= 200*time.Millisecond {
			t.Errorf("echo after removing the filter took %v, want < 200ms", d)
		}
		tb.noProblems()
	})

	t.Run("BadOptionShownAtItsField", func(t *testing.T) {
		tb := openTab(t, b, p.admin+"/")
		tb.press(`.route[data-route="web"] button.add-filter`)
		tb.waitFor("the filter form", `document.querySelector("#filter-dialog").open && document.querySelector("#opt-delay")`, within)
		tb.do(chromedp.SendKeys(chromedp.CSS("#opt-delay"), "soon"))
		tb.click("#filter-add")
		tb.confirm("Add latency to web")
		tb.waitFor("the error at the delay field", `document.querySelector("#opt-delay-err").textContent !== ""`, within)
		msg := eval[string](tb, `document.querySelector("#opt-delay-err").textContent`)
		if !strings.Contains(msg, "soon") && !strings.Contains(strings.ToLower(msg), "duration") {
			t.Errorf("the delay field's error %q does not say what is wrong", msg)
		}
		if !eval[bool](tb, `document.querySelector("#filter-dialog").open && document.querySelector("#opt-delay").getAttribute("aria-invalid") === "true"`) {
			t.Error("the form closed, or the field is not marked invalid")
		}
		if other := eval[string](tb, `document.querySelector("#opt-jitter-err").textContent`); other != "" {
			t.Errorf("another field shows an error: %q", other)
		}
		t.Logf("the delay field says: %s", msg)
		tb.screenshot("filter-form-error")
		tb.click("#filter-cancel")
		tb.noProblems("status of 400")
	})

	t.Run("ReloadAfterItsPreview", func(t *testing.T) {
		// The file on disk changes: a route more.
		extra := p.doc + fmt.Sprintf(`  - name: extra
    listen: ["127.0.0.1:0"]
    upstreams: [{address: %q}]
`, p.members[0])
		if err := os.WriteFile(p.file, []byte(extra), 0o600); err != nil {
			t.Fatal(err)
		}
		tb := openTab(t, b, p.admin+"/")
		tb.waitFor("route web's card", `document.querySelector('.route[data-route="web"]')`, within)
		tb.click("#reload-open")
		// The file's preview comes first, and lists the change.
		tb.waitFor("the file's preview", `document.querySelector("#file-preview .preview-changes, #file-preview .preview-problems, #file-preview .preview-none")`, within)
		if !eval[bool](tb, `[...document.querySelectorAll("#file-preview .preview-changes tr")].some(tr => tr.textContent.includes("extra") && tr.textContent.includes("add"))`) {
			t.Fatalf("the file's preview does not show the new route: %s", eval[string](tb, `document.querySelector("#file-preview").textContent`))
		}
		if eval[bool](tb, `document.querySelector("#reload-btn").disabled`) {
			t.Fatal("reload is not offered after the file's preview")
		}
		if eval[bool](tb, `document.querySelector("#check-details").open`) {
			t.Error("the editor's preview shows before the file's")
		}
		tb.screenshot("reload-preview")

		// The editor's preview, the second option: an edited text.
		tb.click("#check-details summary")
		tb.waitFor("the config in force", `document.querySelector("#config-text").value.includes("legacy")`, within)
		tb.do(chromedp.Evaluate[chromedp.Void](`(() => { const t = document.querySelector("#config-text");
			t.value = t.value.replace(/name: legacy/, "name: legacy2"); })()`))
		tb.click("#preview-btn")
		tb.waitFor("the editor's preview", `[...document.querySelectorAll("#preview .preview-changes td")].some(td => td.textContent === "legacy2")`, within)

		tb.click("#reload-btn")
		tb.confirm("Reload")
		tb.waitFor("the reload's result", `document.querySelector("#reload-result").textContent.includes("reloaded")`, within)
		if addrs := p.d.Addrs("extra"); len(addrs) == 0 {
			t.Fatal("route extra is not listening after the reload")
		}
		echo(t, dial(t, p.route("extra")), 10)
		// The file's preview again: nothing left to change.
		tb.waitFor("no change left", `document.querySelector("#file-preview .preview-none")`, within)
		tb.click("#reload-close")
		tb.waitFor("route extra's card", `document.querySelector('.route[data-route="extra"]')`, within)

		// A missing file: the preview says so, and no reload is offered.
		if err := os.Rename(p.file, p.file+".away"); err != nil {
			t.Fatal(err)
		}
		defer os.Rename(p.file+".away", p.file)
		tb.click("#reload-open")
		tb.waitFor("the file's mistakes", `document.querySelector("#file-preview .preview-problems")`, within)
		if msg := eval[string](tb, `document.querySelector("#file-preview").textContent`); !strings.Contains(msg, "no such file") {
			t.Errorf("the missing file's preview says %q", msg)
		}
		if !eval[bool](tb, `document.querySelector("#reload-btn").disabled`) {
			t.Error("reload is offered for a missing file")
		}
		tb.click("#reload-close")
		tb.noProblems()
	})

	t.Run("SortByBytesOnTheServer", func(t *testing.T) {
		// 60 sessions, more than a page (50), each with its own bytes
		// (at least 10 KB each way, more than any other session of these
		// tests), opened in an order that is not their bytes' order.
		const n = 60
		clients := make(map[string]int64)
		for k := range n {
			size := 10000 + 100*((k*37)%n)
			c := dial(t, p.web)
			echo(t, c, size)
			clients[c.LocalAddr().String()] = int64(2 * size)
		}
		var want []int64 // the sums, heaviest first
		for _, b := range clients {
			want = append(want, b)
		}
		slices.Sort(want)
		slices.Reverse(want)

		tb := openTab(t, b, p.admin+"/")
		tb.waitFor("a full page", `document.querySelectorAll("#sessions-table tbody tr[data-id]").length === 50`, within)
		tb.press(`#sessions-table th button.sort[data-sort="bytes"]`)
		tb.waitFor("the sort in force", `document.querySelector("#sessions-table").dataset.sort === "bytes" &&
			document.querySelector("#sessions-page").textContent.includes("most bytes first")`, within)
		if !eval[bool](tb, `document.querySelector('th button.sort[data-sort="bytes"]').classList.contains("desc")`) {
			t.Error("the bytes header does not show the sort")
		}
		rows := `[...document.querySelectorAll("#sessions-table tbody tr[data-id]")].map(tr =>
			[tr.dataset.client, Number(tr.querySelector("td.up").dataset.bytes) + Number(tr.querySelector("td.down").dataset.bytes)])`
		// mine is this page's sessions of this test, in the table's order.
		mine := func(page [][]any) (sums []int64) {
			for _, r := range page {
				if b, ok := clients[r[0].(string)]; ok {
					if got := int64(r[1].(float64)); got != b {
						t.Errorf("session from %s: %d bytes shown, want %d", r[0], got, b)
					}
					sums = append(sums, b)
				}
			}
			return sums
		}
		page1 := mine(eval[[][]any](tb, rows))
		if !slices.Equal(page1, want[:50]) {
			t.Errorf("page 1 by bytes: %v, want the heaviest 50: %v", page1, want[:50])
		}
		tb.screenshot("sessions-by-bytes")
		tb.click("#sessions-next")
		tb.waitFor("page 2", `document.querySelector("#sessions-page").textContent.startsWith("page 2")`, within)
		tb.waitFor("page 2's rows", `document.querySelectorAll("#sessions-table tbody tr[data-id]").length >= 10`, within)
		if page2 := mine(eval[[][]any](tb, rows)); !slices.Equal(page2, want[50:]) {
			t.Errorf("page 2 by bytes: %v, want %v", page2, want[50:])
		}
		// Age: newest first, from the first page.
		tb.press(`#sessions-table th button.sort[data-sort="age"]`)
		tb.waitFor("newest first", `document.querySelector("#sessions-table").dataset.sort === "age" &&
			document.querySelector("#sessions-page").textContent.startsWith("page 1 · newest first")`, within)
		ids := eval[[]float64](tb, `[...document.querySelectorAll("#sessions-table tbody tr[data-id]")].map(tr => Number(tr.dataset.id))`)
		if len(ids) != 50 || !slices.IsSortedFunc(ids, func(a, b float64) int { return cmp.Compare(b, a) }) {
			t.Errorf("by age: ids %v, want 50 newest first", ids)
		}
		tb.noProblems()
	})

	t.Run("UndeclaredOptionsAsAList", func(t *testing.T) {
		tb := openTab(t, b, p.admin+"/")
		tb.press(`.route[data-route="web"] button.add-filter`)
		tb.waitFor("the filter form", `document.querySelector("#filter-dialog").open`, within)
		tb.do(chromedp.SetValue(chromedp.CSS("#filter-name"), freeFilter),
			chromedp.Evaluate[chromedp.Void](`document.querySelector("#filter-name").dispatchEvent(new Event("change"))`))
		tb.waitFor("the free options field", `document.querySelector("#opt-free")`, within)
		if eval[bool](tb, `!!document.querySelector("#filter-fields [data-kind]") || document.querySelector("#filter-fields").textContent.includes("takes no options")`) {
			t.Error("an undeclared filter shows option fields, or says it takes none")
		}
		tb.screenshot("filter-form-undeclared")
		// A line that is not option=value: an error at the field, no request.
		tb.do(chromedp.SetValue(chromedp.CSS("#opt-free"), "tag=blue\ncolour"))
		tb.click("#filter-add")
		tb.waitFor("the line's error", `document.querySelector("#opt-free-err").textContent.includes("line 2")`, within)
		if eval[bool](tb, `document.querySelector("#ask").open`) {
			t.Fatal("a bad line asked for confirmation")
		}
		tb.do(chromedp.SetValue(chromedp.CSS("#opt-free"), "tag = blue\n\nsize=3"))
		tb.click("#filter-add")
		tb.confirm("Add " + freeFilter + " to web")
		tb.waitFor("the form to close", `!document.querySelector("#filter-dialog").open`, within)
		chip := `.route[data-route="web"] .chip[data-filter="` + freeFilter + `"]`
		tb.waitFor("the filter's chip", `document.querySelector(`+q(chip)+`)`, within)
		if got := freeSeen.Load(); got == nil || *got != "blue 3" {
			t.Errorf("the filter read %v, want tag blue and size 3", got)
		}
		if text := eval[string](tb, `document.querySelector(`+q(chip)+`).textContent`); !strings.Contains(text, "tag=blue") || !strings.Contains(text, "size=3") {
			t.Errorf("the chip says %q", text)
		}
		tb.press(chip + ` button.remove-filter`)
		tb.confirm("Remove " + freeFilter)
		tb.waitFor("the chip to go", `!document.querySelector(`+q(chip)+`)`, within)
		tb.noProblems()
	})

	t.Run("ClickHeldAcrossPolls", func(t *testing.T) {
		// A person's click is a press and a release; a poll's render in
		// between must not lose it. The mouse stays down over two polls.
		c := dial(t, p.web)
		echo(t, c, 10)
		tb := openTab(t, b, p.admin+"/")
		row := `#sessions-table tr[data-client=` + q(c.LocalAddr().String()) + `]`
		tb.waitFor("the session's row", `document.querySelector(`+q(row)+`)`, within)

		tb.pressHolding(`.route[data-route="web"] button.add-filter`, func() { tb.afterPolls(2) })
		tb.waitFor("the filter form after a click held over two polls", `document.querySelector("#filter-dialog").open`, within)
		tb.click("#filter-cancel")
		tb.waitFor("the form to close", `!document.querySelector("#filter-dialog").open`, within)

		tb.pressHolding(row+` button.end-session[data-mode="close"]`, func() { tb.afterPolls(2) })
		tb.waitFor("the confirmation after a click held over two polls", `document.querySelector("#ask").open`, within)
		tb.click("#ask-cancel")
		tb.waitFor("the confirmation to close", `!document.querySelector("#ask").open`, within)
		echo(t, c, 10) // cancelled: the session lives on
		// The renders held by the press came after it: the page is live.
		renders := eval[float64](tb, `Number(document.body.dataset.renders)`)
		tb.waitFor("renders again", fmt.Sprintf(`Number(document.body.dataset.renders) > %d`, int(renders)), within)
		tb.noProblems()
	})

	t.Run("RowsUpdatedInPlace", func(t *testing.T) {
		// A poll changes a button's row, not the button: the element a
		// person presses is the element that gets the release.
		c := dial(t, p.web)
		echo(t, c, 10)
		tb := openTab(t, b, p.admin+"/")
		row := `#sessions-table tr[data-client=` + q(c.LocalAddr().String()) + `]`
		member := `.route[data-route="web"] tr[data-member=` + q(p.members[1]) + `]`
		tb.waitFor("the session's row", `document.querySelector(`+q(row)+`)`, within)
		tb.do(chromedp.Evaluate[chromedp.Void](`window.kept = [` + q(row+" button.end-session") + `, ` + q(member+" button.member-act") +
			`, '.route[data-route="web"] button.add-filter', '.route[data-route="web"]'].map(s => document.querySelector(s))`))
		tb.afterPolls(2)
		before := eval[float64](tb, `Number(document.querySelector(`+q(row+" td.up")+`).dataset.bytes)`)
		echo(t, c, 3000)
		tb.waitFor("the row's bytes to grow", fmt.Sprintf(`Number(document.querySelector(%s).dataset.bytes) >= %d`, q(row+" td.up"), int(before)+3000), within)
		if lost := eval[[]float64](tb, `window.kept.map((e, i) => e.isConnected ? -1 : i).filter(i => i >= 0)`); len(lost) > 0 {
			t.Errorf("elements %v (session button, member button, add filter, card) were replaced by a poll", lost)
		}
		tb.noProblems()
	})

	t.Run("WeightChangeHighlighted", func(t *testing.T) {
		tb := openTab(t, b, p.admin+"/")
		member := p.members[1]
		tr := `.route[data-route="web"] tr[data-member=` + q(member) + `]`
		tb.waitFor("the member's row", `document.querySelector(`+q(tr)+`)`, within)
		tb.afterPolls(1)
		if eval[bool](tb, `!!document.querySelector(`+q(tr+".flash")+`)`) {
			t.Fatal("the row is highlighted before any change")
		}
		weight := p.admin + "/api/v1/routes/web/members/" + member + "/weight"
		if status := send(t, "PUT", weight, `{"weight": 7}`); status != http.StatusOK {
			t.Fatalf("PUT weight: %d", status)
		}
		defer send(t, "PUT", weight, `{"weight": 1}`)
		tb.waitFor("the weight highlighted", `document.querySelector(`+q(tr+".flash")+`) && document.querySelector(`+q(tr)+`).children[2].textContent.startsWith("7")`, within)
		tb.noProblems()
	})

	t.Run("EndsFailureStaysInItsSection", func(t *testing.T) {
		tb := openTab(t, b, p.admin+"/")
		tb.waitFor("the ready status", `document.querySelector("#status").textContent === "ready"`, within)
		// Ends answers as it does when a relay loop is slow (503,
		// partial); the page's own fetch for everything else. History
		// reads are counted.
		tb.do(chromedp.Evaluate[chromedp.Void](`(() => {
			const real = window.fetch; window.realFetch = real; window.historyReads = 0;
			window.fetch = (url, init) => {
				if (String(url).includes("api/v1/history")) window.historyReads++;
				if (!String(url).includes("api/v1/ends")) return real(url, init);
				return Promise.resolve(new Response(JSON.stringify({error: "admin: a relay loop did not answer in time", partial: true}),
					{status: 503, headers: {"Content-Type": "application/json"}}));
			};
		})()`))
		tb.waitFor("the ends' error", `document.querySelector("#ends-error").textContent === "ends: a relay loop did not answer; retrying"`, within)
		if status := eval[string](tb, `document.querySelector("#status").textContent`); status != "ready" {
			t.Errorf("the status says %q while only ends fails, want ready", status)
		}
		// The rest stays live: a new session shows up.
		c := dial(t, p.web)
		echo(t, c, 10)
		tb.waitFor("a new session's row while ends fails", `document.querySelector(`+q(`#sessions-table tr[data-client=`+q(c.LocalAddr().String())+`]`)+`)`, within)
		if msg := eval[string](tb, `document.querySelector("#routes-error").textContent + document.querySelector("#sessions-error").textContent`); msg != "" {
			t.Errorf("other sections say %q", msg)
		}
		// History is read every 5 s, not each poll: over 6 polls, at most 2.
		reads := eval[float64](tb, `window.historyReads`)
		tb.afterPolls(6)
		if n := eval[float64](tb, `window.historyReads`) - reads; n > 2 || n < 1 {
			t.Errorf("history read %v times over 6 polls, want 1 or 2", n)
		}
		tb.do(chromedp.Evaluate[chromedp.Void](`window.fetch = window.realFetch`))
		tb.waitFor("the ends' error to go", `document.querySelector("#ends-error").textContent === ""`, within)
		tb.noProblems()
	})

	t.Run("DialFailuresCountTimeouts", func(t *testing.T) {
		// A route's stats as pier would give them after 3 refused dials
		// and 4 timed out (a timeout is hard to make on loopback).
		tb := openTab(t, b, p.admin+"/", `(() => { const real = window.fetch;
			window.fetch = (url, init) => !/api\/v1\/routes$/.test(String(url)) ? real(url, init) :
				real(url, init).then(r => r.json()).then(j => {
					for (const rt of j.routes) if (rt.name === "legacy") rt.stats.ended = {...rt.stats.ended, connect_failed: 3, connect_timeout: 4};
					return new Response(JSON.stringify(j), {status: 200, headers: {"Content-Type": "application/json"}});
				}); })();`)
		pill := `document.querySelector('.route[data-route="legacy"] .dial-failed')`
		tb.waitFor("legacy's dial failures", pill, within)
		if got := eval[string](tb, pill+`.textContent`); got != "dial failed 7 (4 timed out)" {
			t.Errorf("legacy's card says %q, want the 3 failed and 4 timed out dials: dial failed 7 (4 timed out)", got)
		}
		tb.noProblems()
	})

	t.Run("FormatsAndServerClock", func(t *testing.T) {
		// The browser's clock is an hour fast; the page's relative times
		// are measured against the server's (its Date header).
		tb := openTab(t, b, p.admin+"/", `window.pierTest = {};
			(() => { const real = Date.now; Date.now = () => real.call(Date) + 3600e3; })();`)
		tb.waitFor("the ready status", `document.querySelector("#status").textContent === "ready"`, within)
		for _, c := range []struct {
			js, want string
		}{
			{"bytes(0)", "0 B"}, {"bytes(999.4)", "999 B"}, {"bytes(999.7)", "1.0 KB"}, {"bytes(1500)", "1.5 KB"},
			{"bytes(9960)", "10 KB"}, {"bytes(999999)", "1.0 MB"}, {"bytes(123456789)", "123 MB"}, {"rate(2048)", "2.0 KB/s"},
			{"perSec(9.96)", "10/s"}, {"perSec(0.25)", "0.3/s"}, {"perSec(42.4)", "42/s"},
			{"duration(0.0004)", "0 ms"}, {"duration(0.9996)", "1.0 s"}, {"duration(9.96)", "10 s"}, {"duration(59.6)", "1 min 0 s"},
			{"duration(119.6)", "2 min 0 s"}, {"duration(3599.6)", "1 h 0 min"}, {"duration(7199)", "2 h 0 min"},
			{"duration(5400)", "1 h 30 min"}, {"duration(86399)", "1 d 0 h"}, {"duration(90000)", "1 d 1 h"},
			{"ago(serverNow() - 5500)", "5 s ago"}, {"ago(serverNow() + 2000)", "just now"}, {"ago(serverNow() - 7200e3)", "2 h ago"},
		} {
			if got := eval[string](tb, "(({bytes, rate, perSec, duration, ago, serverNow}) => "+c.js+")(pierTest.format)"); got != c.want {
				t.Errorf("%s = %q, want %q", c.js, got, c.want)
			}
		}
		// A session that ends now shows as ended seconds ago, not an hour.
		c := dial(t, p.web)
		echo(t, c, 10)
		client := c.LocalAddr().String()
		c.Close()
		cell := `[...document.querySelectorAll("#ends-table tbody tr")].find(tr => tr.children[3] && tr.children[3].textContent === ` + q(client) + `)`
		tb.waitFor("the end's row", cell, within)
		if ago := eval[string](tb, cell+`.children[0].textContent`); ago != "just now" && !strings.HasSuffix(ago, " s ago") {
			t.Errorf("an end of now shows %q with the browser's clock an hour fast", ago)
		}
		tb.noProblems()
	})

	t.Run("Screenshots", func(t *testing.T) {
		// Traffic for the views: live sessions on web, ends of several
		// kinds (done, connect_failed on legacy).
		for range 3 {
			echo(t, dial(t, p.web), 30000)
		}
		for range 3 {
			c := dial(t, p.route("legacy"))
			c.SetReadDeadline(time.Now().Add(within))
			c.Read(make([]byte, 1))
		}
		for range 2 {
			c := dial(t, p.web)
			echo(t, c, 2000)
			c.Close()
		}
		// Sessions keep coming while the page is shot, so that the
		// sparklines have a few seconds of history to draw.
		stop := make(chan struct{})
		traffic := make(chan struct{})
		go func() {
			defer close(traffic)
			tick := time.NewTicker(50 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
					if c, err := net.DialTimeout("tcp", p.web, within); err == nil {
						c.Write(make([]byte, 4000))
						c.Close()
					}
				}
			}
		}()
		defer func() { close(stop); <-traffic }()
		tb := openTab(t, b, p.admin+"/")
		tb.do(chromedp.EmulateViewport(1280, 900))
		tb.waitFor("sessions", `document.querySelectorAll("#sessions-table tbody tr[data-id]").length >= 3`, within)
		tb.waitFor("sparklines with a few seconds to draw", `[...document.querySelectorAll("svg.spark polyline")].some(l => l.getAttribute("points").split(" ").length >= 4)`, within)
		tb.waitFor("ends", `[...document.querySelectorAll("#ends-table td .pill")].some(e => e.textContent === "connect_failed")`, within)
		tb.capture("dashboard-laptop", chromedp.CaptureScreenshot()) // the first screen, as the README shows it
		// Recent ends filtered by reason: only that reason's rows.
		tb.do(chromedp.SetValue(chromedp.CSS("#ends-reason"), "connect_failed"),
			chromedp.Evaluate[chromedp.Void](`document.querySelector("#ends-reason").dispatchEvent(new Event("change"))`))
		tb.waitFor("only connect_failed ends", `(() => { const p = [...document.querySelectorAll("#ends-table td .pill")];
			return p.length >= 3 && p.every(e => e.textContent === "connect_failed") })()`, within)
		tb.do(chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2), chromedp.EmulateMobile),
			chromedp.Action[chromedp.Void](func(ctx context.Context, _ *chromedp.Target) (chromedp.Void, error) {
				_, err := chromedp.Call(ctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
					Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: "dark"}}})
				return chromedp.Void{}, err
			}))
		tb.waitFor("a render in the phone's width", `document.documentElement.clientWidth <= 400`, within)
		tb.capture("dashboard-phone-dark", chromedp.CaptureScreenshot()) // the first screen
		tb.noProblems()
	})
}

// With a token, the page and its assets load without it and show the
// login form; the API refuses without it; the token typed in opens the
// dashboard, kept in sessionStorage, never in the URL.
func TestDashboardAsksForTheToken(t *testing.T) {
	b := browser(t)
	const token = "dashboard-test-token-0123456789"
	p := startPier(t, token)
	tb := openTab(t, b, p.admin+"/")
	tb.waitFor("the login form", `!document.querySelector("#login").hidden`, within)
	if !eval[bool](tb, `document.querySelector("#app").hidden`) {
		t.Error("the dashboard shows without the token")
	}
	for _, path := range []string{"/api/v1/routes", "/api/v1/sessions", "/api/v1/history", "/api/v1/ends", "/api/v1/filter_specs"} {
		if status, _ := get(t, p.admin+path); status != http.StatusUnauthorized {
			t.Errorf("GET %s without the token: %d, want 401", path, status)
		}
	}
	for _, path := range []string{"/", "/ui/app.js", "/ui/app.css"} {
		if status, h := get(t, p.admin+path); status != http.StatusOK || h.Get("Content-Security-Policy") == "" {
			t.Errorf("GET %s without the token: %d (CSP %q), want 200 with a CSP", path, status, h.Get("Content-Security-Policy"))
		}
	}
	tb.screenshot("login")
	tb.do(chromedp.SendKeys(chromedp.CSS("#token"), "wrong"))
	tb.click("#login-submit")
	tb.waitFor("the refusal", `document.querySelector("#login-error").textContent.includes("refused")`, within)
	tb.do(chromedp.SendKeys(chromedp.CSS("#token"), token))
	tb.click("#login-submit")
	tb.waitFor("the dashboard", `document.querySelector('.route[data-route="web"]') && !document.querySelector("#app").hidden`, within)
	if got := eval[string](tb, `sessionStorage.getItem("pier.token")`); got != token {
		t.Errorf("sessionStorage holds %q, want the token", got)
	}
	if href := eval[string](tb, `location.href`); strings.Contains(href, token) {
		t.Errorf("the token is in the URL: %s", href)
	}
	if name, auto := eval[string](tb, `document.querySelector("#token").name`), eval[string](tb, `document.querySelector("#token").getAttribute("autocomplete")`); name != "" || auto != "off" {
		t.Errorf("the token's input: name %q, autocomplete %q; want no name (a native submit would put it in the URL) and off", name, auto)
	}
	if named := eval[int](tb, `document.querySelectorAll("#login-form [name]").length`); named != 0 {
		t.Errorf("the login form has %d named fields, want none", named)
	}
	// Sign out while a poll is on its way: its answer, arriving after,
	// must not show. The page's requests take 600 ms here; a watcher
	// notes any moment the dashboard shows after the sign-out.
	tb.do(chromedp.Evaluate[chromedp.Void](`(() => {
		const real = window.fetch; window.inFlight = 0;
		window.fetch = (url, init) => { window.inFlight++;
			return new Promise(r => setTimeout(r, 600)).then(() => real(url, init)).finally(() => window.inFlight--); };
	})()`))
	tb.waitFor("a poll on its way", `window.inFlight > 0`, within)
	tb.click("#logout")
	tb.do(chromedp.Evaluate[chromedp.Void](`(() => { window.shownAfter = "";
		const look = () => { if (!document.querySelector("#app").hidden) window.shownAfter = "the dashboard";
			else if (document.querySelector("#route-list").children.length || document.querySelector("#sessions-table tbody").children.length ||
				document.querySelector("#ends-table tbody").children.length) window.shownAfter = "data left in the page"; };
		look(); new MutationObserver(look).observe(document.body, {subtree: true, childList: true, attributes: true}); })()`))
	tb.waitFor("the login form again", `!document.querySelector("#login").hidden && !sessionStorage.getItem("pier.token")`, within)
	tb.waitFor("the poll's answer", `window.inFlight === 0`, within)
	tb.afterRenderTurn()
	if shown := eval[string](tb, `window.shownAfter`); shown != "" {
		t.Errorf("after the sign-out, the page showed %s", shown)
	}
	tb.noProblems("status of 401")
}

// afterRenderTurn lets the page run what it has queued (a held render
// runs on the task after a release).
func (tb *tab) afterRenderTurn() {
	tb.t.Helper()
	tb.do(chromedp.Evaluate[chromedp.Void](`new Promise(r => setTimeout(r, 50))`, chromedp.EvalAwaitPromise))
}
