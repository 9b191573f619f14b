//go:build linux

package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

// threeHosts is the common cluster of the delivery and failure tests: a
// relay on its own host and nodes h1, h2, h3 on theirs, all on the relay,
// each joining the others' gossip.
type threeHosts struct {
	l          *lab
	relay      *relay
	h1, h2, h3 *node
}

// newThreeHosts starts the cluster; extra flags go to every node.
func newThreeHosts(t *testing.T, tag string, extra ...string) *threeHosts {
	t.Helper()
	l := newLab(t, tag)
	hs := l.addHosts("r1", "h1", "h2", "h3")
	c := &threeHosts{l: l, relay: l.startRelay(hs[0])}
	seeds := gossipSeeds(hs[1:]...)
	relays := []string{c.relay.url()}
	t0 := time.Now()
	c.h1 = l.startNode(hs[1], relays, seeds, extra...)
	c.h2 = l.startNode(hs[2], relays, seeds, extra...)
	c.h3 = l.startNode(hs[3], relays, seeds, extra...)
	t.Logf("relay and three nodes up in %v", time.Since(t0).Round(time.Millisecond))
	return c
}

// TestDeliveryAcrossHosts checks docs/ARCHITECTURE.md on three hosts: "alice means
// alice anywhere in the cluster; alice@hostb pins node hostb", "the node
// that receives an MSP message (ingress) resolves the recipient in the
// presence directory ... forwards to the target nodes over NATS ... and
// answers the client once", and RFC 1312's "*": all terminals of the user.
func TestDeliveryAcrossHosts(t *testing.T) {
	t.Parallel()
	c := newThreeHosts(t, "a")
	l := c.l

	alice := l.signIn(c.h2, "alice", "pts/1")
	d := l.waitWho(c.h1, "alice", "alice@h2/pts/1/online")
	l.waitWho(c.h3, "alice", "alice@h2/pts/1/online")
	t.Logf("alice's sign-in on h2 visible on h1 after %v", d.Round(time.Millisecond))

	t.Run("tcp ingress on another host delivers", func(t *testing.T) {
		l.mustSend(c.h1.host, c.h1, "delivered to alice at pts/1 on h2", "alice", "hello over tcp")
		checkMessage(t, nextMessage(t, alice, "alice on h2"), "hello over tcp", "carol", "h1", "tcp")
	})
	t.Run("udp ingress on another host delivers", func(t *testing.T) {
		l.mustSend(c.h1.host, c.h1, "delivered to alice at pts/1 on h2", "--udp", "alice", "hello over udp")
		checkMessage(t, nextMessage(t, alice, "alice on h2"), "hello over udp", "carol", "h1", "udp")
	})
	t.Run("absent user is refused", func(t *testing.T) {
		r := l.send(c.h1.host, c.h1, "nobody", "hello?")
		if r.code != 1 {
			t.Fatalf("send to an absent user: %v; want exit 1 ('-')", r)
		}
	})

	alice3 := l.signIn(c.h3, "alice", "pts/2")
	for _, n := range []*node{c.h1, c.h2, c.h3} {
		l.waitWho(n, "alice", "alice@h2/pts/1/online", "alice@h3/pts/2/online")
	}

	t.Run("user@node pins the node", func(t *testing.T) {
		l.mustSend(c.h1.host, c.h1, "delivered to alice at pts/1 on h2", "alice@h2", "for h2 only")
		l.mustSend(c.h1.host, c.h1, "delivered to alice at pts/2 on h3", "alice@h3", "for h3 only")
		// Each terminal's first message must be its own pinned one: had the
		// pin leaked, h3 would see "for h2 only" before "for h3 only".
		checkMessage(t, nextMessage(t, alice, "alice on h2"), "for h2 only", "carol", "h1", "tcp")
		checkMessage(t, nextMessage(t, alice3, "alice on h3"), "for h3 only", "carol", "h1", "tcp")
	})
	t.Run("star reaches every terminal", func(t *testing.T) {
		l.mustSend(c.h1.host, c.h1, "delivered to alice at 2 of 2 terminals", "--term", "*", "alice", "to all of alice")
		checkMessage(t, nextMessage(t, alice, "alice on h2"), "to all of alice", "carol", "h1", "tcp")
		checkMessage(t, nextMessage(t, alice3, "alice on h3"), "to all of alice", "carol", "h1", "tcp")
	})
	t.Run("ingress on the user's own host", func(t *testing.T) {
		r := l.send(c.h3.host, c.h3, "--term", "*", "alice", "from h3")
		if r.code != 0 || !strings.Contains(r.stdout, "2 of 2") {
			t.Fatalf("msp send via h3: %v; want exit 0 and 2 of 2 terminals", r)
		}
		checkMessage(t, nextMessage(t, alice, "alice on h2"), "from h3", "carol", "h3", "tcp")
		checkMessage(t, nextMessage(t, alice3, "alice on h3"), "from h3", "carol", "h3", "tcp")
	})
	// docs/ARCHITECTURE.md: "a dropped session ends its presence", and so does OUT.
	t.Run("dropped and signed-out sessions leave every directory", func(t *testing.T) {
		alice3.Close()
		d := l.waitWho(c.h1, "alice", "alice@h2/pts/1/online")
		t.Logf("dropped session on h3 gone from h1 after %v", d.Round(time.Millisecond))
		ctx, cancel := context.WithTimeout(context.Background(), msgBound)
		defer cancel()
		if err := alice.SignOut(ctx); err != nil {
			t.Fatalf("alice signs out on h2: %v", err)
		}
		d = l.waitWho(c.h1, "alice")
		t.Logf("signed-out session on h2 gone from h1 after %v", d.Round(time.Millisecond))
		l.waitWho(c.h3, "alice")
		// Like finger, who then says where she was last seen.
		waitFor(t, gossipBound, "alice last seen on h2", func() error {
			ctx, cancel := context.WithTimeout(context.Background(), cliTimeout)
			defer cancel()
			r := l.run(ctx, c.h1.host, binMSP, "who", "--session", c.h1.sessionAddr(), "alice")
			if !strings.Contains(r.stdout, "alice is not signed in; last seen on h2 at pts/1") {
				return fmt.Errorf("msp who alice: %v", r)
			}
			return nil
		})
	})
}
