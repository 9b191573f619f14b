package presence

import (
	"context"
	"errors"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// This file is the second failure signal (issue 22: "crash detection <= 3
// s, no false positive in a 10-minute loaded run"). Memberlist's LAN
// preset needs 5-20 s to declare a killed node dead; probing faster gave
// seven times the false deaths on a loaded machine (docs/BENCHMARKS.md).
// A process that died has also lost its NATS connection, so a request to
// its status subject finds no subscriber at once, while a node that is
// merely slow keeps its subscription (its request times out instead).
//
// Memberlist stays the source of truth: it alone declares a member dead,
// and a member it reports alive again (NotifyJoin, NotifyUpdate) is taken
// back. Before that, a node drops a member's principals early only on two
// observations of its own, one per signal:
//
//   - GossipConfig.Confirm says the member is gone (the node package: no
//     NATS subscriber on its status subject), and then
//   - the member does not answer a memberlist ping either.
//
// Neither alone drops anything: a node whose NATS connection is down or
// reconnecting still answers pings, and a stalled node that misses pings
// keeps its NATS subscription. Checks start from a sweep (each tick, the
// next member in turn, so that every member is checked by one node or
// another about every confirmTick) and from peers' notices: a node whose
// sweep dropped a member tells every other member (msgSuspect), and each
// of them checks for itself before dropping anything. A forged notice
// (any holder of the gossip key can send one, as it can send memberlist's
// own "suspect X") therefore costs each member one check and drops
// nothing while X answers either signal.
//
// Memberlist v0.7 offers no better trigger: it tells delegates nothing
// about suspicion, and the State of the nodes Members returns is never
// updated (the live state is in an unexported field). Its probes reach a
// given member about once per probe interval in all, so waiting for its
// suspicion would miss 3 s in about one crash in eight.
//
// A member dropped this way is checked again every confirmSpacing: if it
// answers on NATS or acknowledges a ping it is taken back and its table
// pulled at once. A NotifyLeave makes the drop final.

// errNeverAnswered is why "no subscriber" is not believed of a member
// that has never answered on NATS.
var errNeverAnswered = errors.New("presence: member never answered on NATS")

// forget drops what the checks remember of a member that left or was
// declared dead. It takes c.mu only.
func (c *confirmer) forget(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.answered, name)
	delete(c.pending, name)
}

// Bounds of the checks.
const (
	confirmTimeout  = 500 * time.Millisecond // one Confirm call
	confirmSpacing  = 500 * time.Millisecond // least time between two checks of one member
	confirmInFlight = 8                      // checks running at once (re-checks of dropped members at most half), at most one per member
	confirmTick     = 250 * time.Millisecond // how often the sweep checks the next member and queued checks start
)

// confirmer is the bookkeeping of the checks. It belongs to a gossip; its
// loop and check goroutines are counted in gossip.wg and end with
// gossip.quit (stop waits for them).
type confirmer struct {
	fn   func(ctx context.Context, node string) (bool, error)
	kick chan struct{} // a check was queued (buffered 1)

	// mu guards pending, answered, busy, healing, last and next. It is a leaf lock:
	// it may be taken while holding gossip.mu; nothing is taken while
	// holding it.
	mu      sync.Mutex
	pending map[string]struct{} // members to check on a peer's notice
	// answered holds the members that have answered a check on NATS:
	// only for them does "no subscriber" mean gone. A member that never
	// answered may not share our NATS (another cluster's server, a node
	// still starting before its status subscription), and its silence
	// there says nothing. Pruned by NotifyLeave (forget).
	answered map[string]struct{}
	busy     map[string]struct{}  // members with a check running
	healing  int                  // of those, re-checks of dropped members
	last     map[string]time.Time // when each member's latest check started
	next     int                  // the sweep's position in the sorted member names
}

