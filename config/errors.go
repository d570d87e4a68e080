package config

import (
	"fmt"
	"strings"
)

// Error is one problem in a configuration: in a file, at the line and
// column of the YAML node at fault (both count from 1); from a command
// line (FromCommandLine), at the flag or argument that gave the value.
type Error struct {
	File      string
	Line, Col int
	// Place, for a configuration from a command line, is where the value
	// at fault was given: "flag -idle-timeout", "argument 2". File, Line
	// and Col are then zero, and Msg does not repeat the field's name:
	// the place says it.
	Place string
	Msg   string
}

// Error formats e as file:line:col: message, the form editors and
// compilers use, so it can be printed as it is; or, from a command line,
// as place: message.
func (e *Error) Error() string {
	if e.Place != "" {
		return fmt.Sprintf("%s: %s", e.Place, e.Msg)
	}
	return fmt.Sprintf("%s:%d:%d: %s", e.File, e.Line, e.Col, e.Msg)
}

// Errors is what Parse and Load return when a file's content is at fault,
// and FromCommandLine when a value given is: every problem found, in file
// (or command-line) order. The file must be fixed; a caller
// running a configuration keeps it. Print one Error per line, or use
// Error, which does.
type Errors []*Error

// Error joins the errors, one per line.
func (es Errors) Error() string {
	s := make([]string, len(es))
	for i, e := range es {
		s[i] = e.Error()
	}
	return strings.Join(s, "\n")
}

// Unwrap lets errors.As find an *Error in Errors.
func (es Errors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}
