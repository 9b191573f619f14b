package cliflags

import (
	"flag"
	"fmt"
	"io"
	"reflect"
	"strconv"
	"strings"
	"time"
)

// Flag is one row of a command's flag table: the one place that says which
// flag sets which setting, under which environment variable, with which
// default and help. The command's parser, its --help, the flag tables in
// the docs and the man page are all made from the rows, so they cannot
// disagree.
type Flag struct {
	// Name is the flag without dashes: "max-conns".
	Name string
	// Field is the Go field of the settings struct the flag sets,
	// "MSPMaxConns"; fields of an embedded struct are found by their own
	// names. Its kind picks the parser: string, bool, int, int64,
	// float64, time.Duration or []string (a comma-separated list).
	Field string
	// Help is one line for --help, the docs and the man page.
	Help string
	// Default is the default as the docs state it, for a default that
	// depends on the host or the user ("host name"); "" means the field's
	// value in the defaults the table is bound to.
	Default string
	// NoEnv: the flag has no environment variable (--version: a variable
	// left in a unit's environment must not turn the daemon into a
	// version printer).
	NoEnv bool
	// Arg names the flag's argument in the docs ("ADDR", "FILE"); ""
	// means one named after the field's kind ("N", "DURATION").
	Arg string
	// Value, when set, builds the parser from a pointer to the field, for
	// a spelling the field's kind does not give (OnOff).
	Value func(field any) flag.Value
}

// Table is a command's flags, in the order the docs list them.
type Table struct {
	// Command is the program's installed name: "msprelay-node".
	Command string
	// EnvPrefix is prepended to a flag's upper-cased name, dashes as
	// underscores, to name its environment variable ("MSPRELAY_"); ""
	// means the command takes no flags from the environment.
	EnvPrefix string
	// Flags are the rows.
	Flags []Flag
}

// Env names the environment variable of flag name ("" without EnvPrefix
// or for a NoEnv flag).
func (t Table) Env(name string) string {
	if t.EnvPrefix == "" {
		return ""
	}
	for _, f := range t.Flags {
		if f.Name == name && f.NoEnv {
			return ""
		}
	}
	return t.EnvPrefix + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// FlagFor names the flag ("--max-conns") that sets a settings field, or ""
// when no flag does.
func (t Table) FlagFor(field string) string {
	for _, f := range t.Flags {
		if f.Field == field {
			return "--" + f.Name
		}
	}
	return ""
}

// Bind defines every flag of t on fs, each writing the field it names in
// *settings (a pointer to a struct) and defaulting to the value that field
// holds now. A row naming no such field, or a field of a kind no parser
// exists for, is a bug in the table: Bind returns an error saying which.
func (t Table) Bind(fs *flag.FlagSet, settings any) error {
	v := reflect.ValueOf(settings)
	if v.Kind() != reflect.Pointer || v.Elem().Kind() != reflect.Struct {
		return fmt.Errorf("cliflags: %s: settings must point to a struct, not %T", t.Command, settings)
	}
	for _, f := range t.Flags {
		fv := v.Elem().FieldByName(f.Field)
		if !fv.IsValid() || !fv.CanSet() {
			return fmt.Errorf("cliflags: %s: flag --%s: no settable field %q in %T", t.Command, f.Name, f.Field, settings)
		}
		val, err := valueFor(f, fv)
		if err != nil {
			return fmt.Errorf("cliflags: %s: flag --%s: %w", t.Command, f.Name, err)
		}
		fs.Var(val, f.Name, f.Help)
	}
	return nil
}

// Parse binds t to settings on fs, applies the environment (lookup) and
// then args, so that the command line wins over the environment.
func (t Table) Parse(fs *flag.FlagSet, settings any, args []string, lookup func(string) (string, bool)) error {
	if err := t.Bind(fs, settings); err != nil {
		return err
	}
	if lookup != nil {
		for _, f := range t.Flags {
			key := t.Env(f.Name)
			if key == "" {
				continue
			}
			if v, ok := lookup(key); ok {
				if err := fs.Set(f.Name, v); err != nil {
					return fmt.Errorf("%s=%q: %w", key, v, err)
				}
			}
		}
	}
	return fs.Parse(joinOnOffValues(fs, args))
}

// joinOnOffValues lets the on/off flags take their value as the next
// argument, "--terminals off", as well as "--terminals=off": the flag
// package reads a boolean flag's next argument as a stray one. A bare
// --terminals still means on, and "--terminals FILE" leaves FILE alone.
func joinOnOffValues(fs *flag.FlagSet, args []string) []string {
	out := make([]string, 0, len(args))
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			return append(out, args[i:]...)
		}
		// -terminals and --terminals, not --terminals=off or ---terminals.
		name, ok := strings.CutPrefix(a, "-")
		name = strings.TrimPrefix(name, "-")
		if f := fs.Lookup(name); ok && f != nil && !strings.HasPrefix(name, "-") && i+1 < len(args) {
			if _, isOnOff := f.Value.(*onOff); isOnOff && onOffWord(args[i+1]) {
				out = append(out, a+"="+args[i+1])
				i++
				continue
			}
		}
		out = append(out, a)
	}
	return out
}

