package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/msprelay/msprelay/broker"
	"github.com/msprelay/msprelay/node"
)

// nodeOpts are the few things that differ between the nodes a scenario
// starts; everything else is node.DefaultConfig on loopback.
type nodeOpts struct {
	name     string
	dataDir  string
	natsURLs []string // empty: embedded nats-server
	gossip   bool
	join     []string
	// maxSessions, when above zero, raises the session caps (per kind of
	// listener, signed in and pending) for the memory figures.
	maxSessions int
	// sessionSocket, when set, is the node's Unix session socket.
	sessionSocket string
}

// startNode starts a node on 127.0.0.1 with random ports, a trust-mode TCP
// session listener, no Unix socket and no logs. The caller closes it.
func startNode(ctx context.Context, o nodeOpts) (*node.Node, error) {
	cfg := node.DefaultConfig()
	cfg.Name = o.name
	cfg.Logger = slog.New(slog.DiscardHandler)
	cfg.MSPAddr = "127.0.0.1:0"
	cfg.SessionAddr = "127.0.0.1:0"
	cfg.SessionAuth = node.AuthTrust
	cfg.SessionSocket = ""
	cfg.SessionIdleTimeout = 15 * time.Minute // receivers are silent for a whole scenario
	cfg.DataDir = o.dataDir
	cfg.NATSURLs = o.natsURLs
	cfg.GossipProfile = "local"
	// The load comes from one address on purpose: the per-source limits
	// (docs/SECURITY.md) would measure themselves, not the node.
	cfg.MSPRatePerIP, cfg.MSPMaxConnsPerIP = -1, -1
	// Receivers take the load as fast as it comes; the per-session inbound
	// rate would turn the measurement into one of the mailbox.
	cfg.SessionInboundRate = -1
	if o.maxSessions > 0 {
		cfg.MaxSessions = o.maxSessions
		cfg.MaxPendingSessions = min(o.maxSessions, 4096)
	}
	if o.sessionSocket != "" {
		cfg.SessionSocket = o.sessionSocket
	}
	if o.gossip {
		cfg.GossipAddr = "127.0.0.1:0"
		cfg.Join = o.join
	}
	n, err := node.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("bench: node %s: %w", o.name, err)
	}
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := n.Start(sctx); err != nil {
		return nil, fmt.Errorf("bench: start node %s: %w", o.name, err)
	}
	return n, nil
}

// local compares one node with the minimal server in each load mode, once
// per workload. Each workload signs its own receivers in on the node (and
// out again afterwards); the minimal server delivers nothing.
func (h *harness) local(ctx context.Context) ([]*Comparison, error) {
	tmp, err := os.MkdirTemp("", "mspbench-local-")
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	defer os.RemoveAll(tmp)
	nd, err := startNode(ctx, nodeOpts{name: "n1", dataDir: tmp})
	if err != nil {
		return nil, err
	}
	defer nd.Close()
	floor, err := startMinimal()
	if err != nil {
		return nil, err
	}
	defer floor.Close()
	relay, err := startMinimalRelay()
	if err != nil {
		return nil, err
	}
	defer relay.Close()

	var out []*Comparison
	for _, wl := range h.cfg.Workloads {
		cs, err := h.localWorkload(ctx, nd, floor, relay, wl)
		out = append(out, cs...)
		if err != nil {
			return out, err
		}
	}
	return out, nil
}

// Arm names of the local comparisons' baselines.
const (
	armMinimal = "minimal"       // minimalServer over TCP: parse and reply
	armUDPLoop = "udp-loop"      // minimalServer over UDP
	armRelay   = "minimal-relay" // minimalRelay: the floor of the job
)

func (h *harness) localWorkload(ctx context.Context, nd *node.Node, floor *minimalServer, relay *minimalRelay, wl string) ([]*Comparison, error) {
	rcv, rterm, err := h.signInWorkload(ctx, nd.Addrs().Session, wl)
	if err != nil {
		return nil, err
	}
	defer rcv.close()
	users := rcv.users()
	to := fmt.Sprintf("%d recipients spread", len(users))
	switch wl {
	case WorkloadHot:
		to = "one hot recipient at terminal " + rterm
	case WorkloadClient:
		to = "one recipient at terminal " + rterm + ", an msp listen process"
	}

	var out []*Comparison
	for _, mode := range localModes() {
		title := map[string]string{
			ModeTCP1:    "TCP, one message per connection",
			ModeTCPSeq:  fmt.Sprintf("TCP, one connection per sender, one message at a time (%d conns)", h.cfg.Concurrency),
			ModeTCPPipe: fmt.Sprintf("TCP pipelined (%d conns x %d in flight)", h.cfg.Conns, h.newLoad(mode, "", nil, "").depth),
			ModeUDP:     "UDP, one datagram in flight per worker",
		}[mode]
		server := armSpec{name: armMinimal, role: "baseline", load: h.newLoad(mode, floor.tcpAddr(), users, rterm)}
		floorRelay := armSpec{name: armRelay, role: "baseline", load: h.newLoad(mode, relay.tcpAddr(), users, rterm)}
		if mode == ModeUDP {
			server = armSpec{name: armUDPLoop, role: "baseline", load: h.newLoad(mode, floor.udpAddr(), users, rterm)}
			floorRelay.load = h.newLoad(mode, relay.udpAddr(), users, rterm)
		}
		subj := armSpec{name: "node", role: "subject", load: h.newLoad(mode, nd.Addrs().MSP, users, rterm), rcv: rcv}
		c := h.compare(ctx, scenarioName("local", wl, mode), wl, "local delivery, "+title+", "+to, []armSpec{floorRelay, server, subj})
		// The first ratio is the one the targets judge: the node against
		// the floor of its job; the second keeps the reply-only baseline.
		c.Ratios = []Ratio{ratio(c.Arms[2], c.Arms[0]), ratio(c.Arms[2], c.Arms[1])}
		out = append(out, c)
		if err := ctx.Err(); err != nil {
			return out, err
		}
	}
	return out, nil
}

