//go:build linux

package e2e

import (
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// Bounds of the topology tests.
const (
	// relayBound: routes and gateways between relays connect, and nodes
	// and the mailbox recover from the loss of a relay, well within it.
	relayBound = 15 * time.Second
	// drainBound: a user who signs in while a relay is down gets her
	// queued messages within it. Creating her mailbox consumer waits for
	// JetStream to settle; measured up to 10 s with one of three relays
	// dead, as the node retries the consumer every few seconds.
	drainBound = 30 * time.Second
)

// TestRelayClusterRoutes runs three relays in one cluster (full mesh of
// routes) with each node on a different relay: docs/ARCHITECTURE.md (Deployment), "cmd/relay runs
// a standalone NATS relay (routes inside a site ...)". A message entering
// at a node on one relay reaches a user on a node of another; and the
// cluster survives the loss of a relay (docs/ARCHITECTURE.md: "survive node and relay
// failures"): the node on it fails over, and the mailbox, replicated on
// all three, recovers.
func TestRelayClusterRoutes(t *testing.T) {
	t.Parallel()
	l := newLab(t, "d")
	hs := l.addHosts("r1", "r2", "r3", "n1", "n2", "n3")
	rhosts, nhosts := hs[:3], hs[3:]
	var routes []string
	for _, h := range rhosts {
		routes = append(routes, "nats-route://"+h.addr(portRoute))
	}
	relays := make([]*relay, len(rhosts))
	for i, h := range rhosts {
		relays[i] = l.startRelay(h, "--cluster", h.addr(portRoute),
			"--cluster-name", "site", "--routes", strings.Join(routes, ","))
	}
	d := l.waitRoutes(relays)
	t.Logf("three relays fully routed after %v", d.Round(time.Millisecond))

	seeds := gossipSeeds(nhosts...)
	nodes := make([]*node, len(nhosts))
	for i, h := range nhosts {
		// Three relays: the mailbox is replicated on all of them.
		nodes[i] = l.startNode(h, []string{relays[i].url()}, seeds, "--mailbox-replicas", "3")
	}
	n1, n2, n3 := nodes[0], nodes[1], nodes[2]
	alice := l.signIn(n3, "alice", "pts/1")
	erin := l.signIn(n2, "erin", "pts/2")
	for _, n := range nodes {
		l.waitWho(n, "", "alice@n3/pts/1/online", "erin@n2/pts/2/online")
	}
	l.mustSend(n1.host, n1, "delivered to alice at pts/1 on n3", "alice", "via r1 and r3")
	checkMessage(t, nextMessage(t, alice, "alice on n3"), "via r1 and r3", "carol", "n1", "tcp")
	l.mustSend(n3.host, n3, "delivered to erin at pts/2 on n2", "--udp", "erin", "via r3 and r2")
	checkMessage(t, nextMessage(t, erin, "erin on n2"), "via r3 and r2", "carol", "n3", "udp")

	// Losing a relay: n3 was given only r3's URL, but relays announce the
	// cluster's other client URLs, so n3 must fail over to r1 or r2 and
	// become reachable again. Sends meantime may get '-', never a lost '+'.
	t0 := time.Now()
	relays[2].proc.kill()
	last, attempts := l.sendUntil(n1, "alice", "after r3 died", t0,
		func(r cliResult) bool { return r.code == 0 },
		func(r cliResult) bool { return r.code == 1 })
	t.Logf("relay failover: n3 reachable again %v after kill -9 of its relay r3 (send attempt %d)",
		time.Since(t0).Round(time.Millisecond), attempts)
	checkMessage(t, nextMessage(t, alice, "alice on n3"), last, "carol", "n1", "tcp")

	// The mailbox, replicated on three relays, takes and hands out messages
	// again once JetStream has re-elected the leaders r3 may have held;
	// until then queueing is refused ('-'), never acknowledged falsely.
	ctx, cancel := context.WithTimeout(context.Background(), msgBound)
	defer cancel()
	if err := erin.SignOut(ctx); err != nil {
		t.Fatalf("erin signs out on n2: %v", err)
	}
	l.waitWho(n1, "erin")
	t1 := time.Now()
	last, attempts = l.sendUntil(n1, "erin", "kept by two of three relays", t0,
		func(r cliResult) bool { return r.code == 0 && strings.HasPrefix(r.stdout, "queued for erin") },
		func(r cliResult) bool { return r.code == 1 && strings.Contains(r.stderr, "mailbox unavailable") })
	t.Logf("mailbox (3 replicas) queues again %v after kill -9 of r3 (%v and %d attempts after erin signed out)",
		time.Since(t0).Round(time.Millisecond), time.Since(t1).Round(time.Millisecond), attempts)
	// Her new per-user consumer may wait for JetStream to settle as well.
	t2 := time.Now()
	erin = l.signIn(n3, "erin", "pts/5")
	checkMessage(t, nextMessageWithin(t, erin, "erin on n3", drainBound), last, "carol", "n1", "tcp")
	t.Logf("queued message handed to erin %v after her sign-in on n3", time.Since(t2).Round(time.Millisecond))
}

// sendUntil sends "prefix #1", "prefix #2", ... to recipient from inside
// to's host through its MSP port until accept takes the answer, and returns
// that message's text and the number of attempts. Every other answer must
// satisfy retry, and acceptance must come within relayBound of start, or
// the test fails.
func (l *lab) sendUntil(to *node, recipient, prefix string, start time.Time, accept, retry func(cliResult) bool) (string, int) {
	l.t.Helper()
	for i := 1; ; i++ {
		text := fmt.Sprintf("%s #%d", prefix, i)
		r := l.send(to.host, to, recipient, text)
		if accept(r) {
			return text, i
		}
		if !retry(r) || time.Since(start) > relayBound {
			l.t.Fatalf("send %q to %s via %s, %v after the failure: %v; not accepted within %v",
				text, recipient, to.name, time.Since(start).Round(time.Millisecond), r, relayBound)
		}
		time.Sleep(pollEvery) // pacing between attempts
	}
}

// waitRoutes waits until every relay has a route to each of the others.
func (l *lab) waitRoutes(relays []*relay) time.Duration {
	l.t.Helper()
	return waitFor(l.t, relayBound, "relay routes", func() error {
		for _, r := range relays {
			var rz struct {
				Routes []struct {
					RemoteName string `json:"remote_name"`
				} `json:"routes"`
			}
			if err := r.monitor("/routez", &rz); err != nil {
				return fmt.Errorf("%s: %w", r.name, err)
			}
			var got []string
			for _, rt := range rz.Routes {
				got = append(got, rt.RemoteName)
			}
			for _, o := range relays {
				if o != r && !slices.Contains(got, o.name) {
					return fmt.Errorf("%s: no route to %s yet (routes to %v)", r.name, o.name, got)
				}
			}
		}
		return nil
	})
}

// TestTwoSitesGateways joins two sites, each a relay with its nodes, by
// NATS gateways, and the nodes of both sites into one gossip cluster
// (--join names seeds in both): docs/ARCHITECTURE.md, "gateways between sites", and
// the user story "send a short note to a person wherever they are logged
// in". Presence and delivery work in both directions across the sites, and
// so does the mailbox.
func TestTwoSitesGateways(t *testing.T) {
	t.Parallel()
	l := newLab(t, "e")
	hs := l.addHosts("ra", "rb", "a1", "a2", "b1", "b2")
	ra, rb := hs[0], hs[1]
	gateways := fmt.Sprintf("east=nats://%s;west=nats://%s", ra.addr(portGateway), rb.addr(portGateway))
	// A site is a relay cluster, here of one relay: JetStream in a server
	// with gateways runs clustered, and nats-server then wants a cluster
	// block with routes (its own route URL suffices for a one-relay site).
	site := func(h *host, name string) *relay {
		return l.startRelay(h, "--cluster", h.addr(portRoute), "--cluster-name", name,
			"--routes", "nats-route://"+h.addr(portRoute),
			"--gateway", h.addr(portGateway), "--gateway-name", name, "--gateways", gateways)
	}
	east, west := site(ra, "east"), site(rb, "west")
	d := l.waitGateways(map[*relay]string{east: "west", west: "east"})
	t.Logf("gateways east<->west connected after %v", d.Round(time.Millisecond))

	// Gossip crosses sites, so it is encrypted (docs/ARCHITECTURE.md: "a gossip key
	// encrypts"). One seed per site is enough; nodes re-join seeds, so
	// either may come first.
	key := filepath.Join(l.logDir, "gossip.key")
	if err := os.WriteFile(key, []byte(base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	seeds := gossipSeeds(hs[2], hs[4])
	a1 := l.startNode(hs[2], []string{east.url()}, seeds, "--gossip-key", key)
	a2 := l.startNode(hs[3], []string{east.url()}, seeds, "--gossip-key", key)
	b1 := l.startNode(hs[4], []string{west.url()}, seeds, "--gossip-key", key)
	b2 := l.startNode(hs[5], []string{west.url()}, seeds, "--gossip-key", key)

	alice := l.signIn(b2, "alice", "pts/1")
	dave := l.signIn(a2, "dave", "pts/7")
	for _, n := range []*node{a1, a2, b1, b2} {
		l.waitWho(n, "", "alice@b2/pts/1/online", "dave@a2/pts/7/online")
	}
	l.mustSend(a1.host, a1, "delivered to alice at pts/1 on b2", "alice", "east to west")
	checkMessage(t, nextMessage(t, alice, "alice on b2"), "east to west", "carol", "a1", "tcp")
	l.mustSend(b1.host, b1, "delivered to dave at pts/7 on a2", "dave", "west to east")
	checkMessage(t, nextMessage(t, dave, "dave on a2"), "west to east", "carol", "b1", "tcp")
	l.mustSend(b2.host, b2, "delivered to dave at pts/7 on a2", "--udp", "dave@a2", "pinned across sites")
	checkMessage(t, nextMessage(t, dave, "dave on a2"), "pinned across sites", "carol", "b2", "udp")

	// The mailbox spans the sites too (docs/ARCHITECTURE.md, The mailbox): a message queued at east
	// for a signed-out user is handed to her when she signs in at west.
	ctx, cancel := context.WithTimeout(context.Background(), msgBound)
	defer cancel()
	if err := alice.SignOut(ctx); err != nil {
		t.Fatalf("alice signs out on b2: %v", err)
	}
	l.waitWho(a1, "alice")
	l.mustSend(a1.host, a1, "queued for alice", "alice", "while you were out")
	t0 := time.Now()
	alice = l.signIn(b1, "alice", "pts/3")
	checkMessage(t, nextMessageWithin(t, alice, "alice on b1", drainBound), "while you were out", "carol", "a1", "tcp")
	t.Logf("message queued at east delivered at west %v after alice's sign-in there", time.Since(t0).Round(time.Millisecond))
}

// waitGateways waits until each relay has an outbound and an inbound
// gateway connection to the site named for it.
func (l *lab) waitGateways(peer map[*relay]string) time.Duration {
	l.t.Helper()
	return waitFor(l.t, relayBound, "gateways", func() error {
		for r, site := range peer {
			var gz struct {
				Outbound map[string]any `json:"outbound_gateways"`
				Inbound  map[string]any `json:"inbound_gateways"`
			}
			if err := r.monitor("/gatewayz", &gz); err != nil {
				return fmt.Errorf("%s: %w", r.name, err)
			}
			if gz.Outbound[site] == nil || gz.Inbound[site] == nil {
				return fmt.Errorf("%s: gateways to %s not both up (outbound %v, inbound %v)",
					r.name, site, len(gz.Outbound), len(gz.Inbound))
			}
		}
		return nil
	})
}
