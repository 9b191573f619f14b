package presence

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"

	"github.com/hashicorp/memberlist"
)

// This file is gossip's face to memberlist: the Delegate, EventDelegate,
// ConflictDelegate and MergeDelegate methods. Memberlist calls them from its
// own goroutines, the event methods while holding its node lock, so none of
// them may call back into memberlist.

// NodeMeta returns this node's digest and public key for its memberlist
// metadata.
func (g *gossip) NodeMeta(limit int) []byte {
	b := encodeMeta(g.d.localDigest(), g.key.Public().(ed25519.PublicKey))
	if len(b) > limit {
		return nil // cannot happen (53 < 512)
	}
	return b
}

// NotifyMsg handles a user message: a delta or a broadcast change (UDP), or a pull
// request or table (TCP, from SendReliable). It must not block: for UDP it
// runs on memberlist's packet loop.
//
// Changes and tables are applied only when signed by the node they
// describe (see sign.go); memberlist does not say who sent a message.
func (g *gossip) NotifyMsg(buf []byte) {
	m, err := openMessage(buf)
	if err != nil {
		g.log.Warn("dropping gossip message", "err", err, "len", len(buf))
		return
	}
	if (m.typ == msgChange || m.typ == msgDelta) && g.dropChanges.Load() {
		return
	}
	if m.sig != nil {
		g.mu.Lock()
		stale := m.typ == msgChange && g.staleChange(m.wireMsg) || m.typ == msgDelta && g.staleDelta(m.wireMsg)
		key := g.originKey(&m)
		g.mu.Unlock()
		if stale {
			return
		}
		if err := verify(&m, key); err != nil {
			g.log.Warn("dropping gossip message", "err", err, "type", m.typ)
			return
		}
	}
	// The state may have moved on meanwhile; the handlers check versions
	// and membership again under g.mu.
	g.mu.Lock()
	defer g.mu.Unlock()
	switch m.typ {
	case msgChange:
		g.handleChange(buf, m.wireMsg)
	case msgDelta:
		g.handleDelta(m.wireMsg)
	case msgPull:
		g.handlePull(m.from)
	case msgSuspect:
		g.handleSuspect(m.from, m.node)
	case msgTable, msgState:
		g.handleTable(m.tables[0])
	}
}

// GetBroadcasts hands memberlist queued changes to piggyback on its gossip.
func (g *gossip) GetBroadcasts(overhead, limit int) [][]byte {
	return g.q.GetBroadcasts(overhead, limit)
}

// LocalState is our side of a push-pull (a join, a re-join or memberlist's
// periodic anti-entropy): our own table, signed. Other nodes' tables are not
// ours to vouch for; a joining node pulls each from its owner.
func (g *gossip) LocalState(join bool) []byte {
	return seal(g.key, encodeState(g.d.snapshot(false)[:1]))
}

// MergeRemoteState applies the tables from a peer's LocalState. Memberlist
// has merged the peer's member list first, so new members are already known.
func (g *gossip) MergeRemoteState(buf []byte, join bool) {
	m, err := openMessage(buf)
	if err == nil && m.typ != msgState {
		err = fmt.Errorf("%w: push-pull message type %d", ErrMalformed, m.typ)
	}
	if err != nil {
		g.log.Warn("dropping push-pull state", "err", err, "len", len(buf))
		return
	}
	g.mu.Lock()
	key := g.originKey(&m)
	g.mu.Unlock()
	if err := verify(&m, key); err != nil {
		g.log.Warn("dropping push-pull state", "err", err)
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.handleTable(m.tables[0])
}

// NotifyJoin records a member that became alive, including this node.
func (g *gossip) NotifyJoin(n *memberlist.Node) { g.memberUp(n) }

// NotifyUpdate records a member's new metadata, which may reveal that we
// missed some of its changes.
func (g *gossip) NotifyUpdate(n *memberlist.Node) { g.memberUp(n) }

// NotifyLeave drops a member that left or was declared dead, and with it its
// principals: each gets a Remove event.
func (g *gossip) NotifyLeave(n *memberlist.Node) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if n.Name == g.self {
		return
	}
	delete(g.gone, n.Name) // dropped on a confirmation before: now final
	if _, ok := g.peers[n.Name]; ok {
		delete(g.peers, n.Name)
		g.numAlive.Add(-1)
	}
	delete(g.replyTo, n.Name)
	if g.confirm != nil {
		g.confirm.forget(n.Name) // a leaf lock: allowed under g.mu
	}
	g.log.Info("node gone, dropping its principals", "peer", n.Name, "addr", n.Address())
	g.d.dropRemoteTable(n.Name)
}

// NotifyConflict reports that memberlist ignored a node claiming a name
// that a live member at another address already holds.
func (g *gossip) NotifyConflict(existing, other *memberlist.Node) {
	g.log.Error("node name conflict: ignoring the second node", "peer", existing.Name,
		"holder", existing.Address(), "claimant", other.Address())
}

// NotifyMerge vets a join before memberlist merges the other side's member
// list: if any live node there has the name of a live node here at another
// address, the join is refused, so a second node started with an existing
// name neither joins nor touches the first node's table. When the name is
// our own and we are a newcomer joining (never joined before), that is
// recorded so that the join (and Run) fail with ErrNameConflict. A node
// already in a cluster just refuses: the name is the newcomer's problem. (A
// merge does not say which side started it; an established node may be
// joining and being joined at the same time.)
func (g *gossip) NotifyMerge(peers []*memberlist.Node) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, n := range peers {
		if n.State != memberlist.StateAlive && n.State != memberlist.StateSuspect {
			continue
		}
		p := g.peers[n.Name]
		if p == nil || sameAddr(&p.node, n) {
			continue
		}
		if n.Name == g.self && g.joining > 0 && !g.joined {
			g.selfConflict = n.Address()
			return fmt.Errorf("%w: %q is held by %s", ErrNameConflict, n.Name, n.Address())
		}
		g.log.Warn("refusing join: node name already in use", "peer", n.Name,
			"holder", p.node.Address(), "claimant", n.Address())
		return errors.New("presence: refusing join: node " + n.Name + " is already a member at " + p.node.Address())
	}
	return nil
}

func sameAddr(a, b *memberlist.Node) bool {
	return a.Port == b.Port && (a.Addr.Equal(b.Addr) || bytes.Equal(a.Addr, b.Addr))
}
