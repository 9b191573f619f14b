package bench

import (
	"bufio"
	"fmt"
	"io"
	"strings"
)

// WriteTable writes the report as Markdown tables: readable on a terminal
// and pasteable into docs/BENCHMARKS.md as it is.
func (r *Report) WriteTable(w io.Writer) error {
	bw := bufio.NewWriter(w)
	p := func(format string, a ...any) { fmt.Fprintf(bw, format+"\n", a...) }
	row := func(cells ...any) {
		s := make([]string, len(cells))
		for i, c := range cells {
			s[i] = fmt.Sprint(c)
		}
		p("| %s |", strings.Join(s, " | "))
	}
	header := func(cells ...string) {
		p("| %s |", strings.Join(cells, " | "))
		p("|%s", strings.Repeat("---|", len(cells)))
	}
	m := r.Machine
	quick := ""
	if r.Quick {
		quick = " (quick mode: smoke test, figures not representative)"
	}
	p("mspbench run of %s, %.0f s%s", r.Started.Format("2006-01-02 15:04 UTC"), r.Seconds, quick)
	p("")
	p("* command: `%s`", r.Command)
	p("* machine: %s, %d cores (GOMAXPROCS %d), %d MiB, %s, kernel %s, %s", m.CPU, m.Cores, m.GOMAXPROCS, m.MemoryMiB, m.OS, m.Kernel, m.Go)
	p("* load average (1/5/15 min) before: %s, after: %s", m.LoadBefore, m.LoadAfter)
	s := r.Settings
	p("* load: %d in flight (pipelined: %d conns), %d receiving sessions, %d rounds of %.1f s per arm (at most %d messages), arms alternating",
		s.Concurrency, s.Conns, s.Receivers, s.Rounds, s.RoundSecs, s.MaxMessages)
	if len(s.Workloads) > 0 {
		p("* workloads: %s (spread: to the receiving sessions in turn, empty RECIP-TERM; hot: every message to one session, "+
			"RECIP-TERM its terminal; client: as hot, the session an `msp listen` process acknowledging each message; "+
			"scenarios are named kind-workload/mode, spread's kind/mode)", strings.Join(s.Workloads, ", "))
	}

	if len(r.Comparisons) > 0 {
		p("")
		p("Throughput is the median over rounds of '+' replies per second; latencies pool every round's samples (µs). " +
			"Failed counts '-' replies, lost datagrams and I/O errors, and '+' replies saying the message was queued in the mailbox instead of delivered (shown as queued).")
		p("")
		header("scenario", "arm", "msg/s", "reply p50", "reply p99", "delivery p50", "delivery p99", "failed", "undelivered")
		for _, c := range r.Comparisons {
			for _, a := range c.Arms {
				dp50, dp99, und := "-", "-", "-"
				if a.delivers {
					und = fmt.Sprint(a.Undelivered)
				}
				if a.Delivery.N > 0 {
					dp50, dp99 = fmt.Sprintf("%.0f", a.Delivery.P50us), fmt.Sprintf("%.0f", a.Delivery.P99us)
				}
				failed := fmt.Sprint(a.Failed)
				if a.Queued > 0 {
					failed += fmt.Sprintf(" (%d queued)", a.Queued)
				}
				row(c.Scenario, a.Name, fmt.Sprintf("%.0f", a.Rate), fmt.Sprintf("%.0f", a.Reply.P50us),
					fmt.Sprintf("%.0f", a.Reply.P99us), dp50, dp99, failed, und)
			}
		}
		p("")
		p("Ratios: rate is the median of per-round ratios (min-max over rounds); latency ratios compare pooled percentiles.")
		p("")
		header("scenario", "ratio", "rate", "reply p50", "reply p99")
		for _, c := range r.Comparisons {
			for _, q := range c.Ratios {
				row(c.Scenario, q.Of+" / "+q.To, fmt.Sprintf("%.2fx (%.2f-%.2f)", q.Rate, q.RateMin, q.RateMax),
					fmt.Sprintf("%.2fx", q.P50), fmt.Sprintf("%.2fx", q.P99))
			}
		}
	}
	if rows := r.floorRows(); len(rows) > 0 {
		p("")
		p("The floor of the job: the node against the minimal relay (push to one client process, '+' on its acknowledgement) " +
			"and the reply-only minimal server, in the same run (median msg/s over rounds; node reply p99).")
		p("")
		header("workload", "path", "node", "minimal relay (same job)", "node / relay", "minimal server (reply only)", "node / server")
		for _, cells := range rows {
			row(cells...)
		}
	}
	if len(r.Presence) > 0 {
		p("")
		p("Presence (in-process gossip, profile local; sign-in = Upsert until every node's directory delivered it):")
		p("")
		header("nodes", "formed", "sign-ins", "visible p50", "visible p99", "graceful leave", "crash detected")
		for _, q := range r.Presence {
			row(q.Nodes, fmt.Sprintf("%.1f s", q.FormSecs), q.SignIns, fmt.Sprintf("%.0f ms", q.SignInP50ms),
				fmt.Sprintf("%.0f ms", q.SignInP99ms), fmt.Sprintf("%.0f ms", q.LeaveMs), fmt.Sprintf("%.0f ms", q.CrashMs))
		}
	}
	if q := r.Sessions; q != nil {
		p("")
		p("Idle sessions: %d opened of %d in %.1f s; child RSS %d -> %d KiB: **%.1f KiB per session** "+
			"(Go heap+stacks %.1f KiB, %.1f goroutines per session).",
			q.Opened, q.Sessions, q.OpenSecs, q.RSSBeforeKiB, q.RSSAfterKiB, q.RSSPerSessionKiB, q.HeapStackPerSessionKiB, q.GoroutinesPerSession)
		for _, u := range []struct {
			what string
			r    *NodeSessionsResult
		}{{"distinct user", q.Users}, {"terminal of one user", q.Terminals}} {
			if u.r == nil || u.r.Opened != u.r.Sessions {
				continue
			}
			p("")
			p("Idle sessions on a whole node (embedded NATS and JetStream), distinct users %d: %d opened of %d in %.1f s; node RSS %d -> %d KiB: "+
				"**%.1f KiB per %s** (Go heap+stacks %.1f KiB, of which stacks %.1f KiB; %.1f goroutines per session).",
				u.r.Users, u.r.Opened, u.r.Sessions, u.r.OpenSecs, u.r.RSSBeforeKiB, u.r.RSSAfterKiB, u.r.RSSPerKiB, u.what,
				u.r.HeapStackPerKiB, u.r.StackPerKiB, u.r.GoroutinesPerSession)
		}
		if m := q.Many; m != nil && m.Opened == m.Sessions {
			p("")
			p("Many sessions on one node: %d tried, %d allowed by the open-file limit (%d), %d opened (%d Unix socket, %d TCP from %d source addresses), "+
				"every one a distinct user, in %.1f s (**%.0f sign-ins/s**); node RSS %d -> %d KiB: **%.1f KiB per session** "+
				"(Go heap+stacks %.1f KiB, %.2f goroutines per session); delivery to one more session while all are signed in "+
				"p50 %.0f µs, p99 %.0f µs (%d messages, %d undelivered); **shutdown %.1f s**.",
				m.Tried, m.Sessions, m.FileLimit, m.Opened, m.Unix, m.TCP, m.Sources, m.SignInSecs, m.SignInRate,
				m.RSSBeforeKiB, m.RSSAfterKiB, m.RSSPerKiB, m.HeapStackPerKiB, m.GoroutinesPerSession,
				m.Delivery.P50us, m.Delivery.P99us, m.Delivery.N, m.Undelivered, m.ShutdownSecs)
		}
	}
	if q := r.Directory; q != nil {
		p("")
		p("Directory: %d principals over %d nodes converged in %.1f s (complete: %v); heap +%.0f MiB (%.1f MiB per node, "+
			"%.0f B per entry replica), RSS +%.0f MiB; one Lookup on a loaded node takes %.0f µs. Churn %d sign-outs/ins "+
			"in %.1f s (%.0f/s): state change visible on every node p50 %.0f ms, p99 %.0f ms, max %.0f ms (n=%d, %d timed out).",
			q.Principals, q.Nodes, q.LoadSecs, q.Complete, q.HeapMiB, q.HeapPerNodeMiB, q.BytesPerReplica, q.RSSMiB, q.LookupUs,
			q.ChurnOps, q.ChurnSecs, q.ChurnRate, q.UpdateP50ms, q.UpdateP99ms, q.UpdateMaxms, q.UpdateSamples, q.UpdatesTimedOut)
	}
	if len(r.Allocs) > 0 {
		a0 := r.Allocs[0]
		p("")
		p("Node allocations per message (child process, default node config; %d batches of %d after the warm-up; live heap after a full GC, after the warm-up and each batch):",
			a0.Batches, a0.Messages)
		p("")
		header("workload", "mode", "warm-up", "sent before", "allocs/msg per batch", "bytes/msg", "live heap KiB", "heap slope B/msg", "last 2 batches B/msg", "failed")
		for _, a := range r.Allocs {
			wl := a.Workload
			if wl == "" {
				wl = WorkloadSpread
			}
			row(wl, a.Mode, a.Warmup, a.Before, joinFloats(a.AllocsPerMsg), fmt.Sprintf("%.0f", a.BytesPerMsg), joinInts64(a.HeapKiB),
				fmt.Sprintf("%+.1f", a.HeapSlope), fmt.Sprintf("%+.1f", a.RetainedPerMsg), a.Failed)
		}
		p("")
		p("Duplicate windows: the switchboard remembers %d message ids, the MSP server %d UDP messages; "+
			"\"sent before\" counts what the node had been sent before the first measured batch.", recentIDWindow, udpDedupWindow)
	}
	for _, t := range r.Profiles {
		p("")
		n := max(len(t.Flat), len(t.Cum))
		name := "**" + t.Profile + "**"
		if t.Workload != "" {
			name += ", " + t.Workload + " " + t.Mode
		}
		where := ""
		if t.File != "" {
			where = "`" + t.File + "`, "
		}
		p("Node child profile %s (%sallocs scenario, %s; total %s): top %d functions by flat and by cumulative share.",
			name, where, t.Scope, fmtProfileValue(t.Total, t.Unit), n)
		p("")
		header("#", "flat %", "function (flat)", "cum %", "function (cumulative)")
		for i := range n {
			fp, ff, cp, cf := "", "", "", ""
			if i < len(t.Flat) {
				fp, ff = fmt.Sprintf("%.1f", t.Flat[i].Percent), "`"+t.Flat[i].Func+"`"
			}
			if i < len(t.Cum) {
				cp, cf = fmt.Sprintf("%.1f", t.Cum[i].Percent), "`"+t.Cum[i].Func+"`"
			}
			row(i+1, fp, ff, cp, cf)
		}
	}
	r.writeScaleTable(bw)
	p("")
	header("target", "want", "got", "status")
	for _, t := range r.Targets {
		row(t.Name, t.Want, t.Got, t.Status)
	}
	for _, e := range r.Errors {
		p("")
		p("ERROR: %s", e)
	}
	return bw.Flush()
}

func joinFloats(xs []float64) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = fmt.Sprintf("%.1f", x)
	}
	return strings.Join(s, ", ")
}

func joinInts64(xs []int64) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = fmt.Sprint(x)
	}
	return strings.Join(s, ", ")
}
