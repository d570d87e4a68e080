package toxiproxy

import (
	"bytes"
	"encoding/base32"
	"encoding/json"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
)

// maxBody bounds a request body: a /populate of thousands of proxies fits.
const maxBody = 1 << 20

// Handler returns the API: Toxiproxy's routes, answered as Toxiproxy
// answers them.
func (s *Server) Handler() http.Handler { return http.HandlerFunc(s.serve) }

// An endpoint is one path's methods.
type endpoint map[string]func(w http.ResponseWriter, r *http.Request, args []string)

// route finds the endpoint for a path and its arguments (the proxy and
// toxic names), as Toxiproxy's router matches: no trailing slash, no
// empty segment.
func (s *Server) route(path string) (endpoint, []string) {
	seg := strings.Split(strings.TrimPrefix(path, "/"), "/")
	for _, x := range seg {
		if x == "" {
			return nil, nil
		}
	}
	switch {
	case len(seg) == 1 && seg[0] == "reset":
		return endpoint{"POST": s.resetState}, nil
	case len(seg) == 1 && seg[0] == "version":
		return endpoint{"GET": s.versionInfo}, nil
	case len(seg) == 1 && seg[0] == "populate":
		return endpoint{"POST": s.populateProxies}, nil
	case len(seg) == 1 && seg[0] == "proxies":
		return endpoint{"GET": s.proxyIndex, "POST": s.proxyCreate}, nil
	case len(seg) == 2 && seg[0] == "proxies":
		return endpoint{"GET": s.proxyShow, "POST": s.proxyUpdate, "PATCH": s.proxyUpdate, "DELETE": s.proxyDelete}, seg[1:]
	case len(seg) == 3 && seg[0] == "proxies" && seg[2] == "toxics":
		return endpoint{"GET": s.toxicIndex, "POST": s.toxicCreate}, seg[1:2]
	case len(seg) == 4 && seg[0] == "proxies" && seg[2] == "toxics":
		return endpoint{"GET": s.toxicShow, "POST": s.toxicUpdate, "PATCH": s.toxicUpdate, "DELETE": s.toxicDelete}, []string{seg[1], seg[3]}
	}
	return nil, nil
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	ep, args := s.route(r.URL.Path)
	if ep == nil {
		http.NotFound(w, r)
		return
	}
	h, ok := ep[r.Method]
	if !ok {
		w.WriteHeader(http.StatusMethodNotAllowed) // Toxiproxy's router: no body
		return
	}
	w.Header().Set("X-Toxiproxy-Request-Id", requestID())
	// Toxiproxy's guard against a web page driving the API from a
	// developer's browser (DNS rebinding, cross-site POSTs).
	if strings.HasPrefix(r.UserAgent(), "Mozilla/") {
		http.Error(w, "User agent not allowed", http.StatusForbidden)
		return
	}
	// The body is read whole before the handler runs: handlers decode it
	// under s.mu, and a client trickling its body must not hold every
	// other call (a test suite's /reset) for the server's read timeout.
	// A read that fails (a body over maxBody) fails the handler's decode
	// at the same byte, with the same error.
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	r.Body = io.NopCloser(io.MultiReader(bytes.NewReader(data), failingReader{err}))
	h(w, r, args)
}

// failingReader reads as its error, or as the end of the data when nil.
type failingReader struct{ err error }

func (f failingReader) Read([]byte) (int, error) {
	if f.err != nil {
		return 0, f.err
	}
	return 0, io.EOF
}

// requestID is 20 characters, as Toxiproxy's (an xid) are.
func requestID() string {
	var b [12]byte
	for i := range b {
		b[i] = byte(rand.Uint32())
	}
	return strings.ToLower(base32.HexEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:]))
}

