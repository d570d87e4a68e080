package admin

import (
	"embed"
	"io/fs"
	"net/http"
	"strings"
)

// The dashboard is three static files and an icon, compiled into the
// binary: no build step, no Node, nothing fetched from elsewhere. The page
// reads and steers pier through the API below, with the same token.
//
//go:embed ui/index.html ui/app.js ui/app.css ui/favicon.svg
var uiFiles embed.FS

// contentSecurityPolicy lets the page run only its own script and style,
// talk only to this server, and be framed by nobody: no inline script, no
// inline style, no eval, no form posted to another site.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; " +
	"connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"

// uiPath is where the dashboard's assets are served from; the page is /.
const uiPath = "/ui/"

// isPage reports whether r asks for the dashboard's page or one of its
// assets: these load without the token, so that the page can show its
// login form (they hold nothing about the running pier).
func isPage(r *http.Request) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return false
	}
	return r.URL.Path == "/" || strings.HasPrefix(r.URL.Path, uiPath)
}

// serveUI serves the page at / and its assets under /ui/, each with the
// security headers.
func (s *Server) serveUI() http.Handler {
	sub, err := fs.Sub(uiFiles, "ui")
	if err != nil {
		panic(err) // the embed directive above names the directory
	}
	files := http.StripPrefix(strings.TrimSuffix(uiPath, "/"), http.FileServerFS(sub))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", contentSecurityPolicy)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		h.Set("Cache-Control", "no-cache")
		if r.URL.Path == "/" {
			data, _ := uiFiles.ReadFile("ui/index.html")
			h.Set("Content-Type", "text/html; charset=utf-8")
			w.WriteHeader(http.StatusOK)
			if r.Method != http.MethodHead {
				w.Write(data)
			}
			return
		}
		if r.URL.Path == uiPath || r.URL.Path == uiPath+"index.html" {
			// FileServer would list the directory or redirect to it.
			writeError(w, &Error{Status: http.StatusNotFound, Msg: "no such file"})
			return
		}
		files.ServeHTTP(w, r)
	})
}
