package presence

import (
	"context"
	"errors"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/msprelay/msprelay/internal/waitfor"
	"github.com/msprelay/msprelay/principal"
)

// Rule: a sign-in on one node is visible on every node; so are a state
// change and the sign-out.
func TestSignInStateChangeAndSignOutReachEveryNode(t *testing.T) {
	t.Parallel()
	nodes := startCluster(t, 5, nil)
	origin := nodes[2]
	if err := origin.Upsert(principal.Entry{User: "Alice", Term: "pts/3", State: principal.Online, Aliases: []string{"Al", "ally"}, Since: t0, LastActive: t1}); err != nil {
		t.Fatal(err)
	}
	want := entry("alice", "n2", "pts/3", principal.Online, "al", "ally")
	for _, n := range nodes {
		waitLookup(t, n, "alice", want)
		waitLookup(t, n, "AL", want) // by alias, case-insensitively
	}
	if err := origin.Upsert(principal.Entry{User: "alice", Term: "pts/3", State: principal.Busy, Aliases: []string{"al", "ally"}, Since: t0, LastActive: t1}); err != nil {
		t.Fatal(err)
	}
	want.State = principal.Busy
	for _, n := range nodes {
		waitLookup(t, n, "alice", want)
	}
	if !origin.Remove("alice", "pts/3") {
		t.Fatal("Remove(alice, pts/3) = false, want true")
	}
	for _, n := range nodes {
		waitLookup(t, n, "alice")
	}
}

