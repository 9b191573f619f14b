package node_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/msprelay/msprelay/broker"
	"github.com/msprelay/msprelay/internal/testcluster"
	"github.com/msprelay/msprelay/msp"
	"github.com/msprelay/msprelay/node"
	"github.com/msprelay/msprelay/principal"
)

// A message sent to any node reaches the user's terminal on another node,
// over TCP and UDP, and the reply says where it went.
func TestCrossNodeDelivery(t *testing.T) {
	t.Parallel()
	c := testcluster.Start(t, 3, testcluster.Options{})
	alice := c.SignIn(1, "alice", "pts/1", principal.Online)
	c.WaitPresent("alice", "pts/1", c.Name(1), true)

	for _, network := range []string{"tcp", "udp"} {
		r, err := c.Send(0, network, &msp.Message{Version: msp.Version2, Recipient: "alice", Text: "hi via " + network, Sender: "bob", SenderTerm: "tty1"})
		if err != nil {
			t.Fatalf("%s send: %v", network, err)
		}
		if !r.OK || r.Text != "delivered to alice at pts/1 on n2" {
			t.Fatalf("%s reply = %+v, want +delivered to alice at pts/1 on n2", network, r)
		}
		m := testcluster.NextMessage(t, alice, 5*time.Second)
		if m.Text != "hi via "+network || m.Sender != "bob" || m.OriginNode != "n1" || m.Transport != network {
			t.Fatalf("%s: got %+v", network, m)
		}
	}
}

// `msp who` from any node lists every terminal with its node and state.
func TestWhoFromAnyNode(t *testing.T) {
	t.Parallel()
	c := testcluster.Start(t, 3, testcluster.Options{})
	c.SignIn(1, "alice", "pts/1", principal.Online)
	c.SignIn(2, "alice", "pts/7", principal.Away)
	c.WaitPresent("alice", "pts/1", "n2", true)
	c.WaitPresent("alice", "pts/7", "n3", true)
	who := c.SignIn(0, "carol", "tty1", principal.Online)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	es, err := who.Who(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]principal.State{}
	for _, e := range es {
		got[e.Node+"/"+e.Term] = e.State
	}
	if len(got) != 2 || got["n2/pts/1"] != principal.Online || got["n3/pts/7"] != principal.Away {
		t.Fatalf("who alice from n1 = %+v", es)
	}
}

// "alice@node pins a node" and "* reaches terminals on several nodes".
func TestPinnedAndStarAcrossNodes(t *testing.T) {
	t.Parallel()
	c := testcluster.Start(t, 3, testcluster.Options{})
	a2 := c.SignIn(1, "alice", "pts/1", principal.Online)
	a3 := c.SignIn(2, "alice", "pts/2", principal.Online)
	c.WaitPresent("alice", "pts/1", "n2", true)
	c.WaitPresent("alice", "pts/2", "n3", true)

	r, err := c.Send(0, "tcp", &msp.Message{Recipient: "alice@n3", Text: "pinned", Sender: "bob"})
	if err != nil || !r.OK || !strings.Contains(r.Text, "on n3") {
		t.Fatalf("pinned send: %+v %v", r, err)
	}
	if m := testcluster.NextMessage(t, a3, 5*time.Second); m.Text != "pinned" {
		t.Fatalf("n3 got %q", m.Text)
	}
	r, err = c.Send(0, "tcp", &msp.Message{Recipient: "alice", RecipTerm: "*", Text: "all", Sender: "bob"})
	if err != nil || !r.OK || !strings.Contains(r.Text, "2 of 2") {
		t.Fatalf("star send: %+v %v", r, err)
	}
	for _, cl := range []*struct {
		name string
		m    string
	}{{"n2", testcluster.NextMessage(t, a2, 5*time.Second).Text}, {"n3", testcluster.NextMessage(t, a3, 5*time.Second).Text}} {
		if cl.m != "all" {
			t.Fatalf("%s got %q", cl.name, cl.m)
		}
	}
	r, err = c.Send(0, "tcp", &msp.Message{Recipient: "alice@n1", Text: "x", Sender: "bob"})
	if err != nil || r.OK || r.Text != "alice@n1: not signed in" {
		t.Fatalf("pinned to a node where alice is not: %+v %v", r, err)
	}
}

// A node that leaves gracefully takes its principals with it; a message to
// a user whose only node is gone is queued for her, not claimed delivered.
func TestGracefulLeave(t *testing.T) {
	t.Parallel()
	c := testcluster.Start(t, 3, testcluster.Options{})
	c.SignIn(2, "bob", "tty1", principal.Online)
	c.WaitPresent("bob", "tty1", "n3", true)
	start := time.Now()
	c.Stop(2)
	testcluster.WaitFor(t, 10*time.Second, "bob gone from n1 and n2", func() bool {
		return len(c.Node(0).Directory().Lookup("bob")) == 0 && len(c.Node(1).Directory().Lookup("bob")) == 0
	})
	t.Logf("graceful leave propagated in %v", time.Since(start).Round(time.Millisecond))
	r, err := c.Send(0, "tcp", &msp.Message{Recipient: "bob", Text: "x", Sender: "alice"})
	if err != nil || !r.OK || !strings.HasPrefix(r.Text, "queued for bob") {
		t.Fatalf("send to departed user: %+v %v, want +queued for bob", r, err)
	}
}

// The right terminal is the most recently active one that works: when the
// node holding it cannot be reached over NATS (its relay link is down) while
// gossip still lists it, the next terminal gets the message and the reply
// says so.
func TestRightTerminalFallsBackWhenNodeUnreachable(t *testing.T) {
	t.Parallel()
	island := testcluster.StartBroker(t, broker.Config{Name: "island"})
	clock := testcluster.NewClock() // one clock for all three, stepped between sign-ins
	c := testcluster.Start(t, 3, testcluster.Options{Configure: func(i int, cfg *node.Config) {
		cfg.Now = clock.Now
		if i == 2 {
			cfg.NATSURLs = []string{island.ClientURL()} // gossips with the others, cannot reach them over NATS
		}
	}})
	a2 := c.SignIn(1, "alice", "pts/1", principal.Online)
	c.WaitPresent("alice", "pts/1", "n2", true)
	clock.Step(time.Second) // pts/2 signs in later: it is the most recently active
	c.SignIn(2, "alice", "pts/2", principal.Online)
	c.WaitPresent("alice", "pts/2", "n3", true)
	r, err := c.Send(0, "tcp", &msp.Message{Recipient: "alice", Text: "fallback", Sender: "bob"})
	if err != nil || !r.OK || r.Text != "delivered to alice at pts/1 on n2 (after pts/2@n3 node unreachable)" {
		t.Fatalf("reply %+v %v, want delivery at pts/1 on n2 after n3 failed", r, err)
	}
	if m := testcluster.NextMessage(t, a2, 5*time.Second); m.Text != "fallback" {
		t.Fatalf("n2 got %q", m.Text)
	}
	// Named terminal on the unreachable node: every target failed, so the
	// message waits in her mailbox and the reply says why.
	r, err = c.Send(0, "tcp", &msp.Message{Recipient: "alice", RecipTerm: "pts/2", Text: "x", Sender: "bob"})
	if err != nil || !r.OK || r.Text != "queued for alice (pts/2@n3 node unreachable)" {
		t.Fatalf("reply %+v %v", r, err)
	}
}
