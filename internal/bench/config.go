// Package bench is the msprelay benchmark harness behind cmd/mspbench.
//
// It measures a node against baselines in the same run, never against
// numbers from another day: every node figure is divided by the figure of
// the simplest thing that does the same job on the same machine at the same
// moment (a minimal RFC 1312 server that parses and answers "+", a bare UDP
// reply loop, raw NATS request-reply through the same relay), and the arms
// of each comparison alternate round by round (A B A B ...) so that a load
// spike from elsewhere hits both.
//
// Scenarios (see Scenarios):
//
//   - local: one node; TCP one message per connection, TCP pipelined, UDP;
//     receiving sessions timestamp each arrival, and the send time travels in
//     the message text, so delivery latency is measured end to end;
//   - cross: two nodes and a NATS relay on loopback, the receivers on node
//     2; sending to node 2 (local), to node 1 (cross-node, through the
//     relay) and raw NATS request-reply alternate;
//   - presence: in-process gossip clusters (10 and 30 nodes): sign-in
//     visibility, graceful leave, and a crash (gossip sockets closed, no
//     leave message);
//   - sessions: memory per idle session, in a child process;
//   - directory: 100k principals over 30 nodes with churn;
//   - allocs: allocations per message on the node's MSP hot path, in a
//     child process, with optional CPU, allocation, block and mutex
//     profiles of that child and their top functions (ProfileTop);
//   - scale: clusters of real node processes (cmd/node) on one NATS
//     server: sign-in visibility per cluster size and gossip profile,
//     churn of real signed-in sessions, crash detection (SIGKILL) and
//     false deaths read from the nodes' logs (scale*.go).
//
// The local, cross and allocs scenarios run once per workload (see
// Workloads): recipients spread over several sessions, and one hot
// session that every message names by its terminal.
//
// Every load loop is bounded by a message count and a duration; everything
// a scenario starts (servers, nodes, sessions, goroutines, child processes)
// is stopped before the scenario returns. All traffic stays on 127.0.0.1.
package bench

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

// Scenario names, in the order Run runs them.
const (
	ScenarioLocal     = "local"
	ScenarioCross     = "cross"
	ScenarioPresence  = "presence"
	ScenarioSessions  = "sessions"
	ScenarioDirectory = "directory"
	ScenarioAllocs    = "allocs"
	ScenarioScale     = "scale"
)

// Scenarios lists every scenario in run order.
func Scenarios() []string {
	return []string{ScenarioLocal, ScenarioCross, ScenarioPresence, ScenarioSessions, ScenarioDirectory, ScenarioAllocs, ScenarioScale}
}

// Load modes: how messages travel from the load generator.
const (
	ModeTCP1    = "tcp1"    // one message per TCP connection
	ModeTCPPipe = "tcppipe" // many messages per TCP connection, pipelined
	ModeTCPSeq  = "tcpseq"  // one TCP connection per sender, one message outstanding
	ModeUDP     = "udp"     // one datagram, wait for the reply
	modeNATS    = "nats"    // raw NATS request-reply (baseline only)
)

// Workloads: where the messages of a comparison go.
const (
	// WorkloadSpread sends each load worker's messages to one of
	// Config.Receivers sessions in turn, with empty RECIP-TERM ("the right
	// terminal" is the node's choice).
	WorkloadSpread = "spread"
	// WorkloadHot sends every message to one session, addressed with
	// RECIP-TERM set to that session's terminal: one busy user reading
	// with `msp listen`.
	WorkloadHot = "hot"
	// WorkloadClient is the hot workload with a real client on the other
	// end: the one recipient is an `msp listen` process, as users run it,
	// which acknowledges every message end to end (MSPS2), so the node
	// answers '+' only once that separate process has the message.
	WorkloadClient = "client"
)

// Workloads lists every workload in run order.
func Workloads() []string { return []string{WorkloadSpread, WorkloadHot, WorkloadClient} }

