// Package testcluster starts msprelay clusters inside one test process: a
// real nats-server (broker) on loopback and N real nodes that gossip over
// memberlist on 127.0.0.1 and federate through that server. Ports come from
// :0; every node logs through the test's log with its name as a prefix; t's
// cleanup stops everything. Tests that need separate processes and hosts use
// internal/e2e instead.
package testcluster

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/msprelay/msprelay/broker"
	"github.com/msprelay/msprelay/internal/waitfor"
	"github.com/msprelay/msprelay/msp"
	"github.com/msprelay/msprelay/node"
	"github.com/msprelay/msprelay/principal"
	"github.com/msprelay/msprelay/sessionclient"
	"github.com/msprelay/msprelay/sessionproto"
)

// Options shape a cluster. The zero value gives nodes named n1..nN with the
// local gossip profile, TCP sessions in trust mode and no session socket.
type Options struct {
	// Prefix names the nodes Prefix1..PrefixN; default "n".
	Prefix string
	// Configure, when set, adjusts each node's config before it starts.
	Configure func(i int, cfg *node.Config)
	// LogLevel is the level node logs reach the test log at; default Warn
	// (set MSPRELAY_TEST_LOG=debug|info to see more).
	LogLevel slog.Level
}

// Cluster is a running set of nodes. Its methods may be called from the test
// goroutine; Nodes is indexed from 0.
type Cluster struct {
	t      testing.TB
	opts   Options
	Broker *broker.Broker
	// NATSURL is the shared nats-server's client URL.
	NATSURL string
	log     *testLog

	// mu guards Nodes and cfgs.
	mu    sync.Mutex
	Nodes []*node.Node
	cfgs  []node.Config
}

// Start starts a nats-server and n nodes joined into one gossip cluster and
// waits until every node sees every other. Cleanup stops them all.
func Start(t testing.TB, n int, opts Options) *Cluster {
	t.Helper()
	if opts.Prefix == "" {
		opts.Prefix = "n"
	}
	if opts.LogLevel == 0 {
		opts.LogLevel = slog.LevelWarn
		if v := os.Getenv("MSPRELAY_TEST_LOG"); v != "" {
			_ = opts.LogLevel.UnmarshalText([]byte(v))
		}
	}
	c := &Cluster{t: t, opts: opts, log: newTestLog(t)}
	t.Cleanup(c.log.stop) // registered first, so it runs after the nodes are closed
	b := StartBroker(t, broker.Config{Name: opts.Prefix + "-relay", JetStream: true, DataDir: t.TempDir(), Logger: c.logger("relay")})
	c.Broker, c.NATSURL = b, b.ClientURL()
	for i := range n {
		c.startNode(i)
	}
	t.Cleanup(c.closeAll)
	c.WaitConverged()
	return c
}

func (c *Cluster) logger(name string) *slog.Logger {
	return slog.New(slog.NewTextHandler(c.log.writer(name), &slog.HandlerOptions{Level: c.opts.LogLevel}))
}

// Name is the name of node i.
func (c *Cluster) Name(i int) string { return fmt.Sprintf("%s%d", c.opts.Prefix, i+1) }

func (c *Cluster) startNode(i int) {
	c.t.Helper()
	c.mu.Lock()
	var cfg node.Config
	if i < len(c.cfgs) {
		cfg = c.cfgs[i] // restart with the same name, data and seeds
	} else {
		cfg = node.DefaultConfig()
		cfg.Name = c.Name(i)
		cfg.MSPAddr = "127.0.0.1:0"
		cfg.SessionAddr = "127.0.0.1:0"
		cfg.SessionAuth = node.AuthTrust
		cfg.SessionSocket = ""
		cfg.DataDir = c.t.TempDir()
		cfg.GossipAddr = "127.0.0.1:0"
		cfg.GossipProfile = "local"
		cfg.NATSURLs = []string{c.NATSURL}
		cfg.DeliverTimeout = 2 * time.Second
		// Every test client shares 127.0.0.1: the per-source MSP limits
		// would measure themselves, not the node. Their own tests (msp,
		// node) turn them back on.
		cfg.MSPRatePerIP, cfg.MSPMaxConnsPerIP = -1, -1
		cfg.Logger = c.logger(cfg.Name)
		cfg.Terminals = false // the host's own logins are not the test's
		if i > 0 {
			cfg.Join = []string{c.Nodes[0].Addrs().Gossip}
		}
		if c.opts.Configure != nil {
			c.opts.Configure(i, &cfg)
		}
		c.cfgs = append(c.cfgs, cfg)
	}
	c.mu.Unlock()
	nd, err := node.New(cfg)
	if err != nil {
		c.t.Fatalf("node %s: %v", cfg.Name, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := nd.Start(ctx); err != nil {
		c.t.Fatalf("start node %s: %v", cfg.Name, err)
	}
	c.mu.Lock()
	if i < len(c.Nodes) {
		c.Nodes[i] = nd
	} else {
		c.Nodes = append(c.Nodes, nd)
	}
	c.mu.Unlock()
}

// Node returns node i.
func (c *Cluster) Node(i int) *node.Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.Nodes[i]
}

// Stop shuts node i down gracefully: it leaves the gossip cluster.
func (c *Cluster) Stop(i int) {
	c.t.Helper()
	if err := c.Node(i).Close(); err != nil {
		c.t.Errorf("close %s: %v", c.Name(i), err)
	}
}

// Restart starts node i again with the same name, data directory and seeds.
// Its old ports are not reused; Addrs reports the new ones.
func (c *Cluster) Restart(i int) {
	c.t.Helper()
	c.startNode(i)
}

func (c *Cluster) closeAll() {
	c.mu.Lock()
	nodes := append([]*node.Node(nil), c.Nodes...)
	c.mu.Unlock()
	var wg sync.WaitGroup
	for _, nd := range nodes {
		wg.Go(func() { _ = nd.Close() })
	}
	wg.Wait()
}

// StartBroker starts a nats-server on a free loopback port (cfg.Listen is
// set to 127.0.0.1:0) and stops it at cleanup. A second broker that shares
// nothing with a cluster's is how tests cut a node off from NATS while it
// still gossips.
func StartBroker(t testing.TB, cfg broker.Config) *broker.Broker {
	t.Helper()
	cfg.Listen = "127.0.0.1:0"
	b, err := broker.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// WaitConverged waits until every running node's directory lists every
// running node.
func (c *Cluster) WaitConverged() {
	c.t.Helper()
	WaitFor(c.t, 20*time.Second, "gossip membership converged", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		for _, nd := range c.Nodes {
			if len(nd.Directory().Members()) != len(c.Nodes) {
				return false
			}
		}
		return true
	})
}

// MSPAddr is node i's MSP address (TCP and UDP).
func (c *Cluster) MSPAddr(i int) string { return c.Node(i).Addrs().MSP }

// Send sends m to node i over network ("tcp" or "udp") and returns the reply.
func (c *Cluster) Send(i int, network string, m *msp.Message) (msp.Reply, error) {
	cl := &msp.Client{Network: network, Timeout: 5 * time.Second, Backoff: 200 * time.Millisecond}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return cl.Send(ctx, c.MSPAddr(i), m)
}

// SignIn opens a session to node i and signs user in at term (trust mode).
// The session is closed at cleanup.
func (c *Cluster) SignIn(i int, user, term string, st principal.State) *sessionclient.Client {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cl, err := sessionclient.Dial(ctx, c.Node(i).Addrs().Session)
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { cl.Close() })
	if _, err := cl.SignIn(ctx, user, term, st); err != nil {
		c.t.Fatalf("sign in %s/%s on %s: %v", user, term, c.Name(i), err)
	}
	return cl
}

