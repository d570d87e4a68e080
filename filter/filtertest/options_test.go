package filtertest_test

import (
	"strings"
	"testing"

	"github.com/pierproxy/pier/filter"
	"github.com/pierproxy/pier/filter/filtertest"
)

type nothing struct{}

func (nothing) Streams(*filter.Session) (toUpstream, toClient filter.Stream) { return nil, nil }

// newToy reads delay (a duration, required), size (a size), mode (hex or
// text) and, unless declared otherwise below, secret (a string).
func newToy(o *filter.Options) (filter.Filter, error) {
	if !o.Has("delay") {
		o.Errorf("delay", "missing")
	}
	o.Duration("delay", 0)
	o.Size("size", 0, 0, 1<<20)
	o.Enum("mode", "hex", "hex", "text")
	o.String("secret", "")
	return nothing{}, o.Err()
}

var toyOptions = []filter.OptionDoc{
	{Name: "delay", Kind: filter.KindDuration, Required: true},
	{Name: "size", Kind: filter.KindSize, Default: "0"},
	{Name: "mode", Kind: filter.KindEnum, Default: "hex", Choices: []string{"hex", "text"}},
	{Name: "secret", Kind: filter.KindString},
}

// CheckOptions passes a Spec whose Options say what its factory reads,
// and names each way one that does not is wrong: so the built-ins'
// check (in filter/builtin) can fail.
func TestCheckOptionsFindsEveryDisagreement(t *testing.T) {
	if err := filtertest.CheckOptions(filter.Spec{Name: "toy", New: newToy, Options: toyOptions}, nil); err != nil {
		t.Fatalf("the true Options: %v", err)
	}
	change := func(f func(ds []filter.OptionDoc) []filter.OptionDoc) []filter.OptionDoc {
		return f(append([]filter.OptionDoc(nil), toyOptions...))
	}
	for _, tc := range []struct {
		name    string
		options []filter.OptionDoc
		want    string
	}{
		{"an option read, not declared", change(func(ds []filter.OptionDoc) []filter.OptionDoc { return ds[:3] }),
			"New reads option secret, which Options does not declare"},
		{"an option declared, never read", change(func(ds []filter.OptionDoc) []filter.OptionDoc {
			return append(ds, filter.OptionDoc{Name: "ghost", Kind: filter.KindBool, Default: "false"})
		}), "Options declares ghost, which New never reads"},
		{"a required option not Required", change(func(ds []filter.OptionDoc) []filter.OptionDoc {
			ds[0].Required = false
			return ds
		}), "refuses the options without delay (missing), which is not Required"},
		{"an optional option Required", change(func(ds []filter.OptionDoc) []filter.OptionDoc {
			ds[1].Required, ds[1].Default = true, ""
			return ds
		}), "size is Required, but New takes the options without it"},
		{"a size declared a duration", change(func(ds []filter.OptionDoc) []filter.OptionDoc {
			ds[1].Kind = filter.KindDuration
			return ds
		}), "size is a duration, but New takes size=\"64KiB\""},
		{"a duration declared a size", change(func(ds []filter.OptionDoc) []filter.OptionDoc {
			ds[0].Kind = filter.KindSize
			return ds
		}), "refuses delay=\"64KiB\""},
		{"a default the factory refuses", change(func(ds []filter.OptionDoc) []filter.OptionDoc {
			ds[1].Default = "2MiB"
			return ds
		}), "refuses size=\"2MiB\""},
		{"a choice the factory refuses", change(func(ds []filter.OptionDoc) []filter.OptionDoc {
			ds[2].Choices = []string{"hex", "text", "raw"}
			return ds
		}), "refuses mode=\"raw\""},
		{"a string declared a list", change(func(ds []filter.OptionDoc) []filter.OptionDoc {
			ds[3].Kind = filter.KindList
			return ds
		}), "refuses secret=\"127.0.0.1\": want a single value, not a list"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := filtertest.CheckOptions(filter.Spec{Name: "toy", New: newToy, Options: tc.options}, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("CheckOptions = %v\nwant it to say %q", err, tc.want)
			}
		})
	}
}

// A Spec that declares nothing cannot be checked, and says so.
func TestCheckOptionsWithoutOptions(t *testing.T) {
	err := filtertest.CheckOptions(filter.Spec{Name: "toy", New: newToy}, nil)
	if err == nil || !strings.Contains(err.Error(), "declares no Options") {
		t.Errorf("CheckOptions = %v", err)
	}
}
