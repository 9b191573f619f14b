package bench

import (
	"fmt"
	"slices"
	"strings"
)

// Target is one goal of the issue and whether this run met it.
type Target struct {
	Name   string `json:"name"`
	Want   string `json:"want"`
	Got    string `json:"got"`
	Status string `json:"status"` // "met", "not met" or "not measured"
}

// Target statuses.
const (
	StatusMet         = "met"
	StatusNotMet      = "not met"
	StatusNotMeasured = "not measured"
)

func status(ok bool) string {
	if ok {
		return StatusMet
	}
	return StatusNotMet
}

// comparison returns the comparison of a scenario, or nil.
func (r *Report) comparison(scenario string) *Comparison {
	for _, c := range r.Comparisons {
		if c.Scenario == scenario {
			return c
		}
	}
	return nil
}

// rateFloor is the target for a rate ratio (the least share of its
// baseline the node must reach), or 0 for a ratio without one. The table's
// targets and the chart's red marks both come from here; the floors are
// the same for every workload. Issue 21 judges local delivery against the
// minimal relay (the floor of the job); the ratio to the reply-only
// minimal server is shown but has no target.
func rateFloor(scenario string, q Ratio) float64 {
	kind, _, mode := splitScenario(scenario)
	switch {
	case kind == "local" && q.To == armRelay && mode == ModeTCP1:
		return 0.8
	case kind == "local" && q.To == armRelay:
		return 0.7
	case kind == "cross" && q.To == "local":
		return 0.5
	case kind == "cross" && q.To == modeNATS:
		return 0.3
	}
	return 0
}

// localTargetNames names the local rate target of each mode.
var localTargetNames = map[string]string{
	ModeTCP1:    "TCP one message per connection, rate",
	ModeTCPSeq:  "TCP one connection per sender, one at a time, rate",
	ModeTCPPipe: "TCP pipelined, rate",
	ModeUDP:     "UDP, rate",
}

// ratioTo returns c's ratio to the arm named to, or nil.
func (c *Comparison) ratioTo(to string) *Ratio {
	for i := range c.Ratios {
		if c.Ratios[i].To == to {
			return &c.Ratios[i]
		}
	}
	return nil
}

// workloads are the workloads the report covers, in run order; a report
// from before the hot workload covers spread alone.
func (r *Report) workloads() []string {
	if len(r.Settings.Workloads) > 0 {
		return r.Settings.Workloads
	}
	var out []string
	note := func(w string) {
		if w == "" {
			w = WorkloadSpread
		}
		if !slices.Contains(out, w) {
			out = append(out, w)
		}
	}
	for _, c := range r.Comparisons {
		note(c.workloadOf())
	}
	for _, a := range r.Allocs {
		note(a.Workload)
	}
	if len(out) == 0 {
		out = []string{WorkloadSpread}
	}
	return out
}

// allocsOf returns the allocs results of workload wl.
func (r *Report) allocsOf(wl string) []AllocResult {
	var out []AllocResult
	for _, a := range r.Allocs {
		if a.Workload == wl || (a.Workload == "" && wl == WorkloadSpread) {
			out = append(out, a)
		}
	}
	return out
}

// maxAllocsPerMsg is the most any measured batch allocated per message.
const maxAllocsPerMsg = 10

