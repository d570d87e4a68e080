package config

import (
	"fmt"
	"strings"
)

// Error is one problem in a configuration file, at the line and column of
// the YAML node at fault. Both count from 1.
type Error struct {
	File      string
	Line, Col int
	Msg       string
}

// Error formats e as file:line:col: message, the form editors and
// compilers use, so it can be printed as it is.
func (e *Error) Error() string {
	return fmt.Sprintf("%s:%d:%d: %s", e.File, e.Line, e.Col, e.Msg)
}

// Errors is what Parse and Load return when a file's content is at fault:
// every problem found, in file order. The file must be fixed; a caller
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