var durationType = reflect.TypeFor[time.Duration]()

// valueFor is the flag.Value that parses into fv.
func valueFor(f Flag, fv reflect.Value) (flag.Value, error) {
	p := fv.Addr().Interface()
	if f.Value != nil {
		return f.Value(p), nil
	}
	if fv.Type() == durationType {
		return (*durationValue)(p.(*time.Duration)), nil
	}
	switch p := p.(type) {
	case *string:
		return (*stringValue)(p), nil
	case *bool:
		return (*boolValue)(p), nil
	case *int:
		return (*intValue)(p), nil
	case *int64:
		return (*int64Value)(p), nil
	case *float64:
		return (*floatValue)(p), nil
	case *[]string:
		return (*listValue)(p), nil
	}
	return nil, fmt.Errorf("field %s of type %s has no parser (give the row a Value)", f.Field, fv.Type())
}

type stringValue string

func (s *stringValue) String() string     { return string(*s) }
func (s *stringValue) Set(v string) error { *s = stringValue(v); return nil }

type boolValue bool

func (b *boolValue) String() string { return strconv.FormatBool(bool(*b)) }
func (b *boolValue) Set(v string) error {
	x, err := strconv.ParseBool(v)
	if err != nil {
		return fmt.Errorf("want true or false, not %q", v)
	}
	*b = boolValue(x)
	return nil
}
func (b *boolValue) IsBoolFlag() bool { return true }

type intValue int

func (n *intValue) String() string { return strconv.Itoa(int(*n)) }
func (n *intValue) Set(v string) error {
	x, err := strconv.ParseInt(v, 0, strconv.IntSize)
	if err != nil {
		return fmt.Errorf("want a whole number, not %q", v)
	}
	*n = intValue(x)
	return nil
}

type int64Value int64

func (n *int64Value) String() string { return strconv.FormatInt(int64(*n), 10) }
func (n *int64Value) Set(v string) error {
	x, err := strconv.ParseInt(v, 0, 64)
	if err != nil {
		return fmt.Errorf("want a whole number, not %q", v)
	}
	*n = int64Value(x)
	return nil
}

type floatValue float64

func (n *floatValue) String() string { return strconv.FormatFloat(float64(*n), 'g', -1, 64) }
func (n *floatValue) Set(v string) error {
	x, err := strconv.ParseFloat(v, 64)
	if err != nil {
		return fmt.Errorf("want a number, not %q", v)
	}
	*n = floatValue(x)
	return nil
}

type durationValue time.Duration

func (d *durationValue) String() string { return FormatDuration(time.Duration(*d)) }
func (d *durationValue) Set(v string) error {
	x, err := time.ParseDuration(v)
	if err != nil {
		return fmt.Errorf("want a duration such as 30s, 5m or 1h, not %q", v)
	}
	*d = durationValue(x)
	return nil
}

