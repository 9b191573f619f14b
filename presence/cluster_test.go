package presence

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/msprelay/msprelay/internal/waitfor"
	"github.com/msprelay/msprelay/principal"
)

// Helpers shared by the gossip tests: real memberlist instances on
// 127.0.0.1 with kernel-chosen ports, many per process.

// testLogger discards logs unless PRESENCE_TEST_LOG is set (then debug to
// stderr): memberlist goroutines may log after a test has finished, where
// t.Log would panic.
func testLogger() *slog.Logger {
	if os.Getenv("PRESENCE_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// fastTune shortens memberlist's timers so that failure detection and
// dead-node cleanup fit in a test, while leaving probes enough slack for a
// loaded two-core machine under -race.
func fastTune(c *memberlist.Config) {
	c.GossipInterval = 50 * time.Millisecond
	c.ProbeInterval = 400 * time.Millisecond
	c.ProbeTimeout = 200 * time.Millisecond
	c.SuspicionMult = 2
	c.GossipToTheDeadTime = time.Second
	c.TCPTimeout = 2 * time.Second
}

// waitFor polls cond every 10ms until it holds or timeout passes.

// testNode is a running Directory and the result of its Run.
type testNode struct {
	*Directory
	runErr chan error
}

// newNode builds a gossiping Directory named name; mod may adjust the config.
func newNode(t testing.TB, name string, mod func(*Config)) testNode {
	t.Helper()
	cfg := Config{
		Name:   name,
		Logger: testLogger(),
		Gossip: GossipConfig{BindAddr: "127.0.0.1:0", Profile: "local", Tune: fastTune},
	}
	if mod != nil {
		mod(&cfg)
	}
	d, err := New(cfg)
	if err != nil {
		t.Fatalf("New(%s): %v", name, err)
	}
	return testNode{Directory: d, runErr: make(chan error, 1)}
}

// run starts n (Start returns once its gossip socket is bound) and runs
// it. Close runs at cleanup and must make Run return.
func (n testNode) run(t testing.TB) testNode {
	t.Helper()
	if err := n.Start(t.Context()); err != nil {
		t.Fatalf("%s: Start: %v", n.Name(), err)
	}
	if n.GossipAddr() == "" {
		t.Fatalf("%s: no gossip address after Start", n.Name())
	}
	go func() { n.runErr <- n.Run(context.Background()) }()
	t.Cleanup(func() {
		n.Close()
		select {
		case <-n.runErr:
		case <-time.After(10 * time.Second):
			t.Errorf("%s: Run did not return after Close", n.Name())
		}
	})
	return n
}

// startNode builds and runs one node.
func startNode(t testing.TB, name string, mod func(*Config)) testNode {
	t.Helper()
	return newNode(t, name, mod).run(t)
}

// startCluster runs n nodes n0..n{n-1}; all but n0 use n0 as their seed.
// It returns once every node lists all n members.
func startCluster(t testing.TB, n int, mod func(*Config)) []testNode {
	t.Helper()
	nodes := []testNode{startNode(t, "n0", mod)}
	seed := nodes[0].GossipAddr()
	for i := 1; i < n; i++ {
		nodes = append(nodes, startNode(t, fmt.Sprintf("n%d", i), func(c *Config) {
			c.Gossip.Join = []string{seed}
			if mod != nil {
				mod(c)
			}
		}))
	}
	waitConverged(t, nodes)
	return nodes
}

// waitConverged waits until every node lists exactly the given nodes as members.
func waitConverged(t testing.TB, nodes []testNode) {
	t.Helper()
	var want []string
	for _, n := range nodes {
		want = append(want, n.Name())
	}
	slices.Sort(want)
	for _, n := range nodes {
		var got []string
		waitfor.True(t, 10*time.Second, n.Name()+" sees members "+strings.Join(want, ","), func() bool {
			got = memberNames(n.Members())
			if !slices.Equal(got, want) {
				t.Logf("%s members %v, memberlist counts %d", n.Name(), got, n.g.memberlist().NumMembers())
			}
			return slices.Equal(got, want)
		})
	}
}

func memberNames(ms []Member) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.Name)
	}
	return out
}

// formatEntries renders entries for comparison and failure messages; times
// compare by instant, not by monotonic reading or location.
func formatEntries(es []principal.Entry) string {
	var b strings.Builder
	for _, e := range es {
		fmt.Fprintf(&b, "{%s@%s %s %s %v since=%d active=%d %s}", e.User, e.Node, e.Term, e.State,
			e.Aliases, e.Since.UnixNano(), e.LastActive.UnixNano(), e.Kind)
	}
	return b.String()
}

// waitLookup waits until n's Lookup(name) renders exactly as want.
func waitLookup(t testing.TB, n testNode, name string, want ...principal.Entry) {
	t.Helper()
	w := formatEntries(want)
	waitfor.NoError(t, 10*time.Second, fmt.Sprintf("%s: Lookup(%q) = %s", n.Name(), name, w), func() error {
		if got := formatEntries(n.Lookup(name)); got != w {
			return fmt.Errorf("got %s", got)
		}
		return nil
	})
}

// crash stops n's gossip without leaving, as if the process died.
func (n testNode) crash(t testing.TB) {
	t.Helper()
	if err := n.g.stop(false); err != nil {
		t.Fatalf("crash %s: %v", n.Name(), err)
	}
}

var (
	t0 = time.Unix(1_700_000_000, 123_000_000)
	t1 = t0.Add(90 * time.Second)
)

// entry builds a stored-form entry for user at term on node.
func entry(user, node, term string, st principal.State, aliases ...string) principal.Entry {
	return principal.Entry{User: user, Node: node, Term: term, State: st, Aliases: aliases, Since: t0, LastActive: t1}
}
