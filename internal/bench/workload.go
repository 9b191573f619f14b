package bench

import (
	"context"
	"strings"
)

// hotTerm is the terminal the hot and client workloads' one receiver signs
// in at and every message of theirs names in RECIP-TERM (right-terminal
// addressing).
const hotTerm = "t1"

// scenarioName names a comparison: the spread workload keeps the plain
// names ("local/tcp1"), the others add theirs to the kind
// ("local-hot/tcp1"), so names from earlier reports stay valid.
func scenarioName(kind, workload, mode string) string {
	if workload != "" && workload != WorkloadSpread {
		kind += "-" + workload
	}
	return kind + "/" + mode
}

// splitScenario undoes scenarioName: "cross-hot/tcppipe" is cross, hot,
// tcppipe; "local/udp" is local, spread, udp.
func splitScenario(s string) (kind, workload, mode string) {
	kind, mode, _ = strings.Cut(s, "/")
	kind, workload, found := strings.Cut(kind, "-")
	if !found {
		workload = WorkloadSpread
	}
	return kind, workload, mode
}

// workloadOf is c's workload; reports written before the field existed
// have it only in the scenario name.
func (c *Comparison) workloadOf() string {
	if c.Workload != "" {
		return c.Workload
	}
	_, w, _ := splitScenario(c.Scenario)
	return w
}

// signInWorkload signs in the receivers of workload at the session
// listener addr and returns them with the terminal messages name in
// RECIP-TERM ("" for the node's choice). The caller closes them.
func (h *harness) signInWorkload(ctx context.Context, addr, workload string) (*receivers, string, error) {
	switch workload {
	case WorkloadHot:
		rcv, err := signInReceivers(ctx, addr, 1, "hot", hotTerm, h.clock)
		return rcv, hotTerm, err
	case WorkloadClient:
		bin, err := h.mspBinary(ctx)
		if err != nil {
			return nil, "", err
		}
		rcv, err := signInListeners(ctx, bin, addr, 1, "client", hotTerm, h.clock)
		return rcv, hotTerm, err
	}
	rcv, err := signInReceivers(ctx, addr, h.cfg.Receivers, "bench", hotTerm, h.clock)
	return rcv, "", err
}
