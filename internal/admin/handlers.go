package admin

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// routes is the admin API's mux, one pattern per endpoint.
func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", s.healthz)
	mux.HandleFunc("GET /readyz", s.readyz)
	mux.HandleFunc("GET /metrics", s.serveMetrics)

	mux.HandleFunc("GET /api/v1/routes", s.listRoutes)
	mux.HandleFunc("GET /api/v1/routes/{route}", s.getRoute)

	mux.HandleFunc("GET /api/v1/sessions", s.listSessions)
	mux.HandleFunc("DELETE /api/v1/sessions", s.endSessions)
	mux.HandleFunc("DELETE /api/v1/sessions/{id}", s.endSession)

	const member = "/api/v1/routes/{route}/members/{member}"
	for action, steer := range steerActions {
		mux.HandleFunc("POST "+member+"/"+action, func(w http.ResponseWriter, r *http.Request) {
			s.steer(w, r, steer)
		})
	}
	mux.HandleFunc("PUT "+member+"/weight", s.putWeight)
	mux.HandleFunc("PATCH "+member, s.patchMember)

	const filters = "/api/v1/routes/{route}/filters"
	mux.HandleFunc("GET "+filters, s.getFilters)
	mux.HandleFunc("PUT "+filters, s.replaceFilters)
	mux.HandleFunc("POST "+filters, s.addFilter)
	mux.HandleFunc("PUT "+filters+"/{i}", s.setFilter)
	mux.HandleFunc("DELETE "+filters+"/{i}", s.deleteFilter)

	mux.HandleFunc("GET /api/v1/overlay", s.getOverlay)
	mux.HandleFunc("DELETE /api/v1/overlay", s.dropOverlay)
	mux.HandleFunc("POST /api/v1/reload", s.reload)
	mux.HandleFunc("GET /api/v1/reload/preview", s.previewReload)
	mux.HandleFunc("POST /api/v1/config/check", s.checkConfig)
	mux.HandleFunc("GET /api/v1/config", s.getConfig)
	mux.HandleFunc("GET /api/v1/log_level", s.getLogLevel)
	mux.HandleFunc("PUT /api/v1/log_level", s.putLogLevel)

	mux.HandleFunc("GET /api/v1/history", s.getHistory)
	mux.HandleFunc("GET /api/v1/ends", s.listEnds)
	mux.HandleFunc("GET /api/v1/filter_specs", s.listFilterSpecs)
	mux.HandleFunc("GET /api/v1/clients", s.listClients)

	ui := s.serveUI()
	mux.Handle("GET /{$}", ui)
	mux.Handle("GET "+uiPath, ui)

	// The mux's own 404 and 405 are text: answer JSON like every other error.
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, pattern := mux.Handler(r); pattern == "" {
			mux.ServeHTTP(&jsonStatus{ResponseWriter: w}, r)
			return
		}
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		mux.ServeHTTP(rec, r)
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			s.log.Info("admin request", "method", r.Method, "path", r.URL.Path, "status", rec.status, "client", r.RemoteAddr)
		}
	})
}

// steerActions are the POST verbs on a member and what each sets.
var steerActions = map[string]Steering{
	"drain":   {Drain: ptr(true)},
	"undrain": {Drain: ptr(false)},
	"disable": {Disabled: ptr(true)},
	"enable":  {Disabled: ptr(false)},
}

func ptr[T any](v T) *T { return &v }

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	if ok, why := s.ctl.Ready(); !ok {
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"ready": false, "why": why})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"ready": true})
}

func (s *Server) serveMetrics(w http.ResponseWriter, r *http.Request) {
	if s.metrics == nil {
		writeError(w, &Error{Status: http.StatusNotFound, Msg: "metrics are not served"})
		return
	}
	s.metrics.ServeHTTP(w, r)
}

func (s *Server) listRoutes(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string][]Route{"routes": list(s.ctl.Routes())})
}

func (s *Server) getRoute(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("route")
	for _, rt := range s.ctl.Routes() {
		if rt.Name == name {
			writeJSON(w, http.StatusOK, rt)
			return
		}
	}
	writeError(w, &Error{Status: http.StatusNotFound, Msg: "no route " + quote(name)})
}

func (s *Server) listSessions(w http.ResponseWriter, r *http.Request) {
	q, qerr := parseSessionQuery(r.URL.RawQuery, true)
	if qerr != nil {
		writeError(w, qerr)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), sessionWait)
	defer cancel()
	page, err := s.ctl.Sessions(ctx, q)
	if err != nil {
		fail(w, err)
		return
	}
	if q.Sort == SortBytes && page.Next > maxSessionOffset {
		page.Next = 0 // beyond the heaviest pages a query may ask for
	}
	writeJSON(w, http.StatusOK, pageJSON(page, q.Sort))
}

