package presence

import (
	"bytes"
	"crypto/ed25519"
	"fmt"
	"slices"
	"time"

	"github.com/hashicorp/memberlist"
)

// This file keeps remote tables in step with their owners.
//
// Every node numbers the changes to its own table (epoch = boot, seq =
// counter) and sends them to every member as deltas (delta.go). Nodes of
// earlier versions broadcast each change instead; those are still applied
// and relayed as follows. Memberlist does not relay user
// broadcasts, so a receiver re-queues every change the first time it sees
// it; (origin, epoch, seq) de-duplicates. Changes are applied in seq order:
// early arrivals wait in a small per-origin buffer. Anything missed — a gap
// that does not fill within the grace period, a change too big to broadcast,
// a digest in the owner's metadata newer than what we hold — is repaired by
// pulling the owner's whole table over memberlist's reliable (TCP) channel.
//
// Data about a node is accepted only while memberlist reports that node
// alive and only for its current boot (the epoch in its digest) or a later
// one, so a late broadcast relayed by a third node cannot bring back a node
// that left or died, nor an earlier boot of one that restarted.

// peer is what gossip knows about one live member besides its table.
type peer struct {
	node      memberlist.Node   // latest copy from memberlist
	digest    digest            // from node.Meta
	key       ed25519.PublicKey // from node.Meta: verifies its changes and tables (sign.go)
	want      version           // newest version of its table known to exist
	pendEpoch uint64            // epoch of the changes in pending
	pending   map[uint64]change // changes that arrived before their predecessors, by seq
	pullAt    time.Time         // when to check whether to pull; zero if not scheduled

	deltaEpoch uint64         // epoch of the deltas in deltas
	deltas     []pendingDelta // deltas that arrived before the one they follow (delta.go)
}

// memberUp records a joined or updated member. g.mu must not be held.
func (g *gossip) memberUp(n *memberlist.Node) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.memberUpLocked(n)
}

// memberUpLocked does the work of memberUp; g.mu must be held. Memberlist
// reporting the member alive also ends a drop on a confirmation
// (confirm.go).
func (g *gossip) memberUpLocked(n *memberlist.Node) {
	delete(g.gone, n.Name)
	p := g.peers[n.Name]
	if p == nil {
		p = &peer{}
		g.peers[n.Name] = p
		g.numAlive.Add(1)
		// A new member gets our table now rather than when our digest
		// reaches it: our deltas from here on include it, and the changes
		// before were sent to the members of then. (It would pull the
		// table anyway once it saw our digest.)
		if _, count, _ := g.d.tableInfo(g.self); n.Name != g.self && count > 0 {
			g.replyTo[n.Name] = struct{}{}
			g.kick()
		}
	}
	if n.Name != g.self {
		g.joined = true // in a cluster now, whoever joined whom
	}
	dg, key, err := decodeMeta(n.Meta)
	if err == nil && p.key != nil && !key.Equal(p.key) && dg.ver.epoch <= p.digest.ver.epoch {
		// A node keeps its key for a whole boot; another key for the same
		// or an earlier boot is someone else speaking in its name.
		err = fmt.Errorf("%w: a different key for boot %d of %s", ErrBadSignature, dg.ver.epoch, n.Name)
	}
	p.node = *n
	p.node.Addr = slices.Clone(n.Addr)
	p.node.Meta = slices.Clone(n.Meta)
	if err != nil {
		g.log.Warn("ignoring member metadata", "peer", n.Name, "err", err)
		return
	}
	p.digest, p.key = dg, key
	p.want = maxVersion(p.want, dg.ver)
	if n.Name != g.self && g.behind(n.Name, p) {
		g.schedule(p, g.grace) // the missing broadcasts may still be on their way
	}
}

// accepts reports the peer record for origin if data about origin at epoch
// may be applied. g.mu must be held.
func (g *gossip) accepts(origin string, epoch uint64) *peer {
	if origin == g.self {
		return nil
	}
	p := g.peers[origin]
	if p == nil || epoch < p.digest.ver.epoch {
		return nil
	}
	return p
}

// staleChange reports whether handleChange would drop m unseen: its origin
// is not accepted, or the change is applied or buffered already. Most
// broadcasts are such repeats; checking first spares their signature
// check on memberlist's packet loop. g.mu must be held.
func (g *gossip) staleChange(m wireMsg) bool {
	p := g.accepts(m.origin, m.ver.epoch)
	if p == nil {
		return true
	}
	if held, _, ok := g.d.tableInfo(m.origin); ok && !held.less(m.ver) {
		return true
	}
	_, dup := p.pending[m.ver.seq]
	return dup && p.pendEpoch == m.ver.epoch
}