// WaitPresent waits until every running node's directory lists user at term
// on node owner (present true) or lists it nowhere (present false).
func (c *Cluster) WaitPresent(user, term, owner string, present bool) {
	c.t.Helper()
	what := fmt.Sprintf("%s/%s@%s present=%v on every node", user, term, owner, present)
	WaitFor(c.t, 20*time.Second, what, func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		for _, nd := range c.Nodes {
			found := false
			for _, e := range nd.Directory().Lookup(user) {
				if e.Node == owner && strings.EqualFold(e.Term, term) {
					found = true
				}
			}
			if found != present {
				return false
			}
		}
		return true
	})
}

// WaitFor polls cond until it holds or timeout passes, then fails the test
// naming what it waited for (waitfor.True, for tests that import this
// package anyway).
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	waitfor.True(t, timeout, what, cond)
}

// NextMessage waits for the next message pushed to cl, failing the test
// after timeout.
func NextMessage(t testing.TB, cl *sessionclient.Client, timeout time.Duration) *sessionproto.Message {
	t.Helper()
	select {
	case m, ok := <-cl.Messages():
		if !ok {
			t.Fatalf("session closed: %v", cl.Err())
		}
		return m
	case <-time.After(timeout):
		t.Fatalf("no message within %v", timeout)
	}
	return nil
}

// testLog routes node logs into the test log, each line prefixed with the
// node's name, and drops lines written after the test has finished (late
// goroutines of a crashed node must not fail the run).
type testLog struct {
	t testing.TB
	// mu guards done.
	mu   sync.Mutex
	done bool
}

func newTestLog(t testing.TB) *testLog { return &testLog{t: t} }

func (l *testLog) stop() {
	l.mu.Lock()
	l.done = true
	l.mu.Unlock()
}

type prefixWriter struct {
	l    *testLog
	name string
}

func (l *testLog) writer(name string) *prefixWriter { return &prefixWriter{l, name} }

func (w *prefixWriter) Write(p []byte) (int, error) {
	w.l.mu.Lock()
	defer w.l.mu.Unlock()
	if !w.l.done {
		w.l.t.Logf("[%s] %s", w.name, strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

// DataDir is node i's data directory.
func (c *Cluster) DataDir(i int) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return filepath.Clean(c.cfgs[i].DataDir)
}

// Clock is a clock a test steps by hand, for components that take a Now
// func (switchboard.Config.Now, presence.Config.Now): stepping it
// separates two timestamps without sleeping. It starts at the real time
// of NewClock; mu guards now.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// NewClock returns a Clock at the current time.
func NewClock() *Clock { return &Clock{now: time.Now()} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Step moves the clock d forward.
func (c *Clock) Step(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// NextConv waits for the next conversation event of type typ ("message",
// "join", "leave", "invite", "typing") pushed to cl, skipping others, and
// fails the test after timeout.
func NextConv(t testing.TB, cl *sessionclient.Client, typ string, timeout time.Duration) sessionproto.ConvEvent {
	t.Helper()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		select {
		case ev, ok := <-cl.Conversations():
			if !ok {
				t.Fatalf("session ended waiting for %s: %v", typ, cl.Err())
			}
			if ev.Type == typ {
				return ev
			}
		case <-timer.C:
			t.Fatalf("no %s within %v", typ, timeout)
			return sessionproto.ConvEvent{}
		}
	}
}
