package admin

import (
	"net/http"
	"regexp"
	"strings"
	"testing"
)

// The page and its assets load without the token (the page must show
// its login form), each with the security headers and its content type;
// the API next to them still asks for the token.
func TestDashboardServedWithoutTokenWithItsHeaders(t *testing.T) {
	ctl := &fakeControl{routes: []Route{{Name: "web"}}}
	s := serve(t, ctl, Options{})
	s.SetToken([]byte("s3cret"))
	for _, c := range []struct{ path, ctype string }{
		{"/", "text/html; charset=utf-8"},
		{"/ui/app.js", "text/javascript; charset=utf-8"},
		{"/ui/app.css", "text/css; charset=utf-8"},
		{"/ui/favicon.svg", "image/svg+xml"},
	} {
		a := s.do(t, "GET", c.path, "")
		if a.status != http.StatusOK || a.header.Get("Content-Type") != c.ctype || len(a.body) == 0 {
			t.Errorf("GET %s: %d %q, want 200 %q", c.path, a.status, a.header.Get("Content-Type"), c.ctype)
		}
		if got := a.header.Get("Content-Security-Policy"); got != contentSecurityPolicy {
			t.Errorf("GET %s: CSP %q", c.path, got)
		}
		if a.header.Get("X-Content-Type-Options") != "nosniff" || a.header.Get("Referrer-Policy") != "no-referrer" || a.header.Get("X-Frame-Options") != "DENY" {
			t.Errorf("GET %s: headers %v", c.path, a.header)
		}
	}
	for _, path := range []string{"/ui/", "/ui/index.html", "/ui/nothing.js"} {
		if a := s.do(t, "GET", path, ""); a.status != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 404", path, a.status)
		}
	}
	for _, e := range []endpoint{{"POST", "/", ""}, {"GET", "/api/v1/history", ""}, {"GET", "/index.html", ""}} {
		if a := s.do(t, e.method, e.path, e.body); a.status != http.StatusUnauthorized {
			t.Errorf("%s %s without the token: %d, want 401", e.method, e.path, a.status)
		}
	}
	wantCalls(t, ctl)
}

// Without a token the page is under the Host check as the API is: a
// rebound name cannot read it.
func TestDashboardHostChecked(t *testing.T) {
	s := serve(t, &fakeControl{}, Options{})
	if a := s.do(t, "GET", "/", "", "Host", "evil.example:80"); a.status != http.StatusForbidden {
		t.Fatalf("GET / from a rebound name: %d, want 403", a.status)
	}
	if a := s.do(t, "GET", "/", "", "Host", "localhost"); a.status != http.StatusOK {
		t.Fatalf("GET / from localhost: %d, want 200", a.status)
	}
}

// The policy forbids inline script and style, so the files must not
// need them: no script without src, no style element or attribute, no
// on* handler attribute, no javascript: URL, and no script that writes
// HTML or a style attribute, or evaluates text. And nothing is fetched
// from elsewhere.
func TestDashboardNeedsNoInlineScriptOrStyle(t *testing.T) {
	html, _ := uiFiles.ReadFile("ui/index.html")
	js, _ := uiFiles.ReadFile("ui/app.js")
	for _, bad := range []struct{ what, re string }{
		{"an inline script", `<script(?:\s[^>]*)?>\s*[^<\s]`},
		{"a style element", `<style`},
		{"a style attribute", `\sstyle\s*=`},
		{"an event handler attribute", `\son[a-z]+\s*=`},
		{"a javascript: URL", `javascript:`},
		{"another origin", `(?:src|href)="(?:https?:)?//`},
	} {
		if loc := regexp.MustCompile(bad.re).FindIndex(html); loc != nil {
			t.Errorf("index.html has %s: %q", bad.what, html[loc[0]:min(loc[1]+20, len(html))])
		}
	}
	for _, tag := range regexp.MustCompile(`<script[^>]*>`).FindAll(html, -1) {
		if !strings.Contains(string(tag), ` src="`) {
			t.Errorf("index.html has a script without src: %s", tag)
		}
	}
	if urls := regexp.MustCompile(`https?://[^"]*`).FindAll(js, -1); len(urls) != 1 || string(urls[0]) != "http://www.w3.org/2000/svg" {
		t.Errorf("app.js names URLs %q, want only the SVG namespace", urls)
	}
	for _, bad := range []string{".innerHTML", ".outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function",
		`setAttribute("style"`, ".style.", ".cssText"} {
		if strings.Contains(string(js), bad) {
			t.Errorf("app.js uses %s", bad)
		}
	}
}