func newConfirmer(fn func(ctx context.Context, node string) (bool, error)) *confirmer {
	return &confirmer{
		fn:       fn,
		kick:     make(chan struct{}, 1),
		pending:  map[string]struct{}{},
		answered: map[string]struct{}{},
		busy:     map[string]struct{}{},
		last:     map[string]time.Time{},
	}
}

// handleSuspect takes a peer's notice that node has no NATS subscriber and
// did not answer its ping; only a check of our own acts on it. Notices
// from or about nodes that are not live members here are ignored, so the
// pending set is bounded by the membership. g.mu must be held; it never
// blocks (memberlist's packet loop calls it).
func (g *gossip) handleSuspect(from, node string) {
	c := g.confirm
	if c == nil || from == g.self || node == g.self || g.peers[from] == nil || g.peers[node] == nil {
		return
	}
	c.mu.Lock()
	c.pending[node] = struct{}{}
	c.mu.Unlock()
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// confirmLoop starts due checks: the sweep, peers' notices and re-checks
// of members dropped on a confirmation.
func (g *gossip) confirmLoop(ml *memberlist.Memberlist) {
	defer g.wg.Done()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel() // ends the checks' Confirm calls; stop waits for them
	t := time.NewTicker(confirmTick)
	defer t.Stop()
	for {
		select {
		case <-g.quit:
			return
		case <-t.C:
			g.startChecks(ctx, ml, time.Now(), true)
		case <-g.confirm.kick:
			g.startChecks(ctx, ml, time.Now(), false)
		}
	}
}

// check is one check to run.
type check struct {
	name  string
	node  memberlist.Node // the member as last seen, for the ping (and, heal, its return)
	sweep bool            // started by the sweep: tell the peers if it drops the member
	heal  bool            // a re-check of a dropped member
}

// startChecks starts the checks that are due at now, within the bounds;
// sweep adds the sweep's next member.
func (g *gossip) startChecks(ctx context.Context, ml *memberlist.Memberlist, now time.Time, sweep bool) {
	g.mu.Lock()
	dropped := make([]memberlist.Node, 0, len(g.gone))
	for _, n := range g.gone {
		dropped = append(dropped, n)
	}
	live := make([]memberlist.Node, 0, len(g.peers))
	for name, p := range g.peers {
		if name != g.self {
			live = append(live, p.node)
		}
	}
	g.mu.Unlock()
	slices.SortFunc(live, func(a, b memberlist.Node) int { return strings.Compare(a.Name, b.Name) })
	c := g.confirm
	var run []check
	c.mu.Lock()
	due := func(name string) bool {
		if len(c.busy) >= confirmInFlight {
			return false
		}
		if _, ok := c.busy[name]; ok || now.Sub(c.last[name]) < confirmSpacing {
			return false
		}
		c.busy[name] = struct{}{}
		c.last[name] = now
		return true
	}
	for i := range live {
		if _, ok := c.pending[live[i].Name]; ok && due(live[i].Name) {
			delete(c.pending, live[i].Name)
			run = append(run, check{name: live[i].Name, node: live[i]})
		}
	}
	// What is left waits for the next tick, unless the member is gone.
	for name := range c.pending {
		if !slices.ContainsFunc(live, func(n memberlist.Node) bool { return n.Name == name }) {
			delete(c.pending, name)
		}
	}
	if sweep {
		// Re-checks of dropped members (each waits for a ping's timeout
		// while the member stays dead) take at most half the slots, so
		// that many crashes at once do not stall the sweep.
		for _, n := range dropped {
			if c.healing < confirmInFlight/2 && due(n.Name) {
				c.healing++
				run = append(run, check{name: n.Name, node: n, heal: true})
			}
		}
		// The next member in turn that is not being checked.
		for range live {
			c.next = (c.next + 1) % len(live)
			if n := live[c.next]; due(n.Name) {
				run = append(run, check{name: n.Name, node: n, sweep: true})
				break
			}
		}
	}
	for name, at := range c.last {
		if _, ok := c.busy[name]; !ok && now.Sub(at) > 4*confirmSpacing {
			delete(c.last, name) // keeps last as small as the recent checks
		}
	}
	c.mu.Unlock()
	for _, ck := range run {
		g.confirmChecks.Add(1)
		g.wg.Add(1)
		go g.runCheck(ctx, ml, ck)
	}
}

// runCheck asks Confirm about one member, and memberlist's ping if need
// be, and acts on the answers.
func (g *gossip) runCheck(ctx context.Context, ml *memberlist.Memberlist, ck check) {
	defer g.wg.Done()
	defer func() {
		g.confirm.mu.Lock()
		delete(g.confirm.busy, ck.name)
		if ck.heal {
			g.confirm.healing--
		}
		g.confirm.mu.Unlock()
	}()
	cctx, cancel := context.WithTimeout(ctx, confirmTimeout)
	gone, err := g.confirm.fn(cctx, ck.name)
	cancel()
	g.confirm.mu.Lock()
	_, seen := g.confirm.answered[ck.name]
	if err == nil && !gone {
		g.confirm.answered[ck.name] = struct{}{}
	}
	g.confirm.mu.Unlock()
	if err == nil && gone && !seen {
		gone, err = false, errNeverAnswered // don't know
	}
	if ctx.Err() != nil || !ck.heal && (err != nil || !gone) {
		return // answered, or don't know: nothing to do
	}
	answered := err == nil && !gone
	if !answered {
		_, perr := ml.Ping(ck.name, &net.UDPAddr{IP: ck.node.Addr, Port: int(ck.node.Port)})
		answered = perr == nil
	}
	switch {
	case ck.heal && answered:
		g.takeBack(ck.name)
		return
	case ck.heal:
		return
	case answered:
		g.log.Debug("member has no NATS subscriber but answers gossip pings", "peer", ck.name)
		return
	}
	if !g.dropConfirmed(ck.name) || !ck.sweep {
		return
	}
	msg := encodeSuspect(g.self, ck.name)
	g.mu.Lock()
	to := make([]memberlist.Node, 0, len(g.peers))
	for name, p := range g.peers {
		if name != g.self {
			to = append(to, p.node)
		}
	}
	g.mu.Unlock()
	for i := range to {
		if err := ml.SendBestEffort(&to[i], msg); err != nil {
			g.log.Debug("suspect notice failed", "peer", to[i].Name, "err", err)
		}
	}
}

// dropConfirmed drops a member confirmed gone as NotifyLeave would, but
// remembers it for re-checks until memberlist decides. It reports whether
// the member was live here.
func (g *gossip) dropConfirmed(name string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	p := g.peers[name]
	if p == nil || name == g.self {
		return false
	}
	delete(g.peers, name)
	g.numAlive.Add(-1)
	delete(g.replyTo, name)
	g.gone[name] = p.node
	g.log.Info("node gone (no NATS subscriber, no answer to a gossip ping), dropping its principals",
		"peer", name, "addr", p.node.Address())
	g.d.dropRemoteTable(name)
	return true
}

// takeBack re-adds a member dropped on a confirmation that has since
// answered, and pulls its table at once, unless memberlist has decided
// about it meanwhile.
func (g *gossip) takeBack(name string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	n, ok := g.gone[name]
	if !ok {
		return
	}
	g.log.Info("node answers again, taking back its principals", "peer", name, "addr", n.Address())
	g.memberUpLocked(&n)
	if p := g.peers[name]; p != nil && g.behind(name, p) {
		g.schedule(p, 0)
	}
}

// AnsweredOnNATS reports whether this node's crash checks have seen node
// answer on NATS, which they need before they believe its silence there
// (confirmer.answered). False without gossip or without a Confirm hook.
func (d *Directory) AnsweredOnNATS(node string) bool {
	if d.g == nil || d.g.confirm == nil {
		return false
	}
	c := d.g.confirm
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.answered[node]
	return ok
}
