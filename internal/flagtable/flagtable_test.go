package flagtable

import (
	"bytes"
	"flag"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/msprelay/msprelay/internal/cliflags"
)

// root is the repository root, two levels up from this package.
const root = "../.."

// Issue 19: "a test fails when docs and flags disagree". The docs and man
// pages are regenerated from the tables and compared byte for byte.
func TestDocsAgreeWithFlags(t *testing.T) {
	t.Parallel()
	files, err := Generate(func(p string) ([]byte, error) { return os.ReadFile(filepath.Join(root, p)) })
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{ReadmePath, NodeManPath, RelayManPath} {
		got, err := os.ReadFile(filepath.Join(root, p))
		if err != nil {
			t.Errorf("%s: %v (run go run ./internal/flagtable/mkdocs)", p, err)
			continue
		}
		if !bytes.Equal(got, files[p]) {
			t.Errorf("%s disagrees with the flag tables: run go run ./internal/flagtable/mkdocs", p)
		}
	}
}

// docs/SECURITY.md lists the abuse limits in prose; each default it states
// must be the flag's default.
func TestSecurityLimitsAgreeWithFlags(t *testing.T) {
	t.Parallel()
	doc, err := os.ReadFile(filepath.Join(root, "docs/SECURITY.md"))
	if err != nil {
		t.Fatal(err)
	}
	nd := NodeDefaults()
	rows, err := Node.Rows(&nd)
	if err != nil {
		t.Fatal(err)
	}
	def := map[string]string{}
	for _, r := range rows {
		def[r.Flag] = r.Default
	}
	// | `--max-conns` | `10000` | ...
	row := regexp.MustCompile("(?m)^\\| `--([a-z-]+)` \\| `([^`]+)` \\|")
	n := 0
	for _, m := range row.FindAllSubmatch(doc, -1) {
		flag, want := string(m[1]), string(m[2])
		got, ok := def[flag]
		if !ok {
			t.Errorf("SECURITY.md lists --%s, which msprelay-node does not have", flag)
			continue
		}
		n++
		if got != want {
			t.Errorf("SECURITY.md says --%s defaults to %s; the flag's default is %s", flag, want, got)
		}
	}
	if n < 5 {
		t.Errorf("found %d limit rows in SECURITY.md; the table's shape changed", n)
	}
}

// Every row binds to a field, and names and environment variables are
// unique, so that the tables can parse and document every flag.
func TestTablesBind(t *testing.T) {
	t.Parallel()
	nd, rd := NodeDefaults(), RelayDefaults()
	for _, tc := range []struct {
		table    cliflags.Table
		settings any
	}{{Node, &nd}, {Relay, &rd}} {
		fs := flag.NewFlagSet(tc.table.Command, flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		if err := tc.table.Bind(fs, tc.settings); err != nil {
			t.Fatalf("%s: %v", tc.table.Command, err)
		}
		seen := map[string]bool{}
		for _, f := range tc.table.Flags {
			if seen[f.Field] {
				t.Errorf("%s: field %s set by two flags", tc.table.Command, f.Field)
			}
			seen[f.Field] = true
			if f.Help == "" || strings.ContainsAny(f.Help, "\n`") {
				t.Errorf("%s --%s: help must be one plain line: %q", tc.table.Command, f.Name, f.Help)
			}
		}
	}
}

// The environment sets a flag; the command line wins over it; a bad value
// names the variable.
func TestEnvironmentAndCommandLine(t *testing.T) {
	t.Parallel()
	env := map[string]string{"MSPRELAY_MAX_CONNS": "7", "MSPRELAY_MSP": ":1818", "MSPRELAY_JOIN": "a:1, b:2"}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	s := NodeDefaults()
	fs := flag.NewFlagSet("node", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	if err := Node.Parse(fs, &s, []string{"--msp", ":2000"}, lookup); err != nil {
		t.Fatal(err)
	}
	if s.MSPMaxConns != 7 || s.MSPAddr != ":2000" || len(s.Join) != 2 || s.Join[1] != "b:2" {
		t.Errorf("MSPMaxConns %d MSPAddr %q Join %q; want 7, :2000 (the command line wins), [a:1 b:2]", s.MSPMaxConns, s.MSPAddr, s.Join)
	}
	bad := func(k string) (string, bool) { return "lots", k == "MSPRELAY_MAX_CONNS" }
	s = NodeDefaults()
	err := Node.Parse(flag.NewFlagSet("node", flag.ContinueOnError), &s, nil, bad)
	if err == nil || !strings.Contains(err.Error(), "MSPRELAY_MAX_CONNS") {
		t.Errorf("bad env value: err = %v, want one naming MSPRELAY_MAX_CONNS", err)
	}
}

// A MSPRELAY_VERSION left in a unit's environment must not turn the
// daemon into a version printer: --version has no variable.
func TestVersionHasNoEnvironmentVariable(t *testing.T) {
	t.Parallel()
	s := NodeDefaults()
	fs := flag.NewFlagSet("node", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	lookup := func(k string) (string, bool) { return "true", k == "MSPRELAY_VERSION" }
	if err := Node.Parse(fs, &s, nil, lookup); err != nil || s.ShowVersion {
		t.Errorf("MSPRELAY_VERSION=true: ShowVersion %v, err %v; want false, nil", s.ShowVersion, err)
	}
}
