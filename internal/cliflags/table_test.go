package cliflags

import (
	"errors"
	"flag"
	"io"
	"strings"
	"testing"
	"time"
)

type tableSettings struct {
	Addr    string
	Max     int
	Bytes   int64
	Rate    float64
	Wait    time.Duration
	On      bool
	Seeds   []string
	Enabled bool
	Unknown map[string]int
}

// "Adding a flag is one table row": each kind of field gets its parser
// from the row alone.
func TestTableRowsParseEveryKind(t *testing.T) {
	t.Parallel()
	tab := Table{Command: "x", EnvPrefix: "X_", Flags: []Flag{
		{Name: "addr", Field: "Addr", Help: "a"},
		{Name: "max", Field: "Max", Help: "m"},
		{Name: "bytes", Field: "Bytes", Help: "b"},
		{Name: "rate", Field: "Rate", Help: "r"},
		{Name: "wait", Field: "Wait", Help: "w"},
		{Name: "on", Field: "On", Help: "o"},
		{Name: "seeds", Field: "Seeds", Help: "s"},
		{Name: "enabled", Field: "Enabled", Value: OnOff, Help: "e"},
	}}
	s := tableSettings{Addr: ":1", Enabled: true}
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	env := map[string]string{"X_MAX": "3", "X_ADDR": ":env"}
	err := tab.Parse(fs, &s, []string{"--addr", ":2", "--bytes", "9", "--rate", "0.5", "--wait", "2m", "--on", "--seeds", "a, b,", "--enabled=off"},
		func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	want := tableSettings{Addr: ":2", Max: 3, Bytes: 9, Rate: 0.5, Wait: 2 * time.Minute, On: true, Seeds: []string{"a", "b"}}
	if s.Addr != want.Addr || s.Max != want.Max || s.Bytes != want.Bytes || s.Rate != want.Rate || s.Wait != want.Wait || !s.On || strings.Join(s.Seeds, "|") != "a|b" || s.Enabled {
		t.Errorf("got %+v, want %+v", s, want)
	}
	if got := tab.FlagFor("Wait"); got != "--wait" {
		t.Errorf("FlagFor(Wait) = %q", got)
	}
	if got := tab.Env("max-conns"); got != "X_MAX_CONNS" {
		t.Errorf("Env = %q", got)
	}
}

// A row naming a missing field or a kind with no parser is a bug the
// table reports, naming the flag, instead of a flag that does nothing.
func TestTableBindRefusesBadRows(t *testing.T) {
	t.Parallel()
	for _, f := range []Flag{{Name: "gone", Field: "Gone"}, {Name: "unknown", Field: "Unknown"}} {
		var s tableSettings
		err := Table{Command: "x", Flags: []Flag{f}}.Bind(flag.NewFlagSet("x", flag.ContinueOnError), &s)
		if err == nil || !strings.Contains(err.Error(), "--"+f.Name) {
			t.Errorf("%s: err = %v, want one naming the flag", f.Name, err)
		}
	}
}

func TestRowsShowDefaults(t *testing.T) {
	t.Parallel()
	tab := Table{Command: "x", Flags: []Flag{
		{Name: "wait", Field: "Wait", Help: "w"},
		{Name: "addr", Field: "Addr", Default: "host name", Help: "a"},
		{Name: "on", Field: "On", Help: "o"},
	}}
	rows, err := tab.Rows(&tableSettings{Wait: 168 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if rows[0].Default != "168h" || rows[0].Arg != "DURATION" || rows[1].Default != "host name" || !rows[1].DefaultIsText || rows[2].Default != "" || rows[2].Arg != "" {
		t.Errorf("rows = %+v", rows)
	}
	md := Markdown(rows)
	if !strings.Contains(md, "| `--wait DURATION` | `168h` | w |") || !strings.Contains(md, "| `--addr VALUE` | host name | a |") {
		t.Errorf("markdown:\n%s", md)
	}
}

// man(7): a text line starting with a dot or an apostrophe would be a request, and
// a bare '-' a hyphen that copies as something other than a minus.
func TestRoffEscapes(t *testing.T) {
	t.Parallel()
	out := Roff(ManPage{Name: "x-y", Section: "8", Summary: "s", Description: []string{".hidden \\ back"}},
		[]Row{{Flag: "max-conns", Arg: "N", Help: "'quoted", Default: "1"}})
	for _, want := range []string{".TH X\\-Y 8", "\\&.hidden \\e back", ".B \\-\\-max\\-conns \\fIN\\fR", "\\&'quoted"} {
		if !strings.Contains(out, want) {
			t.Errorf("roff lacks %q:\n%s", want, out)
		}
	}
}

func TestSplice(t *testing.T) {
	t.Parallel()
	doc := "a\n" + BeginMarker("s") + "\nold\n" + EndMarker("s") + "\nz\n"
	got, err := Splice([]byte(doc), "s", "new\n")
	if err != nil || string(got) != "a\n"+BeginMarker("s")+"\nnew\n"+EndMarker("s")+"\nz\n" {
		t.Errorf("Splice = %q, %v", got, err)
	}
	if _, err := Splice([]byte("no markers"), "s", ""); !errors.Is(err, ErrNoMarkers) {
		t.Errorf("err = %v, want ErrNoMarkers", err)
	}
}

// --help lists the flags in the table's order with their arguments and
// the defaults in force.
func TestUsageFollowsTable(t *testing.T) {
	t.Parallel()
	tab := Table{Command: "x", Flags: []Flag{
		{Name: "wait", Field: "Wait", Help: "w"},
		{Name: "addr", Field: "Addr", Arg: "ADDR", Help: "a"},
		{Name: "enabled", Field: "Enabled", Value: OnOff, Help: "e"},
	}}
	s := tableSettings{Wait: time.Minute, Enabled: true}
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	if err := tab.Bind(fs, &s); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	tab.Usage(&b, fs)
	want := "  -wait DURATION\n    \tw (default 1m)\n  -addr ADDR\n    \ta\n  -enabled[=on|off]\n    \te (default on)\n"
	if b.String() != want {
		t.Errorf("usage:\n%s\nwant:\n%s", b.String(), want)
	}
}