func (s *Server) endSession(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseUint(r.PathValue("id"), 10, 64)
	if err != nil || id == 0 {
		writeError(w, badField("id", "want a session id (a positive integer), got "+quote(r.PathValue("id"))))
		return
	}
	mode, perr := parseMode(r.URL.RawQuery)
	if perr != nil {
		writeError(w, perr)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), sessionWait)
	defer cancel()
	if err := s.ctl.EndSession(ctx, id, mode); err != nil {
		fail(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) endSessions(w http.ResponseWriter, r *http.Request) {
	q, err := parseSessionQuery(r.URL.RawQuery, false)
	if err != nil {
		writeError(w, err)
		return
	}
	if q.Route == "" && q.Member == "" && !q.Client.IsValid() {
		writeError(w, badField("route", "set route, member or client: ending every session takes at least one filter"))
		return
	}
	mode, perr := parseMode(r.URL.RawQuery, "route", "member", "client")
	if perr != nil {
		writeError(w, perr)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), sessionWait)
	defer cancel()
	n, cerr := s.ctl.EndSessions(ctx, q, mode)
	if cerr != nil && !errors.Is(cerr, ErrPartial) {
		fail(w, cerr)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"ended": n, "partial": cerr != nil})
}

func (s *Server) steer(w http.ResponseWriter, r *http.Request, st Steering) {
	m, err := s.ctl.Steer(r.PathValue("route"), r.PathValue("member"), st)
	if err != nil {
		fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, m)
}

func (s *Server) putWeight(w http.ResponseWriter, r *http.Request) {
	data, ok := readBody(w, r)
	if !ok {
		return
	}
	weight, err := parseWeightBody(data)
	if err != nil {
		writeError(w, err)
		return
	}
	s.steer(w, r, Steering{Weight: &weight})
}

func (s *Server) patchMember(w http.ResponseWriter, r *http.Request) {
	data, ok := readBody(w, r)
	if !ok {
		return
	}
	st, err := parseSteeringBody(data)
	if err != nil {
		writeError(w, err)
		return
	}
	s.steer(w, r, st)
}

func (s *Server) getFilters(w http.ResponseWriter, r *http.Request) {
	fs, err := s.ctl.Filters(r.PathValue("route"))
	if err != nil {
		fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string][]Filter{"filters": list(fs)})
}

func (s *Server) replaceFilters(w http.ResponseWriter, r *http.Request) {
	s.editFilters(w, r, FilterEdit{Op: "replace"})
}

func (s *Server) addFilter(w http.ResponseWriter, r *http.Request) {
	v, qerr := parseQuery(r.URL.RawQuery, "at")
	if qerr != nil {
		writeError(w, qerr)
		return
	}
	e := FilterEdit{Op: "append"}
	if v.Has("at") {
		at, err := parseIndex("at", v.Get("at"))
		if err != nil {
			writeError(w, err)
			return
		}
		e = FilterEdit{Op: "insert", Index: at}
	}
	s.editFilters(w, r, e)
}

func (s *Server) setFilter(w http.ResponseWriter, r *http.Request) {
	i, err := parseIndex("index", r.PathValue("i"))
	if err != nil {
		writeError(w, err)
		return
	}
	s.editFilters(w, r, FilterEdit{Op: "set", Index: i})
}

func (s *Server) deleteFilter(w http.ResponseWriter, r *http.Request) {
	i, err := parseIndex("index", r.PathValue("i"))
	if err != nil {
		writeError(w, err)
		return
	}
	s.editFilters(w, r, FilterEdit{Op: "delete", Index: i})
}

// editFilters reads the body (but for delete), hands it to the Control
// raw (the config parser places its mistakes by line and column in it),
// and answers the list in force.
func (s *Server) editFilters(w http.ResponseWriter, r *http.Request, e FilterEdit) {
	if e.Op != "delete" {
		data, ok := readBody(w, r)
		if !ok {
			return
		}
		if strings.TrimSpace(string(data)) == "" {
			writeError(w, badField("body", "empty: want a filter list in YAML or JSON, as a route's filters: holds"))
			return
		}
		e.Body = data
	}
	fs, err := s.ctl.EditFilters(r.PathValue("route"), e)
	if err != nil {
		fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string][]Filter{"filters": list(fs)})
}

func (s *Server) getOverlay(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.ctl.Overlay())
}

func (s *Server) dropOverlay(w http.ResponseWriter, r *http.Request) {
	o, err := s.ctl.DropOverlay()
	if err != nil {
		fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]Overlay{"dropped": o})
}

func (s *Server) reload(w http.ResponseWriter, r *http.Request) {
	res := s.ctl.Reload()
	status := http.StatusOK
	if !res.OK {
		status = res.Status
		if status == 0 {
			status = http.StatusUnprocessableEntity
		}
	}
	writeJSON(w, status, res)
}

// previewReload answers what POST /api/v1/reload would change now: 200
// either way, the preview's ok and problems say whether the file loads.
func (s *Server) previewReload(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.ctl.PreviewReload())
}

