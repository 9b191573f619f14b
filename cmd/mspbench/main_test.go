package main

import (
	"bytes"
	"encoding/xml"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Rule: usage errors exit 2 before anything starts, and say what is wrong.
func TestUsageErrorsExit2(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"unknown flag", []string{"--nope"}, "flag provided but not defined: -nope"},
		{"stray argument", []string{"extra"}, `unexpected argument "extra"`},
		{"unknown scenario", []string{"--scenarios", "local,bogus"}, `unknown scenario "bogus"`},
		{"bad cluster sizes", []string{"--presence-nodes", "10,x"}, "--presence-nodes"},
		{"bad cross mode", []string{"--cross-modes", "smtp"}, `cross mode "smtp"`},
		{"zero rounds", []string{"--quick", "--rounds", "0"}, "rounds 0"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := run(tc.args, &stdout, &stderr); code != 2 {
				t.Fatalf("exit %d, want 2; stderr: %s", code, stderr.String())
			}
			if !strings.Contains(stderr.String(), tc.want) {
				t.Fatalf("stderr %q lacks %q", stderr.String(), tc.want)
			}
			if stdout.Len() != 0 {
				t.Fatalf("stdout not empty: %q", stdout.String())
			}
		})
	}
}

// Rule: --replot redraws the chart from a saved report without running
// anything: the committed docs/bench/results.json gives a well-formed SVG.
func TestReplotCommittedResults(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	b, err := os.ReadFile("../../docs/bench/results.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "results.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	if code := run([]string{"--replot", dir}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	svg, err := os.ReadFile(filepath.Join(dir, "chart.svg"))
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		XMLName xml.Name `xml:"http://www.w3.org/2000/svg svg"`
		Texts   []string `xml:"text"`
	}
	if err := xml.Unmarshal(svg, &doc); err != nil {
		t.Fatalf("chart.svg is not well-formed SVG: %v", err)
	}
	if all := strings.Join(doc.Texts, "\n"); !strings.Contains(all, "Throughput") || !strings.Contains(all, "local/tcp1") {
		t.Errorf("chart.svg lacks its panels or scenarios:\n%s", all)
	}
	if code := run([]string{"--replot", t.TempDir()}, &stdout, &stderr); code != 1 {
		t.Errorf("--replot of a directory without results.json: exit %d, want 1", code)
	}
}
