package main

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/msprelay/msprelay/internal/bench"
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
		{"unknown workload", []string{"--workloads", "spread,cold"}, `unknown workload "cold"`},
		{"no workload", []string{"--workloads", ","}, "--workloads: want at least one"},
		{"bad alloc mode", []string{"--alloc-modes", "udp,nats"}, `alloc mode "nats"`},
		{"negative profile top", []string{"--profile-top", "-1"}, "profile top -1"},
		{"bad scale sizes", []string{"--scale-nodes", "30,x"}, "--scale-nodes"},
		{"scale cluster of one", []string{"--scale-nodes", "1"}, "scale cluster size 1"},
		{"bad scale profile", []string{"--scale-profiles", "lan,moon"}, `scale gossip profile "moon"`},
		{"bad churn rates", []string{"--scale-churn-rates", "200,0"}, "scale churn rate 0"},
		{"negative crashes", []string{"--scale-crashes", "-1"}, "scale crashes -1"},
		{"negative soak", []string{"--scale-soak", "-1s"}, "scale soak -1s"},
		{"negative soak rate", []string{"--scale-soak-rate", "-5"}, "scale soak rate -5"},
		{"negative load bound", []string{"--scale-load-for", "-1m"}, "scale load bound -1m0s"},
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
	if all := chartTexts(t, dir); !strings.Contains(all, "Throughput") || !strings.Contains(all, "local/tcp1") {
		t.Errorf("chart.svg lacks its panels or scenarios:\n%s", all)
	}
	var stdout, stderr bytes.Buffer
	if code := run([]string{"--replot", t.TempDir()}, &stdout, &stderr); code != 1 {
		t.Errorf("--replot of a directory without results.json: exit %d, want 1", code)
	}
}

// Rule: --replot handles a results.json with both workloads: every spread
// and hot scenario gets its bars, named as in the tables.
func TestReplotBothWorkloads(t *testing.T) {
	t.Parallel()
	rep := bench.Report{Settings: bench.Settings{Workloads: bench.Workloads()}}
	var names []string
	for _, wl := range bench.Workloads() {
		kind := ""
		if wl == bench.WorkloadHot {
			kind = "-hot"
		}
		arm := func(name, role string, rate float64) *bench.Arm {
			return &bench.Arm{Name: name, Role: role, Rate: rate, Reply: bench.Latency{N: 10, P50us: 100 * rate / 1000, P99us: rate / 5}}
		}
		local := &bench.Comparison{Scenario: "local" + kind + "/tcppipe", Workload: wl,
			Arms:   []*bench.Arm{arm("minimal", "baseline", 90000), arm("node", "subject", 30000)},
			Ratios: []bench.Ratio{{Of: "node", To: "minimal", Rate: 0.33}}}
		cross := &bench.Comparison{Scenario: "cross" + kind + "/tcp1", Workload: wl,
			Arms:   []*bench.Arm{arm("local", "baseline", 12000), arm("cross", "subject", 7000), arm("nats", "baseline", 60000)},
			Ratios: []bench.Ratio{{Of: "cross", To: "local", Rate: 0.58}, {Of: "cross", To: "nats", Rate: 0.12}}}
		rep.Comparisons = append(rep.Comparisons, local, cross)
		names = append(names, local.Scenario, cross.Scenario)
	}
	b, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "results.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	all := chartTexts(t, dir)
	for _, n := range names {
		// Each scenario labels its arms in two panels and its ratios in the third.
		if c := strings.Count(all, n+" "); c < 5 {
			t.Errorf("chart names %q %d times, want every arm and ratio:\n%s", n, c, all)
		}
	}
}

// chartTexts runs --replot on dir, checks the chart it writes is well-formed
// SVG and returns the chart's texts, a line each.
func chartTexts(t *testing.T, dir string) string {
	t.Helper()
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
	return strings.Join(doc.Texts, "\n")
}
