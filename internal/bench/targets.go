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
// targets and the chart's red marks both come from here.
func rateFloor(scenario string, q Ratio) float64 {
	switch {
	case scenario == "local/"+ModeTCP1:
		return 0.8
	case strings.HasPrefix(scenario, "local/"):
		return 0.6
	case strings.HasPrefix(scenario, "cross/") && q.To == "local":
		return 0.5
	}
	return 0
}

// targets evaluates the targets against what the run measured.
func targets(r *Report) []Target {
	var out []Target
	add := func(name, want, got string, measured, ok bool) {
		t := Target{Name: name, Want: want, Got: got, Status: StatusNotMeasured}
		if measured {
			t.Status = status(ok)
		} else {
			t.Got = "-"
		}
		out = append(out, t)
	}
	rate := func(scenario string, name string) {
		floor := rateFloor(scenario, Ratio{})
		c := r.comparison(scenario)
		if c == nil || len(c.Ratios) == 0 {
			add(name, fmt.Sprintf(">= %.1fx baseline", floor), "", false, false)
			return
		}
		q := c.Ratios[0]
		add(name, fmt.Sprintf(">= %.1fx %s", floor, q.To),
			fmt.Sprintf("%.2fx (rounds %.2f-%.2f)", q.Rate, q.RateMin, q.RateMax), true, q.Rate >= floor)
	}
	rate("local/"+ModeTCP1, "TCP one message per connection, rate")
	rate("local/"+ModeTCPPipe, "TCP pipelined, rate")
	rate("local/"+ModeUDP, "UDP, rate")

	var crossed bool
	for _, c := range r.Comparisons {
		mode, ok := strings.CutPrefix(c.Scenario, "cross/")
		if !ok {
			continue
		}
		crossed = true
		q := c.Ratios[0]
		floor := rateFloor(c.Scenario, q)
		add("cross-node rate ("+mode+")", fmt.Sprintf(">= %.1fx %s", floor, q.To), fmt.Sprintf("%.2fx (rounds %.2f-%.2f)", q.Rate, q.RateMin, q.RateMax), true, q.Rate >= floor)
		add("cross-node reply p99 ("+mode+")", "<= 2x local", fmt.Sprintf("%.2fx", q.P99), true, q.P99 > 0 && q.P99 <= 2)
	}
	if !crossed {
		add("cross-node rate", fmt.Sprintf(">= %.1fx local", rateFloor("cross/", Ratio{To: "local"})), "", false, false)
		add("cross-node reply p99", "<= 2x local", "", false, false)
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

	if s := r.Sessions; s == nil || s.Opened != s.Sessions {
		add("idle session memory", "<= 16 KiB", "", false, false)
	} else {
		add("idle session memory", "<= 16 KiB", fmt.Sprintf("%.1f KiB RSS (%d sessions)", s.RSSPerSessionKiB, s.Sessions),
			true, s.RSSPerSessionKiB <= 16)
	}

	if len(r.Allocs) == 0 {
		add("zero allocation growth per message", "no growth", "", false, false)
	} else {
		ok := true
		var parts []string
		for _, a := range r.Allocs {
			ok = ok && a.NoGrowth
			parts = append(parts, fmt.Sprintf("%s %.1f-%.1f allocs/msg, live heap %+.1f B/msg over the last two batches", a.Mode,
				slices.Min(a.AllocsPerMsg), slices.Max(a.AllocsPerMsg), a.RetainedPerMsg))
		}
		add("zero allocation growth per message", "no growth", strings.Join(parts, "; "), true, ok)
	}
	return out
}