// writeJSON answers v as Toxiproxy does: application/json, no newline.
func writeJSON(w http.ResponseWriter, code int, v any) {
	data, err := json.Marshal(v)
	if err != nil {
		writeError(w, internal(err))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	w.Write(data)
}

func (s *Server) versionInfo(w http.ResponseWriter, _ *http.Request, _ []string) {
	w.Header().Set("Content-Type", "application/json;charset=utf-8")
	data, _ := json.Marshal(s.version)
	io.WriteString(w, `{"version": `+string(data)+"}\n")
}

func (s *Server) resetState(w http.ResponseWriter, _ *http.Request, _ []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.reset(); err != nil {
		writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) proxyIndex(w http.ResponseWriter, _ *http.Request, _ []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := make(map[string]proxyJSON, len(s.proxies))
	for name, p := range s.proxies {
		m[name] = p.json()
	}
	writeJSON(w, http.StatusOK, m)
}

func (s *Server) proxyCreate(w http.ResponseWriter, r *http.Request, _ []string) {
	in := Proxy{Enabled: true}
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
		writeError(w, badBody(err))
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	p, err := s.create(in)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, p.json())
}

func (s *Server) populateProxies(w http.ResponseWriter, r *http.Request, _ []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ps, err := s.populate(r.Body)
	// Toxiproxy's answer carries the error and the proxies made before it.
	out := struct {
		*apiError `json:",omitempty"`
		Proxies   []proxyJSON `json:"proxies"`
	}{err, ps}
	code := http.StatusCreated
	if err != nil {
		code = err.StatusCode
	}
	writeJSON(w, code, out)
}

// withProxy runs f with the proxy named, under the lock, or answers 404.
func (s *Server) withProxy(w http.ResponseWriter, name string, f func(p *proxy)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.proxies[name]
	if !ok {
		writeError(w, errProxyNotFound)
		return
	}
	f(p)
}

func (s *Server) proxyShow(w http.ResponseWriter, _ *http.Request, args []string) {
	s.withProxy(w, args[0], func(p *proxy) { writeJSON(w, http.StatusOK, p.json()) })
}

func (s *Server) proxyUpdate(w http.ResponseWriter, r *http.Request, args []string) {
	s.withProxy(w, args[0], func(p *proxy) {
		if err := s.update(p, r.Body); err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, p.json())
	})
}

func (s *Server) proxyDelete(w http.ResponseWriter, _ *http.Request, args []string) {
	s.withProxy(w, args[0], func(p *proxy) {
		if err := s.remove(p); err != nil {
			writeError(w, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
}

func (s *Server) toxicIndex(w http.ResponseWriter, _ *http.Request, args []string) {
	s.withProxy(w, args[0], func(p *proxy) { writeJSON(w, http.StatusOK, p.toxicList()) })
}

func (s *Server) toxicCreate(w http.ResponseWriter, r *http.Request, args []string) {
	s.withProxy(w, args[0], func(p *proxy) {
		t, err := parseToxic(r.Body, func(name string) bool { _, t := p.toxic(name); return t != nil })
		if err != nil {
			writeError(w, err)
			return
		}
		p.toxics = append(p.toxics, t)
		if err := s.applyToxics(p); err != nil {
			p.toxics = p.toxics[:len(p.toxics)-1]
			writeError(w, err)
			return
		}
		s.log.Info("toxiproxy: toxic added", "proxy", p.Name, "toxic", t.Name, "type", t.Type, "stream", t.Stream, "toxicity", t.Toxicity)
		writeJSON(w, http.StatusOK, t) // 200, not 201: Toxiproxy's
	})
}

func (s *Server) toxicShow(w http.ResponseWriter, _ *http.Request, args []string) {
	s.withProxy(w, args[0], func(p *proxy) {
		_, t := p.toxic(args[1])
		if t == nil {
			writeError(w, errToxicNotFound)
			return
		}
		writeJSON(w, http.StatusOK, t)
	})
}

func (s *Server) toxicUpdate(w http.ResponseWriter, r *http.Request, args []string) {
	s.withProxy(w, args[0], func(p *proxy) {
		i, t := p.toxic(args[1])
		if t == nil {
			writeError(w, errToxicNotFound)
			return
		}
		nt, err := t.update(r.Body)
		if err != nil {
			writeError(w, err)
			return
		}
		p.toxics[i] = nt
		if err := s.applyToxics(p); err != nil {
			p.toxics[i] = t
			writeError(w, err)
			return
		}
		s.log.Info("toxiproxy: toxic updated", "proxy", p.Name, "toxic", t.Name)
		writeJSON(w, http.StatusOK, nt)
	})
}

func (s *Server) toxicDelete(w http.ResponseWriter, _ *http.Request, args []string) {
	s.withProxy(w, args[0], func(p *proxy) {
		i, t := p.toxic(args[1])
		if t == nil {
			writeError(w, errToxicNotFound)
			return
		}
		old := p.toxics
		p.toxics = append(p.toxics[:i:i], p.toxics[i+1:]...)
		if err := s.applyToxics(p); err != nil {
			p.toxics = old
			writeError(w, err)
			return
		}
		s.log.Info("toxiproxy: toxic removed", "proxy", p.Name, "toxic", t.Name)
		w.WriteHeader(http.StatusNoContent)
	})
}
