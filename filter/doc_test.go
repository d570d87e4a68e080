package filter_test

import (
	"os"
	"strings"
	"testing"
)

// docs/filters.md shows example_test.go whole, as it is.
func TestDocShowsExample(t *testing.T) {
	doc, err := os.ReadFile("../docs/filters.md")
	if err != nil {
		t.Fatal(err)
	}
	code, err := os.ReadFile("example_test.go")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(doc), "```go\n"+string(code)+"```") {
		t.Error("docs/filters.md does not show filter/example_test.go as it is; copy it over")
	}
}