// targets evaluates the targets against what the run measured:
// every message-path target once per workload ("same run, BOTH
// workloads"), then the ones that have no workload.
func targets(r *Report) []Target {
	var out []Target
	add := func(name, want, got string, measured, ok bool) {
		t := Target{Name: name, Want: want, Got: got, Status: StatusNotMeasured}
		if measured {
			t.Status = status(ok)
		} else if got == "" {
			t.Got = "-"
		}
		out = append(out, t)
	}
	rateGot := func(q Ratio) string { return fmt.Sprintf("%.2fx (rounds %.2f-%.2f)", q.Rate, q.RateMin, q.RateMax) }
	for _, wl := range r.workloads() {
		in := " (" + wl + ")"
		for _, mode := range localModes() {
			name := localTargetNames[mode] + in
			scenario := scenarioName("local", wl, mode)
			floor := rateFloor(scenario, Ratio{To: armRelay})
			want := fmt.Sprintf(">= %.1fx %s", floor, armRelay)
			var q *Ratio
			c := r.comparison(scenario)
			if c != nil {
				q = c.ratioTo(armRelay)
			}
			if q == nil {
				add(name, want, "", false, false)
				continue
			}
			got := rateGot(*q)
			// The reply-only server's column, as in the table.
			for _, server := range []string{armMinimal, armUDPLoop} {
				if s := c.ratioTo(server); s != nil {
					got += fmt.Sprintf("; %.2fx %s", s.Rate, server)
				}
			}
			add(name, want, got, true, q.Rate >= floor)
		}

		crossed := false
		for _, c := range r.Comparisons {
			kind, cwl, mode := splitScenario(c.Scenario)
			if kind != "cross" || cwl != wl {
				continue
			}
			crossed = true
			for _, q := range c.Ratios {
				floor := rateFloor(c.Scenario, q)
				name := "cross-node rate (" + mode + ", " + wl + ")"
				if q.To == modeNATS {
					name = "cross-node rate vs raw NATS request-reply (" + mode + ", " + wl + ")"
				}
				add(name, fmt.Sprintf(">= %.1fx %s", floor, q.To), rateGot(q), true, q.Rate >= floor)
				if q.To == "local" {
					add("cross-node reply p99 ("+mode+", "+wl+")", "<= 2x local", fmt.Sprintf("%.2fx", q.P99), true, q.P99 > 0 && q.P99 <= 2)
				}
			}
		}
		if !crossed {
			add("cross-node rate"+in, fmt.Sprintf(">= %.1fx local", rateFloor("cross/", Ratio{To: "local"})), "", false, false)
			add("cross-node rate vs raw NATS request-reply"+in, fmt.Sprintf(">= %.1fx nats", rateFloor("cross/", Ratio{To: modeNATS})), "", false, false)
			add("cross-node reply p99"+in, "<= 2x local", "", false, false)
		}

		allocs := r.allocsOf(wl)
		if len(allocs) == 0 {
			add("allocations per locally delivered message"+in, fmt.Sprintf("<= %d", maxAllocsPerMsg), "", false, false)
			add("no live-heap growth once the dedup windows are full"+in, "no growth", "", false, false)
			continue
		}
		ok, full, grows := true, true, true
		var per, heap []string
		for _, a := range allocs {
			hi := slices.Max(a.AllocsPerMsg)
			ok = ok && hi <= maxAllocsPerMsg
			per = append(per, fmt.Sprintf("%s %.1f-%.1f", a.Mode, slices.Min(a.AllocsPerMsg), hi))
			full = full && a.WindowsFull
			grows = grows && a.NoGrowth
			h := fmt.Sprintf("%s %+.1f B/msg over the last two batches, ", a.Mode, a.RetainedPerMsg)
			if a.Mode == ModeUDP {
				h += fmt.Sprintf("UDP warm-up %d %s UDP window %d, ", a.Warmup, cmpSign(int64(a.Warmup), udpDedupWindow), udpDedupWindow)
			}
			h += fmt.Sprintf("sent before %d %s window %d", a.Before, cmpSign(a.Before, recentIDWindow), recentIDWindow)
			heap = append(heap, h)
		}
		add("allocations per locally delivered message"+in, fmt.Sprintf("<= %d", maxAllocsPerMsg),
			strings.Join(per, "; ")+" allocs/msg", true, ok)
		got := strings.Join(heap, "; ")
		if !full {
			got = "windows not full, so not measured: " + got
		}
		add("no live-heap growth once the dedup windows are full"+in, "no growth", got, full, grows)
	}

	var p10 *PresenceResult
	for i := range r.Presence {
		if r.Presence[i].Nodes == 10 {
			p10 = &r.Presence[i]
		}
	}
	if p10 == nil {
		add("sign-in visible on all 10 nodes, p99", "<= 1000 ms", "", false, false)
	} else {
		add("sign-in visible on all 10 nodes, p99", "<= 1000 ms",
			fmt.Sprintf("%.0f ms (n=%d)", p10.SignInP99ms, p10.SignIns), true, p10.SignInP99ms <= 1000)
	}

	scaleTargets(r, add)

	// Issue 21: "an idle session <= 8 KiB" (issue 13 allowed 16).
	if s := r.Sessions; s == nil || s.Opened != s.Sessions {
		add("idle session memory", "<= 8 KiB", "", false, false)
	} else {
		add("idle session memory", "<= 8 KiB", fmt.Sprintf("%.1f KiB RSS (%d sessions)", s.RSSPerSessionKiB, s.Sessions),
			true, s.RSSPerSessionKiB <= 8)
	}
	if s := r.Sessions; s == nil || s.Users == nil || s.Users.Opened != s.Users.Sessions {
		add("idle signed-in user on a node, distinct users", "<= 8 KiB", "", false, false)
	} else {
		add("idle signed-in user on a node, distinct users", "<= 8 KiB",
			fmt.Sprintf("%.1f KiB RSS (%d users)", s.Users.RSSPerKiB, s.Users.Users), true, s.Users.RSSPerKiB <= 8)
	}
	return out
}

// cmpSign is ">" when a > b, else "<=".
func cmpSign(a, b int64) string {
	if a > b {
		return ">"
	}
	return "<="
}
