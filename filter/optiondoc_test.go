package filter_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/pierproxy/pier/filter"
	"github.com/pierproxy/pier/filter/filtertest"
)

type none struct{}

func (none) Streams(*filter.Session) (toUpstream, toClient filter.Stream) { return nil, nil }

func newNone(o *filter.Options) (filter.Filter, error) {
	o.String("text", "")
	return none{}, o.Err()
}

// A filter registered without Options, as every filter was before they
// existed (a user's own), registers, is found, and builds: Options are
// optional, and nil says none were declared.
func TestSpecWithoutOptionsStillWorks(t *testing.T) {
	filter.Register(filter.Spec{Name: "test_undocumented", New: newNone, FlagKey: "text"})
	spec, ok := filter.Lookup("test_undocumented")
	if !ok || spec.Options != nil {
		t.Fatalf("Lookup = %+v, %v", spec, ok)
	}
	o := filter.NewOptions(spec.Name, map[string]filter.Value{"text": {Text: "x"}}, 0, 0)
	if _, err := spec.Build(o); err != nil {
		t.Fatal(err)
	}
}

// Register refuses Options no form could be built from, naming the
// filter and the mistake, and registers nothing.
func TestRegisterRefusesBadOptionDocs(t *testing.T) {
	for _, tc := range []struct {
		name    string
		flagKey string
		options []filter.OptionDoc
		want    string
	}{
		{"unknown kind", "", []filter.OptionDoc{{Name: "a", Kind: "time"}}, `option a: unknown kind "time"`},
		{"no name", "", []filter.OptionDoc{{Kind: filter.KindBool}}, `option "": empty or declared twice`},
		{"twice", "", []filter.OptionDoc{{Name: "a", Kind: filter.KindBool}, {Name: "a", Kind: filter.KindSize}}, `option "a": empty or declared twice`},
		{"enum without choices", "", []filter.OptionDoc{{Name: "a", Kind: filter.KindEnum}}, "option a: kind enum without Choices"},
		{"default not a choice", "", []filter.OptionDoc{{Name: "a", Kind: filter.KindEnum, Default: "c", Choices: []string{"a", "b"}}}, `option a: default "c" is not one of its Choices`},
		{"choices on a size", "", []filter.OptionDoc{{Name: "a", Kind: filter.KindSize, Choices: []string{"1"}}}, "option a: Choices are for an enum or a direction, not a size"},
		{"required with a default", "", []filter.OptionDoc{{Name: "a", Kind: filter.KindSize, Default: "1", Required: true}}, "option a: required, with a default"},
		{"flag key not declared", "b", []filter.OptionDoc{{Name: "a", Kind: filter.KindSize}}, "FlagKey b is not among the Options"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			name := "test_bad_" + strings.ReplaceAll(tc.name, " ", "_")
			defer func() {
				p := recover()
				if want := "filter: Register " + name + ": " + tc.want; p != want {
					t.Errorf("panic %v, want %q", p, want)
				}
				if _, ok := filter.Lookup(name); ok {
					t.Error("registered anyway")
				}
			}()
			filter.Register(filter.Spec{Name: name, New: newNone, FlagKey: tc.flagKey, Options: tc.options})
		})
	}
}

// The example's Options (docs/filters.md shows them) are what its
// factory reads.
func TestExampleOptionsAreChecked(t *testing.T) {
	spec, _ := filter.Lookup("prefix")
	if err := filtertest.CheckOptions(spec, nil); err != nil {
		t.Error(err)
	}
}

// DirectionOption documents a direction as Options.Direction reads it.
func TestDirectionOption(t *testing.T) {
	d := filter.DirectionOption(filter.ToClient, "which bytes")
	if d.Name != "direction" || d.Kind != filter.KindDirection || d.Default != "client" ||
		!slices.Equal(d.Choices, []string{"upstream", "client", "both"}) {
		t.Errorf("DirectionOption = %+v", d)
	}
	for _, c := range d.Choices {
		o := filter.NewOptions("x", map[string]filter.Value{"direction": {Text: c}}, 0, 0)
		if got := o.Direction("direction", 0); got.String() != c || o.Err() != nil {
			t.Errorf("choice %s reads as %v, %v", c, got, o.Err())
		}
	}
}

// LookedUp is every key a factory asked for, given or not, by any getter.
func TestLookedUpRecordsEveryKeyAskedFor(t *testing.T) {
	o := filter.NewOptions("x", map[string]filter.Value{"a": {Text: "1"}}, 0, 0)
	o.Int("a", 0, 0, 9)
	o.Has("b")
	o.Strings("c")
	filter.ParseTarget(o)
	want := []string{"a", "b", "c", "clients", "every", "probability", "seed"}
	if got := o.LookedUp(); !slices.Equal(got, want) {
		t.Errorf("LookedUp = %q, want %q", got, want)
	}
	var names []string
	for _, d := range filter.TargetOptions() {
		names = append(names, d.Name)
	}
	if want := []string{"probability", "seed", "clients", "every"}; !slices.Equal(names, want) {
		t.Errorf("TargetOptions names %q, want %q (ParseTarget's order)", names, want)
	}
}