// listValue is a comma-separated list; every use replaces the list.
type listValue []string

func (l *listValue) String() string     { return strings.Join(*l, ",") }
func (l *listValue) Set(v string) error { *l = SplitList(v); return nil }

// FormatDuration is d as the docs write it: "5m", not "5m0s".
func FormatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// OnOff is a Flag.Value for a bool field spelled on or off (true, false,
// yes, no, 1 and 0 work too); the flag alone means on.
func OnOff(field any) flag.Value { return (*onOff)(field.(*bool)) }

type onOff bool

func (o *onOff) String() string {
	if o != nil && bool(*o) {
		return "on"
	}
	return "off"
}

func (o *onOff) Set(s string) error {
	if !onOffWord(s) {
		return fmt.Errorf("want on or off, not %q", s)
	}
	switch s {
	case "on", "true", "1", "yes":
		*o = true
	default:
		*o = false
	}
	return nil
}

// onOffWord reports whether s is one of the spellings onOff takes.
func onOffWord(s string) bool {
	switch s {
	case "on", "true", "1", "yes", "off", "false", "0", "no":
		return true
	}
	return false
}

func (o *onOff) IsBoolFlag() bool { return true }

// Row is one flag as the docs show it.
type Row struct {
	Flag, Env, Default, Help string
	// DefaultIsText: Default is a description ("host name"), not a value
	// to type.
	DefaultIsText bool
	// Arg names the flag's argument in a synopsis ("DURATION"); "" for a
	// bool flag, which takes none.
	Arg string
}

// Rows lists t's flags with their documented defaults: Flag.Default, or
// the value the field holds in defaults (a pointer to the settings struct
// filled with the defaults). A false bool, an empty string and an empty
// list show as "".
func (t Table) Rows(defaults any) ([]Row, error) {
	fs := flag.NewFlagSet(t.Command, flag.ContinueOnError)
	if err := t.Bind(fs, defaults); err != nil {
		return nil, err
	}
	rows := make([]Row, 0, len(t.Flags))
	for _, f := range t.Flags {
		def, text := f.Default, f.Default != ""
		if def == "" {
			def = fs.Lookup(f.Name).Value.String()
			if def == "false" {
				def = ""
			}
		}
		arg := f.Arg
		if arg == "" {
			arg = argName(fs.Lookup(f.Name).Value)
		}
		rows = append(rows, Row{Flag: f.Name, Env: t.Env(f.Name), Default: def, DefaultIsText: text, Help: f.Help, Arg: arg})
	}
	return rows, nil
}

// argName names the argument a flag.Value takes, for synopses.
func argName(v flag.Value) string {
	switch v.(type) {
	case *boolValue:
		return ""
	case *onOff:
		return "on|off"
	case *intValue, *int64Value:
		return "N"
	case *floatValue:
		return "RATE"
	case *durationValue:
		return "DURATION"
	case *listValue:
		return "LIST"
	}
	return "VALUE"
}

// Usage writes t's flags, bound on fs, as --help shows them: in the
// table's order, each with its argument, help and the default in force
// on this host. The lines keep the flag package's shape ("  -name ARG",
// then the help after a tab), which the deploy tests read flags from.
func (t Table) Usage(w io.Writer, fs *flag.FlagSet) {
	for _, f := range t.Flags {
		fl := fs.Lookup(f.Name)
		if fl == nil {
			continue
		}
		arg := f.Arg
		if arg == "" {
			arg = argName(fl.Value)
		}
		line := "  -" + f.Name
		switch {
		case arg == "on|off":
			line += "[=on|off]"
		case arg != "":
			line += " " + arg
		}
		fmt.Fprintf(w, "%s\n    \t%s", line, f.Help)
		if d := fl.DefValue; d != "" && d != "false" {
			fmt.Fprintf(w, " (default %s)", d)
		}
		fmt.Fprintln(w)
	}
}
