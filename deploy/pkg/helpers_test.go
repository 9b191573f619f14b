package main

import (
	"bytes"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
)

// repoRoot is the main module's directory, seen from this package.
var repoRoot = filepath.Join("..", "..")

// staticBinaries builds the three programs as the packages ship them.
func staticBinaries(t *testing.T, version string) string {
	t.Helper()
	dir := t.TempDir()
	src, err := filepath.Abs(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	if err := buildBinaries(src, dir, Config{Version: version, Arch: "amd64", Log: &log}); err != nil {
		t.Fatalf("%v\n%s", err, log.String())
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