func (s *Server) checkConfig(w http.ResponseWriter, r *http.Request) {
	data, ok := readBody(w, r)
	if !ok {
		return
	}
	if strings.TrimSpace(string(data)) == "" {
		writeError(w, badField("body", "empty: want a config file (YAML)"))
		return
	}
	writeJSON(w, http.StatusOK, s.ctl.Check(data))
}

func (s *Server) getConfig(w http.ResponseWriter, r *http.Request) {
	format, err := parseFormat(r.URL.RawQuery)
	if err != nil {
		writeError(w, err)
		return
	}
	data, cerr := s.ctl.Config(format)
	if cerr != nil {
		fail(w, cerr)
		return
	}
	ctype := "application/yaml"
	if format == "json" {
		ctype = "application/json"
	}
	w.Header().Set("Content-Type", ctype)
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	w.Write(data)
}

func (s *Server) getLogLevel(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"level": levelName(s.ctl.LogLevel())})
}

func (s *Server) putLogLevel(w http.ResponseWriter, r *http.Request) {
	data, ok := readBody(w, r)
	if !ok {
		return
	}
	level, err := parseLevelBody(data)
	if err != nil {
		writeError(w, err)
		return
	}
	old := s.ctl.LogLevel()
	s.ctl.SetLogLevel(level)
	writeJSON(w, http.StatusOK, map[string]string{"old": levelName(old), "new": levelName(level)})
}

func (s *Server) getHistory(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.ctl.History())
}

func (s *Server) listEnds(w http.ResponseWriter, r *http.Request) {
	q, qerr := parseEndsQuery(r.URL.RawQuery)
	if qerr != nil {
		writeError(w, qerr)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), sessionWait)
	defer cancel()
	page, err := s.ctl.Ends(ctx, q)
	if err != nil {
		fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, page)
}

func (s *Server) listFilterSpecs(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string][]FilterSpec{"filters": list(s.ctl.FilterSpecs())})
}

func (s *Server) listClients(w http.ResponseWriter, r *http.Request) {
	q, qerr := parseClientsQuery(r.URL.RawQuery)
	if qerr != nil {
		writeError(w, qerr)
		return
	}
	page, err := s.ctl.Clients(q)
	if err != nil {
		fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, page)
}

// fail answers a Control's error: its own status for an *Error, 404 for
// ErrNotFound, 503 for ErrPartial, 500 for anything else.
func fail(w http.ResponseWriter, err error) {
	var e *Error
	switch {
	case errors.As(err, &e):
		if e.Status < 400 || e.Status > 599 {
			e = &Error{Status: http.StatusInternalServerError, Msg: e.Msg, Problems: e.Problems}
		}
		writeError(w, e)
	case errors.Is(err, ErrNotFound):
		writeError(w, &Error{Status: http.StatusNotFound, Msg: err.Error()})
	case errors.Is(err, ErrPartial):
		writeJSON(w, http.StatusServiceUnavailable, struct {
			Error   string `json:"error"`
			Partial bool   `json:"partial"`
		}{err.Error(), true})
	default:
		writeError(w, &Error{Status: http.StatusInternalServerError, Msg: err.Error()})
	}
}

// errorBody is every error's JSON.
type errorBody struct {
	Error    string    `json:"error"`
	Problems []Problem `json:"problems,omitempty"`
}

func writeError(w http.ResponseWriter, e *Error) {
	writeJSON(w, e.Status, errorBody{Error: e.Msg, Problems: e.Problems})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	data, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		data, _ = json.Marshal(errorBody{Error: "admin: encoding the answer: " + err.Error()})
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write(append(data, '\n'))
}

func readAll(r *http.Request) ([]byte, error) {
	if r.Body == nil {
		return nil, nil
	}
	return io.ReadAll(r.Body)
}

func quote(s string) string { return strconv.Quote(s) }

// statusRecorder keeps the status a handler answered, for the log.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(status int) {
	s.status = status
	s.ResponseWriter.WriteHeader(status)
}

func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// jsonStatus turns the mux's plain-text 404 and 405 into JSON errors,
// keeping its headers (Allow).
type jsonStatus struct {
	http.ResponseWriter
	wrote bool
}

func (j *jsonStatus) WriteHeader(status int) {
	j.wrote = true
	msg := http.StatusText(status)
	switch status {
	case http.StatusNotFound:
		msg = "no such endpoint"
	case http.StatusMethodNotAllowed:
		msg = "method not allowed (allowed: " + j.Header().Get("Allow") + ")"
	}
	j.Header().Del("Content-Length")
	writeJSON(j.ResponseWriter, status, errorBody{Error: msg})
}

// Write drops the mux's text: WriteHeader wrote the JSON.
func (j *jsonStatus) Write(p []byte) (int, error) {
	if !j.wrote {
		j.WriteHeader(http.StatusOK)
	}
	return len(p), nil
}
