package bench

import "fmt"

// floorPath names a load mode as issue 21's table does.
func (r *Report) floorPath(mode string) string {
	switch mode {
	case ModeTCP1:
		return "TCP, one message per connection"
	case ModeTCPSeq:
		return "TCP, one connection per sender, one at a time"
	case ModeTCPPipe:
		s := r.Settings
		if s.Conns > 0 {
			return fmt.Sprintf("TCP, %d connections, %d outstanding each", s.Conns, (s.Concurrency+s.Conns-1)/s.Conns)
		}
		return "TCP pipelined"
	case ModeUDP:
		return "UDP"
	}
	return mode
}

// kilo writes a rate as issue 21's table does: 13.7k/s.
func kilo(rate float64) string {
	if rate >= 1000 {
		return fmt.Sprintf("%.1fk/s", rate/1000)
	}
	return fmt.Sprintf("%.0f/s", rate)
}

// floorRows is the floor-of-the-job table, one row per local comparison
// that has the minimal relay and per cross-node comparison, workload by
// workload: the node, the minimal relay (the same job, nothing else) and
// their ratio, then the reply-only minimal server and the node's ratio to
// it; cross-node rows give the local rate instead of the relay's.
func (r *Report) floorRows() [][]any {
	var out [][]any
	for _, wl := range r.workloads() {
		for _, c := range r.Comparisons {
			kind, cwl, mode := splitScenario(c.Scenario)
			if cwl != wl {
				continue
			}
			switch kind {
			case "local":
				node, relay := c.arm("node"), c.arm(armRelay)
				toRelay := c.ratioTo(armRelay)
				if node == nil || relay == nil || toRelay == nil {
					continue
				}
				server, toServer := "", ""
				for _, name := range []string{armMinimal, armUDPLoop} {
					if a, q := c.arm(name), c.ratioTo(name); a != nil && q != nil {
						server, toServer = kilo(a.Rate), fmt.Sprintf("%.2fx", q.Rate)
					}
				}
				out = append(out, []any{wl, r.floorPath(mode), fmt.Sprintf("%s (p99 %.1f ms)", kilo(node.Rate), node.Reply.P99us/1000),
					kilo(relay.Rate), fmt.Sprintf("%.2fx", toRelay.Rate), server, toServer})
			case "cross":
				cross, local := c.arm("cross"), c.arm("local")
				q := c.ratioTo("local")
				if cross == nil || local == nil || q == nil {
					continue
				}
				out = append(out, []any{wl, "cross-node, " + r.floorPath(mode), fmt.Sprintf("%s (p99 %.1f ms)", kilo(cross.Rate), cross.Reply.P99us/1000),
					"(local " + kilo(local.Rate) + ")", fmt.Sprintf("%.2fx of local", q.Rate), "", ""})
			}
		}
	}
	return out
}
