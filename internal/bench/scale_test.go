package bench

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// Rule (issue 22): "a scale scenario in mspbench with real node processes
// ... sign-in visibility p50/p99; churn ... state change visible
// everywhere p50/p99; directory memory per principal", and every process
// started is stopped. Quick size: 3 nodes, a few hundred principals; no
// speed is asserted, only that each figure was measured and that no
// process the scenario started is left running.
func TestScaleQuickMeasuresAndStopsEveryProcess(t *testing.T) {
	t.Parallel()
	cfg := QuickConfig()
	cfg.Scenarios = []string{ScenarioScale}
	cfg.Command = "test"
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	rep, err := Run(ctx, cfg)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if len(rep.Scale) != 1 {
		t.Fatalf("scale results = %d, want 1", len(rep.Scale))
	}
	r := rep.Scale[0]
	if r.Nodes != 3 || r.FormSecs <= 0 || r.RSSIdleMiB <= 0 {
		t.Errorf("cluster = %+v, want 3 nodes formed with an RSS reading", r)
	}
	if r.SignInTimedOut != 0 || r.SignInP50ms <= 0 || r.SignInP99ms < r.SignInP50ms {
		t.Errorf("sign-in visibility p50 %v p99 %v, %d timed out: want every sign-in timed", r.SignInP50ms, r.SignInP99ms, r.SignInTimedOut)
	}
	if r.Loaded != cfg.ScalePrincipals || !r.Converged || r.RSSLoadedMiB <= 0 {
		t.Errorf("load = %d of %d principals, converged %v, RSS %v MiB: want all, shown on every node", r.Loaded, cfg.ScalePrincipals, r.Converged, r.RSSLoadedMiB)
	}
	if len(r.Churn) != 1 || r.Churn[0].Ops == 0 || r.Churn[0].Samples == 0 || r.Churn[0].TimedOut != 0 {
		t.Errorf("churn = %+v, want one phase with operations and every sampled change timed", r.Churn)
	}
	if r.Killed != 0 {
		t.Errorf("%d node processes had to be killed, want a clean stop", r.Killed)
	}
	// 3 nodes and one holder.
	if len(r.pids) != 4 {
		t.Errorf("pids = %v, want 3 nodes and 1 holder", r.pids)
	}
	for _, pid := range r.pids {
		if _, err := os.Stat("/proc/" + strconv.Itoa(pid)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("process %d still exists after the scenario", pid)
		}
	}
	var table, svg bytes.Buffer
	if err := rep.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(table.String(), "Scale (real node processes") {
		t.Errorf("table has no scale section:\n%s", table.String())
	}
	if err := rep.WriteScaleChart(&svg); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(svg.String(), "<svg") || !strings.Contains(svg.String(), "3") {
		t.Errorf("scale chart = %q", svg.String())
	}
}

// Rule: a cancelled run stops every process it started ("Every process
// started is stopped on every path (also on ctx cancel/timeout)").
func TestScaleCancelStopsEveryProcess(t *testing.T) {
	t.Parallel()
	cfg := QuickConfig()
	cfg.Scenarios = []string{ScenarioScale}
	// Cancelled while the holders sign their principals in: enough of
	// them that the sign-in is still under way.
	cfg.ScalePrincipals = 5000
	ctx, cancel := context.WithCancel(context.Background())
	var cancelled atomic.Bool
	lines := lineFunc(func(l string) {
		if strings.Contains(l, "sign-in visible on all") {
			cancelled.Store(true)
			cancel()
		}
	})
	cfg.Progress = lines
	done := make(chan struct{})
	var rep *Report
	go func() {
		defer close(done)
		rep, _ = Run(ctx, cfg)
	}()
	select {
	case <-done:
	case <-time.After(4 * time.Minute):
		cancel()
		t.Fatal("Run did not return")
	}
	cancel()
	if rep == nil {
		t.Fatal("no report")
	}
	if !cancelled.Load() {
		t.Fatal("the run ended before the cancel point")
	}
	if r := rep.Scale; len(r) != 1 || len(r[0].pids) < 3 || r[0].Loaded != 0 {
		t.Fatalf("scale = %+v: want the partial result with its processes, cut before the principals were in", rep.Scale)
	}
	for _, pid := range rep.Scale[0].pids {
		if _, err := os.Stat("/proc/" + strconv.Itoa(pid)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("process %d still exists after the cancelled scenario", pid)
		}
	}
}

// lineFunc is an io.Writer calling itself with each write (the harness's
// progress writes whole lines, one at a time under its lock).
type lineFunc func(string)

func (f lineFunc) Write(p []byte) (int, error) {
	f(string(p))
	return len(p), nil
}