// localModes are the load modes of the local comparisons, in run order.
func localModes() []string { return []string{ModeTCP1, ModeTCPSeq, ModeTCPPipe, ModeUDP} }

// ErrConfig marks a Config that Run refuses.
var ErrConfig = errors.New("bench: bad config")

// Config selects scenarios and sizes them. DefaultConfig and QuickConfig
// fill it; the zero value is not usable.
type Config struct {
	// Scenarios to run; empty means all of Scenarios.
	Scenarios []string
	// Quick marks a smoke-test run (recorded in the report).
	Quick bool

	// Rounds is how many times each arm of a comparison runs; arms alternate.
	Rounds int
	// Duration bounds one arm's round.
	Duration time.Duration
	// Warmup is an unrecorded run of each arm before the first round.
	Warmup time.Duration
	// MaxMessages bounds one arm's round by count as well.
	MaxMessages int64
	// Concurrency is the number of messages in flight: TCP-per-message and
	// UDP workers, and the total pipeline window over Conns connections.
	Concurrency int
	// Conns is the number of connections pipelined mode spreads over.
	Conns int
	// Receivers is the number of receiving sessions (recipients).
	Receivers int
	// Workloads are the workloads of the local, cross and allocs
	// scenarios; empty means all of Workloads.
	Workloads []string
	// MSPBinary is the msp command the client workload runs as its
	// receiver (`msp listen`); empty means build ./cmd/msp into a
	// temporary directory once per run (needs the go command).
	MSPBinary string
	// CrossModes are the load modes of the cross-node comparison, each a
	// comparison of its own on the same cluster.
	CrossModes []string

	// PresenceNodes are the cluster sizes of the presence scenario.
	PresenceNodes []int
	// SignIns is the number of sign-ins timed per cluster size.
	SignIns int

	// Sessions is the number of idle sessions opened for the memory figure.
	Sessions int
	// UsersHeapProfile, when set, is where the sessions scenario writes the
	// heap profile (inuse_space) of the whole-node child with Sessions
	// distinct users signed in: what each of them costs, by allocation site.
	UsersHeapProfile string
	// ManySessions is how many sessions the sessions scenario signs in to
	// one node at once, for its sign-in rate, memory, delivery latency and
	// shutdown time (capped by the open-file limit); zero means 100,000,
	// negative skips it.
	ManySessions int

	// DirectoryNodes and DirectoryPrincipals size the directory scenario.
	DirectoryNodes, DirectoryPrincipals int
	// ChurnFor bounds the churn phase; ChurnRate is sign-outs/ins per second.
	ChurnFor  time.Duration
	ChurnRate int

	// AllocModes are the load modes of the allocs scenario, in run order;
	// empty means tcppipe, tcpseq, tcp1, udp. One mode alone gives profiles of
	// one path.
	AllocModes []string
	// AllocMessages is the size of each of the allocs scenario's measured
	// batches; AllocWarmup messages go first.
	AllocMessages, AllocWarmup int

	// NodeCPUProfile, when set, is where the allocs scenario's child
	// process (the node alone) writes a CPU profile of its whole life.
	NodeCPUProfile string
	// NodeMemProfile, NodeBlockProfile and NodeMutexProfile, when set, are
	// where that child writes its allocation (alloc_space, alloc_objects),
	// blocking and mutex contention profiles when it stops.
	NodeMemProfile, NodeBlockProfile, NodeMutexProfile string
	// ProfileTop, when above zero, parses the child's CPU and allocation
	// profiles after the run (in temporary files if the paths above are
	// empty) and reports the top ProfileTop functions of each, by flat and
	// by cumulative share.
	ProfileTop int

	// ScaleNodes are the cluster sizes of the scale scenario, each run
	// with every one of ScaleProfiles (gossip profiles).
	ScaleNodes    []int
	ScaleProfiles []string
	// ScaleSignIns is the number of sign-ins timed per cluster.
	ScaleSignIns int
	// ScaleLoadNodes is the cluster size that also gets ScalePrincipals
	// signed-in sessions and the churn phases (0: none does).
	ScaleLoadNodes  int
	ScalePrincipals int
	// ScaleChurnRates are the churn phases' sign-outs/ins per second, each
	// for ScaleChurnFor.
	ScaleChurnRates []int
	ScaleChurnFor   time.Duration
	// ScaleLoadFor bounds the signing in of ScalePrincipals: what is not
	// in by then is recorded as an error and the later phases run with
	// the principals that are.
	ScaleLoadFor time.Duration
	// ScaleSoak, when above zero, is a phase on the loaded cluster after
	// the churn phases: the holders churn at ScaleSoakRate per second for
	// that long while the false deaths go on being counted.
	ScaleSoak     time.Duration
	ScaleSoakRate int
	// ScaleCrashes is how many nodes (never s1, which runs the NATS
	// server) each cluster's last phase kills with SIGKILL, one at a
	// time, timing until every other node's watcher is told that a user
	// of the killed node is offline (0: no crash phase).
	ScaleCrashes int
	// ScaleNodeBinary is a built cmd/node; empty builds one with go build.
	ScaleNodeBinary string

	// Progress receives progress lines (normally stderr); nil discards them.
	Progress io.Writer
	// Live redraws one progress line in place (Progress is a terminal).
	Live bool
	// Command is the command line recorded in the report.
	Command string
}

