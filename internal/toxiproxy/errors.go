package toxiproxy

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"syscall"
)

// An apiError is an error the API answers with, as Toxiproxy's ApiError:
// the JSON body {"error": Message, "status": StatusCode}.
type apiError struct {
	Message    string `json:"error"`
	StatusCode int    `json:"status"`
}

func (e *apiError) Error() string { return e.Message }

// Toxiproxy's errors, word for word: clients and test suites compare them.
var (
	errBadRequestBody = &apiError{"bad request body", http.StatusBadRequest}
	errMissingField   = &apiError{"missing required field", http.StatusBadRequest}
	errProxyNotFound  = &apiError{"proxy not found", http.StatusNotFound}
	errProxyExists    = &apiError{"proxy already exists", http.StatusConflict}
	errInvalidStream  = &apiError{"stream was invalid, can be either upstream or downstream", http.StatusBadRequest}
	errInvalidType    = &apiError{"invalid toxic type", http.StatusBadRequest}
	errToxicExists    = &apiError{"toxic already exists", http.StatusConflict}
	errToxicNotFound  = &apiError{"toxic not found", http.StatusNotFound}
)

// join is Toxiproxy's joinError: the wrapper's message, ": ", err's.
func join(err error, w *apiError) *apiError {
	return &apiError{w.Message + ": " + err.Error(), w.StatusCode}
}

func badBody(err error) *apiError { return join(err, errBadRequestBody) }

// internal is any other error, a 500 with its text, as Toxiproxy answers
// a failed listen.
func internal(err error) *apiError {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae
	}
	return &apiError{err.Error(), http.StatusInternalServerError}
}

// listenError words a failure to open addr as Go's net.Listen does,
// which is what Toxiproxy answers ("listen tcp 127.0.0.1:3310: bind:
// address already in use"), when it is the kernel's; other errors (a
// config error) keep their own text.
func listenError(addr string, err error) *apiError {
	var op *net.OpError
	if errors.As(err, &op) {
		return internal(op)
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return internal(fmt.Errorf("listen tcp %s: bind: %w", addr, errno))
	}
	return internal(err)
}

// writeError answers e as Toxiproxy's apiError does: through http.Error,
// so text/plain and a trailing newline, with the JSON inside.
func writeError(w http.ResponseWriter, e *apiError) {
	data, _ := json.Marshal(e)
	http.Error(w, string(data), e.StatusCode)
}