// crossSubject is the NATS subject of the raw request-reply baseline.
const crossSubject = "mspbench.echo"

// cross compares delivery through a relay with local delivery on the same
// two-node cluster, and with raw NATS request-reply through the same relay,
// once per configured load mode.
func (h *harness) cross(ctx context.Context) ([]*Comparison, error) {
	tmp, err := os.MkdirTemp("", "mspbench-cross-")
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	defer os.RemoveAll(tmp)
	relay, err := broker.New(broker.Config{Name: "relay", Listen: "127.0.0.1:0", JetStream: true,
		DataDir: filepath.Join(tmp, "relay")})
	if err != nil {
		return nil, fmt.Errorf("bench: relay: %w", err)
	}
	if err := relay.Start(); err != nil {
		return nil, fmt.Errorf("bench: relay: %w", err)
	}
	defer relay.Close()
	url := relay.ClientURL()
	n1, err := startNode(ctx, nodeOpts{name: "n1", dataDir: filepath.Join(tmp, "n1"), natsURLs: []string{url}, gossip: true})
	if err != nil {
		return nil, err
	}
	defer n1.Close()
	n2, err := startNode(ctx, nodeOpts{name: "n2", dataDir: filepath.Join(tmp, "n2"), natsURLs: []string{url},
		gossip: true, join: []string{n1.Addrs().Gossip}})
	if err != nil {
		return nil, err
	}
	defer n2.Close()
	req, err := nats.Connect(url, nats.Name("mspbench-requester"))
	if err != nil {
		return nil, fmt.Errorf("bench: nats: %w", err)
	}
	defer req.Close()
	resp, err := nats.Connect(url, nats.Name("mspbench-responder"))
	if err != nil {
		return nil, fmt.Errorf("bench: nats: %w", err)
	}
	defer resp.Close()
	plus := []byte("+\x00")
	if _, err := resp.Subscribe(crossSubject, func(m *nats.Msg) { _ = m.Respond(plus) }); err != nil {
		return nil, fmt.Errorf("bench: nats subscribe: %w", err)
	}
	if err := resp.Flush(); err != nil {
		return nil, fmt.Errorf("bench: nats flush: %w", err)
	}

	var out []*Comparison
	for _, wl := range h.cfg.Workloads {
		cs, err := h.crossWorkload(ctx, n1, n2, req, wl)
		out = append(out, cs...)
		if err != nil {
			return out, err
		}
	}
	return out, nil
}

// crossWorkload signs wl's receivers in on n2, waits until n1 sees them,
// and runs the cross-node comparison of each configured mode.
func (h *harness) crossWorkload(ctx context.Context, n1, n2 *node.Node, req *nats.Conn, wl string) ([]*Comparison, error) {
	rcv, rterm, err := h.signInWorkload(ctx, n2.Addrs().Session, wl)
	if err != nil {
		return nil, err
	}
	defer rcv.close()
	users := rcv.users()
	if err := waitFor(ctx, 20*time.Second, func() bool {
		for _, u := range users {
			es := n1.Directory().Lookup(u)
			if len(es) == 0 || es[0].Node != "n2" {
				return false
			}
		}
		return true
	}); err != nil {
		return nil, fmt.Errorf("bench: receivers on n2 not visible on n1: %w", err)
	}
	to := ""
	switch wl {
	case WorkloadHot:
		to = ", one hot recipient"
	case WorkloadClient:
		to = ", one recipient, an msp listen process"
	}
	var out []*Comparison
	for _, mode := range h.cfg.CrossModes {
		natsLoad := &load{mode: modeNATS, nc: req, subject: crossSubject, workers: h.cfg.Concurrency, depth: 1, recips: users, rterm: rterm}
		c := h.compare(ctx, scenarioName("cross", wl, mode), wl, "cross-node delivery through a NATS relay ("+mode+to+")", []armSpec{
			{name: "local", role: "baseline", load: h.newLoad(mode, n2.Addrs().MSP, users, rterm), rcv: rcv},
			{name: "cross", role: "subject", load: h.newLoad(mode, n1.Addrs().MSP, users, rterm), rcv: rcv},
			{name: "nats", role: "baseline", load: natsLoad},
		})
		c.Ratios = []Ratio{ratio(c.Arms[1], c.Arms[0]), ratio(c.Arms[1], c.Arms[2])}
		out = append(out, c)
		if err := ctx.Err(); err != nil {
			return out, err
		}
	}
	return out, nil
}

// ErrTimeout is returned when a bounded wait runs out.
var ErrTimeout = errors.New("bench: timed out")

// waitFor polls cond every 5 ms for at most timeout.
func waitFor(ctx context.Context, timeout time.Duration, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("%w after %v", ErrTimeout, timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
	return nil
}