// DefaultConfig is the full run: a few minutes on a two-core machine.
func DefaultConfig() Config {
	return Config{
		Rounds:              3,
		Duration:            2 * time.Second,
		Warmup:              500 * time.Millisecond,
		MaxMessages:         2_000_000,
		Concurrency:         16,
		Conns:               4,
		Receivers:           4,
		CrossModes:          []string{ModeTCPPipe, ModeTCP1},
		PresenceNodes:       []int{10, 30},
		SignIns:             20,
		Sessions:            10_000,
		ManySessions:        100_000,
		DirectoryNodes:      30,
		DirectoryPrincipals: 100_000,
		ChurnFor:            10 * time.Second,
		ChurnRate:           200,
		AllocMessages:       30_000,
		// Steady state needs the node's bounded caches full and their
		// maps settled; see warmupFactor for the per-mode multiples.
		AllocWarmup:     80_000,
		ScaleNodes:      []int{30},
		ScaleProfiles:   []string{"lan", "local"},
		ScaleSignIns:    20,
		ScaleLoadNodes:  30,
		ScalePrincipals: 100_000,
		ScaleChurnRates: []int{200, 1000},
		ScaleChurnFor:   10 * time.Second,
		ScaleLoadFor:    20 * time.Minute,
		ScaleSoakRate:   50,
		ScaleCrashes:    3,
	}
}

// QuickConfig is a smoke test that finishes in well under a minute; its
// figures are too short to quote.
func QuickConfig() Config {
	c := DefaultConfig()
	c.Quick = true
	c.Rounds = 1
	c.Duration = 300 * time.Millisecond
	c.Warmup = 100 * time.Millisecond
	c.MaxMessages = 100_000
	c.PresenceNodes = []int{10}
	c.SignIns = 5
	c.Sessions = 1000
	c.ManySessions = 300
	c.DirectoryNodes = 10
	c.DirectoryPrincipals = 10_000
	c.ChurnFor = 2 * time.Second
	c.AllocMessages = 2000
	c.AllocWarmup = 2000
	c.ScaleNodes = []int{3}
	c.ScaleProfiles = []string{"local"}
	c.ScaleSignIns = 3
	c.ScaleLoadNodes = 3
	c.ScalePrincipals = 300
	c.ScaleChurnRates = []int{50}
	c.ScaleChurnFor = time.Second
	c.ScaleLoadFor = 2 * time.Minute
	c.ScaleCrashes = 1
	return c
}