// handleChange applies, buffers or drops one broadcast change; raw is the
// message as received, re-queued on first sight. g.mu must be held.
func (g *gossip) handleChange(raw []byte, m wireMsg) {
	p := g.accepts(m.origin, m.ver.epoch)
	if p == nil {
		return
	}
	v := m.ver
	held, _, ok := g.d.tableInfo(m.origin)
	if ok && !held.less(v) {
		return // seen: applied already, or from an older boot
	}
	if _, dup := p.pending[v.seq]; dup && p.pendEpoch == v.epoch {
		return
	}
	if len(raw) <= g.maxBroadcast {
		g.queue(bytes.Clone(raw))
	}
	next := v.seq == 1 && (!ok || held.epoch < v.epoch) || ok && held.epoch == v.epoch && v.seq == held.seq+1
	if next {
		g.d.applyRemoteChange(m.origin, v, m.change)
		g.drainPending(m.origin, p, v)
		g.drainDeltas(m.origin, p)
		return
	}
	switch {
	case p.pending == nil || p.pendEpoch < v.epoch:
		p.pending = map[uint64]change{v.seq: m.change}
		p.pendEpoch = v.epoch
	case p.pendEpoch == v.epoch && len(p.pending) < maxPending:
		p.pending[v.seq] = m.change
	}
	p.want = maxVersion(p.want, v)
	g.schedule(p, g.grace)
}

// handleTable installs a whole table (from a pull reply or a push-pull)
// unless it is older than what we hold. g.mu must be held.
func (g *gossip) handleTable(t wireTable) {
	p := g.accepts(t.origin, t.ver.epoch)
	if p == nil {
		return
	}
	if held, _, ok := g.d.tableInfo(t.origin); ok && t.ver.less(held) {
		return
	}
	g.d.replaceRemoteTable(t.origin, t.ver, p.overlay(t.entries, t.ver))
	g.drainPending(t.origin, p, t.ver)
	g.drainDeltas(t.origin, p)
}

// drainPending applies buffered changes that now follow held version v and
// discards those already covered. g.mu must be held.
func (g *gossip) drainPending(origin string, p *peer, v version) {
	switch {
	case p.pendEpoch < v.epoch:
		p.pending = nil // an earlier boot's changes: superseded
		return
	case p.pendEpoch > v.epoch:
		return
	}
	for {
		c, ok := p.pending[v.seq+1]
		if !ok {
			break
		}
		v.seq++
		delete(p.pending, v.seq)
		g.d.applyRemoteChange(origin, v, c)
	}
	for seq := range p.pending {
		if seq <= v.seq {
			delete(p.pending, seq)
		}
	}
	if len(p.pending) == 0 {
		p.pending = nil
	}
}

// behind reports whether our copy of origin's table is missing changes.
// g.mu must be held.
func (g *gossip) behind(origin string, p *peer) bool {
	if len(p.pending) > 0 || len(p.deltas) > 0 {
		return true
	}
	held, count, ok := g.d.tableInfo(origin)
	if !ok {
		return p.want.seq > 0
	}
	return held.less(p.want) || held == p.digest.ver && count != int(p.digest.count)
}

// schedule arranges a pull check for p after d, unless one is due sooner.
// g.mu must be held.
func (g *gossip) schedule(p *peer, d time.Duration) {
	at := time.Now().Add(d)
	if p.pullAt.IsZero() || at.Before(p.pullAt) {
		p.pullAt = at
		g.kick()
	}
}

func (g *gossip) kick() {
	select {
	case g.kickWork <- struct{}{}:
	default:
	}
}

// handlePull notes that node from wants our table. Requests from nodes
// that are not live members are ignored, and repeated requests coalesce, so
// the reply work is bounded by the cluster size. g.mu must be held.
func (g *gossip) handlePull(from string) {
	if from == g.self || g.peers[from] == nil {
		return
	}
	g.replyTo[from] = struct{}{}
	g.kick()
}

// due collects the pulls and replies to send now and when to look again.
// A pull is retried every few grace periods while we stay behind, in case
// the request or the reply was lost. g.mu must not be held.
func (g *gossip) due(now time.Time) (pulls, replies []memberlist.Node, next time.Duration) {
	g.mu.Lock()
	defer g.mu.Unlock()
	next = time.Hour
	for name, p := range g.peers {
		if p.pullAt.IsZero() {
			continue
		}
		if p.pullAt.After(now) {
			next = min(next, p.pullAt.Sub(now))
			continue
		}
		if !g.behind(name, p) {
			p.pullAt = time.Time{}
			continue
		}
		pulls = append(pulls, p.node)
		p.pullAt = now.Add(4 * g.grace)
		next = min(next, 4*g.grace)
	}
	for name := range g.replyTo {
		if p := g.peers[name]; p != nil {
			replies = append(replies, p.node)
		}
	}
	clear(g.replyTo)
	return pulls, replies, next
}

// workLoop sends pull requests and table replies over memberlist's reliable
// channel, outside memberlist's receive paths so they never stall gossip.
func (g *gossip) workLoop(ml *memberlist.Memberlist) {
	defer g.wg.Done()
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		pulls, replies, next := g.due(time.Now())
		if len(pulls) > 0 {
			req := encodePull(g.self)
			for i := range pulls {
				g.pullsSent.Add(1)
				g.log.Debug("pulling table", "peer", pulls[i].Name)
				if err := ml.SendReliable(&pulls[i], req); err != nil {
					g.log.Debug("pull request failed", "peer", pulls[i].Name, "err", err)
				}
			}
		}
		if len(replies) > 0 {
			msg := seal(g.key, encodeTable(g.d.snapshot(false)[0]))
			for i := range replies {
				if err := ml.SendReliable(&replies[i], msg); err != nil {
					g.log.Debug("table reply failed", "peer", replies[i].Name, "err", err)
				}
			}
		}
		t.Reset(next)
		select {
		case <-g.quit:
			return
		case <-g.kickWork:
		case <-t.C:
		}
	}
}
