package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"testing"
)

// repoRoot is the main module's directory, seen from this package.
var repoRoot = filepath.Join("..", "..")

// testVersion is stamped into the binaries every test here uses.
const testVersion = "v1.2.3-test.1"

// binDir holds the programs built once for all tests by TestMain (as the
// packages ship them: static, stamped with testVersion); building them for
// each test would take most of the time budget on a busy machine.
var binDir string

func TestMain(m *testing.M) {
	os.Exit(func() int {
		if !wantsBinaries() {
			return m.Run()
		}
		dir, err := os.MkdirTemp("", "msprelay-pkg-test-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		src, err := filepath.Abs(repoRoot)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		var log bytes.Buffer
		if err := buildBinaries(src, dir, Config{Version: testVersion, Arch: runtime.GOARCH, Log: &log}); err != nil {
			fmt.Fprintf(os.Stderr, "%v\n%s", err, log.String())
			return 1
		}
		binDir = dir
		return m.Run()
	}())
}

// wantsBinaries: every test but the Dockerfile comparison needs the
// programs, and -short skips those.
func wantsBinaries() bool {
	flag.Parse()
	return !testing.Short()
}

// staticBinaries returns a private copy of the shared programs, which a
// test may move or change.
func staticBinaries(t *testing.T) string {
	t.Helper()
	if binDir == "" {
		t.Fatal("programs not built (TestMain)")
	}
	dir := t.TempDir()
	for _, b := range binaries {
		in, err := os.ReadFile(filepath.Join(binDir, b.name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, b.name), in, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// helpFlag matches a flag line of Go's flag package usage output.
var helpFlag = regexp.MustCompile(`(?m)^  -([a-z0-9-]+)`)

// flagsOf lists a program's flags from its --help.
func flagsOf(t *testing.T, bin string) []string {
	t.Helper()
	var out bytes.Buffer
	cmd := exec.Command(bin, "--help")
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s --help: %v\n%s", bin, err, out.String())
	}
	var flags []string
	for _, m := range helpFlag.FindAllStringSubmatch(out.String(), -1) {
		flags = append(flags, m[1])
	}
	if len(flags) < 5 {
		t.Fatalf("%s --help lists only %v", bin, flags)
	}
	return flags
}
