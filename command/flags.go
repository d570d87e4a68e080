package command

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/pierproxy/pier/config"
)

// errHelp reports that -h was asked for and the help printed.
var errHelp = errors.New("help requested")

// flagSet is one command's flags, with its synopsis and examples for -h.
type flagSet struct {
	*flag.FlagSet
	synopsis, examples string
	// aliases are the flags registered a second time with '_' for '-'
	// (-slow_close for -slow-close, -idle_timeout as a file writes it),
	// hidden from the help.
	aliases map[string]bool
	// arg, if set, is called with each positional argument and its
	// index as parse meets it, between the flags around it.
	arg func(i int, a string)
}

// newFlagSet returns the flags of the command name. The flag package
// prints nothing: parse reports errors, and prints the help on -h.
func newFlagSet(name, synopsis, examples string) *flagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return &flagSet{FlagSet: fs, synopsis: synopsis, examples: examples, aliases: map[string]bool{}}
}

// help prints the command's synopsis, flags and examples.
func (fs *flagSet) help(w io.Writer) {
	fmt.Fprintf(w, "Usage: %s\n", fs.synopsis)
	shown := flag.NewFlagSet(fs.Name(), flag.ContinueOnError)
	fs.VisitAll(func(f *flag.Flag) {
		if !fs.aliases[f.Name] {
			shown.Var(f.Value, f.Name, f.Usage)
			shown.Lookup(f.Name).DefValue = f.DefValue
		}
	})
	if hasFlags(shown) {
		fmt.Fprintf(w, "\nFlags:\n")
		shown.SetOutput(w)
		shown.PrintDefaults()
	}
	fmt.Fprintf(w, "\nExamples:\n%s", fs.examples)
}

func hasFlags(fs *flag.FlagSet) bool {
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	return n > 0
}

// hint is a usage error of a command, printed with a pointer to the
// command's help.
type hint struct {
	cmd string
	err error
}

func (h hint) Error() string { return h.err.Error() }
func (h hint) Unwrap() error { return h.err }

// usage returns err as a usage error of the command, with its hint.
func (fs *flagSet) usage(err error) error {
	return usageError{hint{cmd: fs.Name(), err: err}}
}

// parse parses flags that may stand before, between or after the
// positional arguments, which it returns in order; "--" ends flags. A
// flag spelled with '_' for '-' is the same flag. On -h it prints the
// help to stdout and returns errHelp.
func (fs *flagSet) parse(args []string, stdout io.Writer) ([]string, error) {
	fs.VisitAll(func(f *flag.Flag) {
		if alias := strings.ReplaceAll(f.Name, "-", "_"); alias != f.Name && fs.Lookup(alias) == nil {
			fs.Var(f.Value, alias, f.Usage)
			fs.aliases[alias] = true
		}
	})
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				fs.help(stdout)
				return nil, errHelp
			}
			return nil, fs.usage(fmt.Errorf("%s: %v", fs.Name(), err))
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if used := len(args) - len(rest); used > 0 && args[used-1] == "--" {
			for _, a := range rest {
				pos = fs.positional(pos, a)
			}
			return pos, nil
		}
		pos = fs.positional(pos, rest[0])
		args = rest[1:]
	}
}

func (fs *flagSet) positional(pos []string, a string) []string {
	if fs.arg != nil {
		fs.arg(len(pos), a)
	}
	return append(pos, a)
}

// settings collects the configuration a command line gives, in the order
// given, for config.FromCommandLine.
type settings struct{ list []config.Setting }

func (s *settings) add(key, filterName, text, place string) {
	s.list = append(s.list, config.Setting{Key: key, Filter: filterName, Text: text, Place: place})
}

// settingFlag is a flag that sets the configuration field key. It keeps
// the text as given: config parses it as it parses the file's field, so
// the flag and the field take the same values, with the same words for
// the wrong ones.
type settingFlag struct {
	key, name string
	def       string // what the file's field defaults to, for the help
	into      *settings
}

func (f *settingFlag) String() string {
	if f == nil {
		return ""
	}
	return f.def
}

func (f *settingFlag) Set(v string) error {
	f.into.add(f.key, "", v, "flag -"+f.name)
	return nil
}

// setting registers the flag name for the configuration field key.
func (s *settings) setting(fs *flagSet, name, key, def, usage string) {
	fs.Var(&settingFlag{key: key, name: name, def: def, into: s}, name, usage)
}

// boolSettingFlag is a settingFlag that stands alone (-upstream-tls) or
// takes a boolean (-upstream-tls=false), passed on as "true" or "false".
type boolSettingFlag struct{ settingFlag }

func (f *boolSettingFlag) IsBoolFlag() bool { return true }

func (f *boolSettingFlag) Set(v string) error {
	b, err := strconv.ParseBool(v)
	if err != nil {
		return fmt.Errorf("%q is not true or false", v)
	}
	return f.settingFlag.Set(strconv.FormatBool(b))
}

// boolSetting registers the boolean flag name for the configuration
// field key.
func (s *settings) boolSetting(fs *flagSet, name, key, usage string) {
	fs.Var(&boolSettingFlag{settingFlag{key: key, name: name, into: s}}, name, usage)
}