// Rule: the session protocol's watch lists see remote changes as events, in
// the order they happened: online, state change, offline.
func TestSubscribeDeliversRemoteEventsInOrder(t *testing.T) {
	t.Parallel()
	nodes := startCluster(t, 2, nil)
	a, b := nodes[0], nodes[1]
	sub := b.Subscribe()
	defer sub.Cancel()

	on := entry("bob", "n0", "tty1", principal.Online)
	busy := entry("bob", "n0", "tty1", principal.Busy)
	off := busy
	off.State = principal.Offline
	steps := []struct {
		do   func() error
		want Event
	}{
		{func() error { return a.Upsert(on) }, Event{EventUpsert, on}},
		{func() error { return a.Upsert(busy) }, Event{EventUpsert, busy}},
		{func() error {
			if !a.Remove("bob", "tty1") {
				return errors.New("Remove(bob, tty1) = false")
			}
			return nil
		}, Event{EventRemove, off}},
	}
	for i, s := range steps {
		if err := s.do(); err != nil {
			t.Fatal(err)
		}
		select {
		case ev, ok := <-sub.C:
			if !ok {
				t.Fatalf("step %d: subscription ended: %v", i, sub.Err())
			}
			if ev.Type != s.want.Type || formatEntries([]principal.Entry{ev.Entry}) != formatEntries([]principal.Entry{s.want.Entry}) {
				t.Fatalf("step %d: event %v %s, want %v %s", i, ev.Type, formatEntries([]principal.Entry{ev.Entry}),
					s.want.Type, formatEntries([]principal.Entry{s.want.Entry}))
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("step %d: no event", i)
		}
	}
	select {
	case ev := <-sub.C:
		t.Fatalf("unexpected extra event %v %s", ev.Type, formatEntries([]principal.Entry{ev.Entry}))
	default:
	}
}

// Rule: a node that leaves gracefully takes its principals with it, on
// every node, with a Remove event for each.
func TestGracefulLeaveRemovesPrincipalsEverywhere(t *testing.T) {
	t.Parallel()
	nodes := startCluster(t, 4, nil)
	leaver := nodes[3]
	for _, term := range []string{"tty1", "tty2"} {
		if err := leaver.Upsert(entry("carol", "", term, principal.Online)); err != nil {
			t.Fatal(err)
		}
	}
	want := []principal.Entry{entry("carol", "n3", "tty1", principal.Online), entry("carol", "n3", "tty2", principal.Online)}
	for _, n := range nodes {
		waitLookup(t, n, "carol", want...)
	}
	sub := nodes[0].Subscribe()
	defer sub.Cancel()

	start := time.Now()
	if err := leaver.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	for _, n := range nodes[:3] {
		waitLookup(t, n, "carol")
	}
	t.Logf("graceful leave seen on all nodes after %v", time.Since(start))
	waitConverged(t, nodes[:3])
	for i, w := range want {
		select {
		case ev := <-sub.C:
			w.State = principal.Offline
			if ev.Type != EventRemove || formatEntries([]principal.Entry{ev.Entry}) != formatEntries([]principal.Entry{w}) {
				t.Fatalf("event %d: %v %s, want Remove %s", i, ev.Type, formatEntries([]principal.Entry{ev.Entry}), formatEntries([]principal.Entry{w}))
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("event %d: no Remove", i)
		}
	}
	if got := nodes[0].ByNode("n3"); len(got) != 0 {
		t.Fatalf("ByNode(n3) after leave = %s, want none", formatEntries(got))
	}
}

// Rule: a node that dies without leaving is declared dead by memberlist's
// probes, and its principals are removed everywhere.
func TestCrashedNodeIsRemoved(t *testing.T) {
	t.Parallel()
	nodes := startCluster(t, 4, nil)
	victim := nodes[1]
	if err := victim.Upsert(entry("dave", "", "console", principal.Away)); err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		waitLookup(t, n, "dave", entry("dave", "n1", "console", principal.Away))
	}
	start := time.Now()
	victim.crash(t)
	live := []testNode{nodes[0], nodes[2], nodes[3]}
	for _, n := range live {
		waitLookup(t, n, "dave")
	}
	t.Logf("crash detected and principals dropped on all nodes after %v", time.Since(start))
	waitConverged(t, live)
}

// Rule: joins exchange full state: a node that joins late sees every
// principal already present, and its own principals (signed in before it
// joined) reach every node.
func TestLateJoinerSeesEverything(t *testing.T) {
	t.Parallel()
	nodes := startCluster(t, 3, nil)
	for i, n := range nodes {
		if err := n.Upsert(entry("user"+strconv.Itoa(i), "", "tty", principal.Online)); err != nil {
			t.Fatal(err)
		}
	}
	late := newNode(t, "late", func(c *Config) { c.Gossip.Join = []string{nodes[1].GossipAddr()} })
	if err := late.Upsert(entry("zoe", "", "tty", principal.Idle)); err != nil {
		t.Fatal(err)
	}
	late.run(t)
	for i := range nodes {
		waitLookup(t, late, "user"+strconv.Itoa(i), entry("user"+strconv.Itoa(i), "n"+strconv.Itoa(i), "tty", principal.Online))
	}
	for _, n := range nodes {
		waitLookup(t, n, "zoe", entry("zoe", "late", "tty", principal.Idle))
	}
	waitConverged(t, append(nodes, late))
}

// Rule: a receiver that misses broadcasts detects the gap from the owner's
// metadata digest and pulls the owner's full table.
func TestMissedBroadcastsArePulled(t *testing.T) {
	t.Parallel()
	noAntiEntropy := func(c *Config) {
		c.Gossip.Tune = func(mc *memberlist.Config) {
			fastTune(mc)
			mc.PushPullInterval = 0 // only broadcasts, digests and pulls remain
		}
	}
	nodes := startCluster(t, 3, noAntiEntropy)
	deaf := nodes[2]
	deaf.g.dropChanges.Store(true)
	before := deaf.g.pullsSent.Load()
	for _, term := range []string{"a", "b", "c"} {
		if err := nodes[0].Upsert(entry("erin", "", term, principal.Online)); err != nil {
			t.Fatal(err)
		}
	}
	nodes[0].Remove("erin", "b")
	want := []principal.Entry{entry("erin", "n0", "a", principal.Online), entry("erin", "n0", "c", principal.Online)}
	waitLookup(t, nodes[1], "erin", want...)
	waitLookup(t, deaf, "erin", want...)
	if got := deaf.g.pullsSent.Load() - before; got < 1 {
		t.Fatalf("pulls sent by the deaf node = %d, want at least 1", got)
	}
}

// Rule: a second node with a name already in the cluster is refused: its
// Run fails with ErrNameConflict and the first node's table is untouched,
// whether it joins through another node or through the holder of the name.
func TestSameNameIsRefused(t *testing.T) {
	t.Parallel()
	for _, via := range []string{"another node", "the holder"} {
		t.Run(via, func(t *testing.T) {
			t.Parallel()
			nodes := startCluster(t, 2, nil)
			first := nodes[1]
			seed := nodes[0]
			if via == "the holder" {
				seed = first
			}
			if err := first.Upsert(entry("frank", "", "tty1", principal.Online)); err != nil {
				t.Fatal(err)
			}
			waitLookup(t, nodes[0], "frank", entry("frank", "n1", "tty1", principal.Online))

			dup := newNode(t, "n1", func(c *Config) { c.Gossip.Join = []string{seed.GossipAddr()} })
			if err := dup.Upsert(entry("mallory", "", "tty9", principal.Online)); err != nil {
				t.Fatal(err)
			}
			go func() { dup.runErr <- dup.Run(context.Background()) }()
			defer dup.Close()
			select {
			case err := <-dup.runErr:
				if !errors.Is(err, ErrNameConflict) {
					t.Fatalf("Run of the duplicate = %v, want ErrNameConflict", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("Run of the duplicate did not fail")
			}
			for _, n := range nodes {
				if got := n.Lookup("mallory"); len(got) != 0 {
					t.Errorf("%s: Lookup(mallory) = %s, want none", n.Name(), formatEntries(got))
				}
				waitLookup(t, n, "frank", entry("frank", "n1", "tty1", principal.Online))
				for _, m := range n.Members() {
					if m.Name == "n1" && m.Addr != first.GossipAddr() {
						t.Fatalf("%s lists n1 at %s, want the first node's %s", n.Name(), m.Addr, first.GossipAddr())
					}
				}
			}
			// The holder was not made to think its own name is contested.
			if _, err := first.Join(nodes[0].GossipAddr()); err != nil {
				t.Fatalf("holder re-joining: %v", err)
			}
			waitConverged(t, nodes)
		})
	}
}

// Rule: with a gossip key, nodes sharing the key converge, and a node with
// another key cannot join.
func TestEncryptedCluster(t *testing.T) {
	t.Parallel()
	key := []byte("0123456789abcdef")
	withKey := func(k []byte) func(*Config) { return func(c *Config) { c.Gossip.SecretKey = k } }
	nodes := startCluster(t, 2, withKey(key))
	if err := nodes[0].Upsert(entry("gina", "", "tty", principal.Online)); err != nil {
		t.Fatal(err)
	}
	waitLookup(t, nodes[1], "gina", entry("gina", "n0", "tty", principal.Online))

	stranger := startNode(t, "stranger", withKey([]byte("fedcba9876543210")))
	if n, err := stranger.Join(nodes[0].GossipAddr()); err == nil {
		t.Fatalf("Join with the wrong key contacted %d nodes, want an error", n)
	}
	plain := startNode(t, "plain", nil)
	if n, err := plain.Join(nodes[0].GossipAddr()); err == nil {
		t.Fatalf("Join without a key contacted %d nodes, want an error", n)
	}
	for _, n := range nodes {
		if got := memberNames(n.Members()); len(got) != 2 {
			t.Fatalf("%s members = %v, want [n0 n1]", n.Name(), got)
		}
	}
	if got := stranger.Lookup("gina"); len(got) != 0 {
		t.Fatalf("stranger sees %s", formatEntries(got))
	}
}

// Rule: seeds are re-joined periodically, so a seed that crashed and came
// back (with no seeds of its own) rejoins the cluster.
func TestSeedRestartHealsByRejoin(t *testing.T) {
	t.Parallel()
	seed := startNode(t, "seed", nil)
	addr := seed.GossipAddr()
	other := startNode(t, "other", func(c *Config) {
		c.Gossip.Join = []string{addr}
		c.Gossip.RejoinEvery = 300 * time.Millisecond
	})
	waitConverged(t, []testNode{seed, other})
	if err := other.Upsert(entry("hank", "", "tty", principal.Online)); err != nil {
		t.Fatal(err)
	}
	waitLookup(t, seed, "hank", entry("hank", "other", "tty", principal.Online))

	seed.crash(t)
	waitfor.True(t, 10*time.Second, "other declares the seed dead", func() bool {
		return len(other.Members()) == 1
	})
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	reborn := newNode(t, "seed", func(c *Config) { c.Gossip.BindAddr = net.JoinHostPort("127.0.0.1", port) })
	if err := reborn.Upsert(entry("ivy", "", "tty", principal.Online)); err != nil {
		t.Fatal(err)
	}
	reborn.run(t)
	waitLookup(t, other, "ivy", entry("ivy", "seed", "tty", principal.Online))
	waitLookup(t, reborn, "hank", entry("hank", "other", "tty", principal.Online))
}

// Rule: a table from a node that is no longer a live member is not brought
// back by a late broadcast or table relayed by a third node, and data from
// an earlier boot of a live node is ignored.
func TestNoResurrection(t *testing.T) {
	t.Parallel()
	nodes := startCluster(t, 3, nil)
	gone, witness := nodes[0], nodes[1]
	if err := gone.Upsert(entry("jack", "", "tty", principal.Online)); err != nil {
		t.Fatal(err)
	}
	waitLookup(t, witness, "jack", entry("jack", "n0", "tty", principal.Online))
	v, _, _ := gone.tableInfo("n0")
	vLive, _, _ := nodes[2].tableInfo("n2")

	ghost := entry("ghost", "n0", "tty", principal.Online)
	late := []struct {
		name string
		msg  []byte
	}{
		// Signed with the origins' own keys: only the version rules may
		// refuse these (see TestNoSpeakingForAnotherNode for forgeries).
		{"late change", seal(gone.g.key, encodeChange("n0", version{v.epoch, v.seq + 1}, change{Op: opUpsert, Entry: ghost}))},
		{"late table", seal(gone.g.key, encodeTable(wireTable{origin: "n0", ver: version{v.epoch, v.seq + 5}, entries: []principal.Entry{ghost}}))},
		{"new-epoch change", seal(gone.g.key, encodeChange("n0", version{v.epoch + 1, 1}, change{Op: opUpsert, Entry: ghost}))},
		{"earlier boot of a live node", seal(nodes[2].g.key, encodeChange("n2", version{vLive.epoch - 1, 1}, change{Op: opUpsert, Entry: entry("ghost", "n2", "tty", principal.Online)}))},
		{"earlier boot table", seal(nodes[2].g.key, encodeTable(wireTable{origin: "n2", ver: version{vLive.epoch - 1, 9}, entries: []principal.Entry{entry("ghost", "n2", "tty", principal.Online)}}))},
	}
	if err := gone.Close(); err != nil {
		t.Fatal(err)
	}
	waitLookup(t, witness, "jack")
	for _, l := range late {
		witness.g.NotifyMsg(l.msg)
		if got := witness.Lookup("ghost"); len(got) != 0 {
			t.Fatalf("%s: Lookup(ghost) = %s, want none", l.name, formatEntries(got))
		}
	}
	if got := witness.ByNode("n0"); len(got) != 0 {
		t.Fatalf("ByNode(n0) = %s, want none", formatEntries(got))
	}
}