func (c *Config) validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrConfig, fmt.Sprintf(format, a...))
	}
	if len(c.Scenarios) == 0 {
		c.Scenarios = Scenarios()
	}
	for _, s := range c.Scenarios {
		if !slices.Contains(Scenarios(), s) {
			return bad("unknown scenario %q (want %s)", s, strings.Join(Scenarios(), ", "))
		}
	}
	if c.ManySessions == 0 {
		c.ManySessions = DefaultConfig().ManySessions
	}
	switch {
	case c.Rounds < 1:
		return bad("rounds %d: want at least 1", c.Rounds)
	case c.Duration <= 0:
		return bad("duration %v: want > 0", c.Duration)
	case c.Warmup < 0:
		return bad("warmup %v: want >= 0", c.Warmup)
	case c.MaxMessages < 1 || c.MaxMessages > 1_000_000_000:
		// The bound also keeps cookies (round.term.seq) within 32 octets.
		return bad("max messages %d: want 1..1e9", c.MaxMessages)
	case c.Concurrency < 1 || c.Concurrency > 4096:
		return bad("concurrency %d: want 1..4096", c.Concurrency)
	case c.Conns < 1 || c.Conns > c.Concurrency:
		return bad("conns %d: want 1..concurrency (%d)", c.Conns, c.Concurrency)
	case c.Receivers < 1 || c.Receivers > 256:
		return bad("receivers %d: want 1..256", c.Receivers)
	case c.SignIns < 1:
		return bad("sign-ins %d: want at least 1", c.SignIns)
	case c.ManySessions > 1_000_000:
		return bad("many sessions %d: want at most 1000000 (negative: skip)", c.ManySessions)
	case c.Sessions < 1 || c.Sessions > 50_000:
		return bad("sessions %d: want 1..50000", c.Sessions)
	case c.DirectoryNodes < 2 || c.DirectoryPrincipals < c.DirectoryNodes:
		return bad("directory %d principals over %d nodes: want >= 2 nodes and a principal per node", c.DirectoryPrincipals, c.DirectoryNodes)
	case c.ChurnFor < 0 || c.ChurnRate < 1:
		return bad("churn %v at %d/s: want a duration >= 0 and a rate >= 1", c.ChurnFor, c.ChurnRate)
	case c.AllocMessages < 1 || c.AllocWarmup < 0:
		return bad("alloc messages %d, warmup %d: want >= 1 and >= 0", c.AllocMessages, c.AllocWarmup)
	}
	if len(c.Workloads) == 0 {
		c.Workloads = Workloads()
	}
	for _, w := range c.Workloads {
		if !slices.Contains(Workloads(), w) {
			return bad("unknown workload %q (want %s)", w, strings.Join(Workloads(), ", "))
		}
	}
	if c.ProfileTop < 0 || c.ProfileTop > 1000 {
		return bad("profile top %d: want 0..1000", c.ProfileTop)
	}
	if len(c.AllocModes) == 0 {
		c.AllocModes = []string{ModeTCPPipe, ModeTCPSeq, ModeTCP1, ModeUDP}
	}
	for _, m := range c.AllocModes {
		switch m {
		case ModeTCP1, ModeTCPSeq, ModeTCPPipe, ModeUDP:
		default:
			return bad("alloc mode %q: want %s, %s, %s or %s", m, ModeTCP1, ModeTCPSeq, ModeTCPPipe, ModeUDP)
		}
	}
	for _, m := range c.CrossModes {
		switch m {
		case ModeTCP1, ModeTCPSeq, ModeTCPPipe, ModeUDP:
		default:
			return bad("cross mode %q: want %s, %s, %s or %s", m, ModeTCP1, ModeTCPSeq, ModeTCPPipe, ModeUDP)
		}
	}
	for _, n := range c.PresenceNodes {
		if n < 3 || n > 200 {
			return bad("presence cluster size %d: want 3..200", n)
		}
	}
	if err := c.validateScale(); err != nil {
		return err
	}
	if c.Progress == nil {
		c.Progress = io.Discard
	}
	return nil
}

func (c *Config) wants(s string) bool { return slices.Contains(c.Scenarios, s) }
