package builtin

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/pierproxy/pier/filter"
	"github.com/pierproxy/pier/filter/filtertest"
)

// Every built-in filter declares exactly the options its factory reads,
// each with a kind, default and Required that the factory agrees with:
// the dashboard's forms are built from them.
func TestBuiltinOptionsAreTheOnesTheFactoryReads(t *testing.T) {
	samples := map[string]string{
		"file":  filepath.Join(t.TempDir(), "c.pcapng"), // pcap's: a file it could write
		"after": "2s",                                   // reset's is a string: a time or a size
	}
	for _, name := range filter.Names() {
		spec, _ := filter.Lookup(name)
		if err := filtertest.CheckOptions(spec, samples); err != nil {
			t.Errorf("%s:\n%v", name, err)
		}
	}
}

// readmeOption is one row of a filter's option table in the README.
type readmeOption struct {
	name, meaning, def string
	bold               bool
}

var (
	readmeHeading = regexp.MustCompile("^\\*\\*`([a-z_]+)`\\*\\*:")
	readmeName    = regexp.MustCompile("^(\\*\\*)?`([a-z_]+)`(\\*\\*)?$")
	// readmeLiteral is a default cell that is one value as a user writes
	// it, perhaps with a word on what it means: `hex`, `""` (delete).
	readmeLiteral = regexp.MustCompile("^`([^`]*)`( \\(.*\\))?$")
	// readmeTargeted names the filters that also take the targeting
	// options, in the paragraph before their table.
	readmeTargeted = regexp.MustCompile(`(?m)^Every fault filter \(([a-z_,\s]+)\)`)
)

// readmeFilterTables reads the README's "## Filters" section: each
// filter's own option table, by name ("" for a filter with a heading and
// no table), and the filters that take the targeting options with that
// table.
func readmeFilterTables(t *testing.T) (tables map[string][]readmeOption, targeted []string, target []readmeOption) {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	tables = map[string][]readmeOption{}
	in, owner := false, ""
	const targeting = "\x00targeting"
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "## ") {
			in = line == "## Filters"
			continue
		}
		if !in {
			continue
		}
		if m := readmeHeading.FindStringSubmatch(line); m != nil {
			owner = m[1]
			tables[owner] = nil
			continue
		}
		if strings.HasPrefix(line, "Every fault filter (") {
			owner = targeting
			continue
		}
		if !strings.HasPrefix(line, "| ") || owner == "" {
			continue
		}
		cells := strings.Split(line, "|")
		if len(cells) != 5 {
			t.Fatalf("README: a filter option row without 3 cells: %s", line)
		}
		cells = cells[1:4]
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		if cells[0] == "option" {
			continue // the header; the |---| line has no "| " prefix
		}
		m := readmeName.FindStringSubmatch(cells[0])
		if m == nil {
			t.Fatalf("README: an option name that is not `name` or **`name`**: %s", line)
		}
		opt := readmeOption{name: m[2], meaning: cells[1], def: cells[2], bold: m[1] != ""}
		if owner == targeting {
			target = append(target, opt)
		} else {
			tables[owner] = append(tables[owner], opt)
		}
	}
	if m := readmeTargeted.FindStringSubmatch(string(b)); m != nil {
		targeted = strings.Fields(strings.ReplaceAll(m[1], ",", " "))
	}
	return tables, targeted, target
}

// The README's option table of every built-in filter lists exactly the
// options its Spec declares, in the same order, with the same defaults,
// Required where the README says "(required)", and the bold one is the
// FlagKey; the fault filters' targeting options are in a table of their
// own, after the filters that take them.
func TestReadmeOptionTablesMatchTheSpecs(t *testing.T) {
	tables, targeted, target := readmeFilterTables(t)
	if len(target) == 0 || len(targeted) == 0 {
		t.Fatal("README: no targeting table after \"Every fault filter (...)\"")
	}
	for _, name := range filter.Names() {
		spec, _ := filter.Lookup(name)
		rows, ok := tables[name]
		if !ok {
			t.Errorf("README: no **`%s`**: paragraph", name)
			continue
		}
		delete(tables, name)
		if slices.Contains(targeted, name) {
			rows = append(slices.Clone(rows), target...)
		}
		var got, want []string
		for _, r := range rows {
			got = append(got, r.name)
		}
		for _, d := range spec.Options {
			want = append(want, d.Name)
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s: the README lists options %q, the Spec %q", name, got, want)
			continue
		}
		for i, r := range rows {
			d := spec.Options[i]
			if r.bold != (d.Name == spec.FlagKey) {
				t.Errorf("%s: %s is bold in the README: %v; FlagKey is %q", name, d.Name, r.bold, spec.FlagKey)
			}
			if req := strings.Contains(r.meaning, "(required)"); req != d.Required {
				t.Errorf("%s: %s: the README says required: %v; the Spec %v", name, d.Name, req, d.Required)
			}
			switch m := readmeLiteral.FindStringSubmatch(r.def); {
			case r.def == "":
				if d.Default != "" {
					t.Errorf("%s: %s: the README gives no default; the Spec %q", name, d.Name, d.Default)
				}
			case m != nil:
				if v := strings.TrimPrefix(m[1], `""`); v != d.Default {
					t.Errorf("%s: %s: the README's default is %q; the Spec's %q", name, d.Name, v, d.Default)
				}
			default:
				// A default no value can say ("random", "rate/10"): the
				// Spec has none, and its help says it.
				prose := strings.ReplaceAll(r.def, "`", "")
				if d.Default != "" || !strings.Contains(d.Help, "(default: "+prose+")") {
					t.Errorf("%s: %s: the README's default is %q; the Spec's is %q with help %q (want none, and help saying \"(default: %s)\")",
						name, d.Name, r.def, d.Default, d.Help, prose)
				}
			}
		}
	}
	for name := range tables {
		t.Errorf("README: a table for %s, which is not a built-in filter", name)
	}
}
