package bench

import (
	"context"
	"fmt"
	"time"

	"github.com/msprelay/msprelay/principal"
)

// PresenceResult is convergence and failure detection for one cluster size.
type PresenceResult struct {
	Nodes    int     `json:"nodes"`
	FormSecs float64 `json:"form_seconds"` // start until every node lists every member
	// Sign-in visible everywhere: from Upsert on one node until the last
	// node's directory delivered the event.
	SignIns     int     `json:"sign_ins"`
	SignInP50ms float64 `json:"sign_in_p50_ms"`
	SignInP99ms float64 `json:"sign_in_p99_ms"`
	SignInMaxms float64 `json:"sign_in_max_ms"`
	// LeaveMs: graceful leave (Directory.Close) until every other node
	// dropped the leaver's principal.
	LeaveMs float64 `json:"leave_ms"`
	// CrashMs: gossip sockets closed without a leave until every other
	// node dropped the crashed node's principal.
	CrashMs     float64 `json:"crash_ms"`
	CrashMethod string  `json:"crash_method"`
}

const crashMethod = "in-process: the node's memberlist transport (built by the harness via GossipConfig.Tune) " +
	"is shut down without a leave message; peers detect it by probing"

// presence times sign-in visibility, a graceful leave and a crash on an
// n-node in-process gossip cluster (profile "local").
func (h *harness) presence(ctx context.Context, n int) (*PresenceResult, error) {
	start := time.Now()
	c, err := startGossipCluster(ctx, n, fmt.Sprintf("p%d", n))
	if err != nil {
		return nil, err
	}
	clock := newEventClock()
	defer c.close()
	defer clock.unwatch()
	res := &PresenceResult{Nodes: n, FormSecs: round1(time.Since(start).Seconds()), SignIns: h.cfg.SignIns, CrashMethod: crashMethod}
	h.prog.printf("   %d nodes: cluster formed in %.1fs", n, res.FormSecs)
	for _, g := range c.nodes {
		clock.watch(g.dir)
	}
	nodes := c.nodes
	leaver, crasher := nodes[n-1], nodes[n-2]

	signIn := func(g *gossipNode, user string, on []*gossipNode) (time.Duration, error) {
		start := time.Now()
		if err := g.dir.Upsert(principal.Entry{User: user, Term: "tty1", State: principal.Online}); err != nil {
			return 0, fmt.Errorf("bench: sign in %s: %w", user, err)
		}
		return clock.await(ctx, "+"+user, on, start, 30*time.Second)
	}
	var lat []time.Duration
	for i := range h.cfg.SignIns {
		d, err := signIn(nodes[i%n], fmt.Sprintf("user%d", i), nodes)
		if err != nil {
			return nil, err
		}
		lat = append(lat, d)
	}
	l := summarize(lat)
	res.SignInP50ms, res.SignInP99ms, res.SignInMaxms = round1(l.P50us/1000), round1(l.P99us/1000), round1(l.MaxUs/1000)
	h.prog.printf("   %d nodes: sign-in visible everywhere p50 %.0fms p99 %.0fms (n=%d)", n, res.SignInP50ms, res.SignInP99ms, l.N)

	if _, err := signIn(leaver, "leaver", nodes); err != nil {
		return nil, err
	}
	start = time.Now()
	if err := leaver.dir.Close(); err != nil {
		return nil, fmt.Errorf("bench: leave: %w", err)
	}
	d, err := clock.await(ctx, "-leaver", nodes[:n-1], start, 60*time.Second)
	if err != nil {
		return nil, err
	}
	res.LeaveMs = ms(d)

	if _, err := signIn(crasher, "crasher", nodes[:n-1]); err != nil {
		return nil, err
	}
	start = time.Now()
	if err := crasher.crash(); err != nil {
		return nil, fmt.Errorf("bench: crash: %w", err)
	}
	d, err = clock.await(ctx, "-crasher", nodes[:n-2], start, 60*time.Second)
	if err != nil {
		return nil, err
	}
	res.CrashMs = ms(d)
	h.prog.printf("   %d nodes: leave seen everywhere after %.0fms, crash after %.0fms", n, res.LeaveMs, res.CrashMs)
	return res, nil
}

func round1(x float64) float64 { return float64(int64(x*10+0.5)) / 10 }
