package presence

import (
	"cmp"
	"slices"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/msprelay/msprelay/principal"
)

// This file sends this node's changes to its peers as deltas and applies
// the deltas of others.
//
// Why not gossip each change: memberlist does not relay user broadcasts,
// so every receiver re-queued every change, and memberlist hands each node
// only a packet's worth of queued messages per target per gossip interval.
// With every node relaying every change RetransmitMult*log(n+1) times, a
// 30-node cluster had room for far fewer changes per second than 200/s of
// churn asked for: the queues filled, changes were pruned, and peers caught
// up by pulling whole tables seconds later (docs/BENCHMARKS.md, issue 22).
//
// Instead the owner of a table sends its changes itself, straight to every
// live member over memberlist's packet (UDP) channel, and nobody relays
// them:
//
//   - Changes are collected for a short window (flushDelay; windows at
//     least flushSpacing apart) in a map keyed by (user, term), so a later
//     change of a terminal replaces the queued earlier one (a sign-out
//     followed by a sign-in sends only the sign-in).
//   - The window's changes go out as deltas: (base, to] with the latest
//     change of each key, in change order, as many per packet as fit, each
//     delta signed once (sign.go). A delta applies to a table held at any
//     version from base to to-1: keys changed after the held version are
//     all among its items, and keys whose last change came before it hold
//     that state already. When one window needs several packets, packet k
//     ends at its last item's number: a key whose later change is in a
//     later packet shows its earlier state until that packet arrives.
//   - Each window is sent widened to the recent windows' changes too (up
//     to historyWindows windows or historyItems changes), and the last
//     window of a burst is sent once more a little later, so a
//     lost packet is usually repaired by the next one (measured: on a
//     loaded machine, loopback UDP between in-process nodes does lose
//     packets, and a repair by pull took a second or more).
//   - A delta that does not follow what the receiver holds waits in a small
//     per-origin buffer; a lost one is repaired as a lost broadcast was:
//     the origin's digest (its memberlist metadata) shows the receiver is
//     behind, and it pulls the whole table after the grace period.
//     Memberlist's periodic push-pull does the same for anything else.
//   - A member that joins gets the owner's table at once (memberUp), as
//     the deltas before it joined did not reach it.
//   - Everything is bounded per node: the outgoing map (maxOutDelta keys;
//     past that the window is dropped and peers pull), the items in one
//     delta (maxDeltaItems), and the deltas buffered per origin
//     (maxPendingDeltas).
//
// The single source of truth for a node's principals stays that node's own
// table: deltas, pulls and push-pulls carry only what the owner signed.

// maxOutDelta bounds the changes collected in one window. A burst larger
// than this (a node loading thousands of sessions at once) is cheaper to
// send as one table per peer over TCP, which the pulls it triggers do.
const maxOutDelta = maxDeltaItems

// maxPendingDeltas bounds the out-of-order deltas buffered per origin.
const maxPendingDeltas = 64

// historyWindows and historyItems bound how far back each delta repeats
// the recent windows (see flushLoop).
const (
	historyWindows = 8
	historyItems   = 64
)

// deltaOverhead is room left in a packet for memberlist's framing, a
// label and encryption (version, nonce, tag), so that a delta fits in
// UDPBufferSize once sealed and sent.
const deltaOverhead = 128

// outItem is one queued change with the number it got in our table.
type outItem struct {
	seq uint64
	c   change
}

// pendingDelta is a delta that arrived before the one it follows.
type pendingDelta struct {
	base, to uint64
	items    []change
}

// queueLocal records a change to this node's table for the next delta. It
// runs under Directory.mu, so it must not block or take g.mu.
func (g *gossip) queueLocal(epoch, seq uint64, c change) {
	g.outMu.Lock()
	if len(g.out) == 0 || g.outEpoch != epoch {
		clear(g.out)
		g.outEpoch, g.outBase = epoch, seq-1
	}
	g.out[keyOf(c.Entry.User, c.Entry.Term)] = outItem{seq, c}
	g.outTo = seq
	if len(g.out) > maxOutDelta {
		// Too many for deltas: drop the window; peers see from our digest
		// that they are behind and pull the table.
		clear(g.out)
		g.outDropped.Add(1)
	}
	g.outMu.Unlock()
	select {
	case g.kickFlush <- struct{}{}:
	default:
	}
}

// takeOut empties the outgoing window and returns its changes in change
// order.
func (g *gossip) takeOut() (epoch, base, to uint64, items []outItem) {
	g.outMu.Lock()
	defer g.outMu.Unlock()
	if len(g.out) == 0 {
		return 0, 0, 0, nil
	}
	items = make([]outItem, 0, len(g.out))
	for _, it := range g.out {
		items = append(items, it)
	}
	clear(g.out)
	slices.SortFunc(items, func(a, b outItem) int { return cmp.Compare(a.seq, b.seq) })
	return g.outEpoch, g.outBase, g.outTo, items
}

// encodeDeltas packs items (changes base+1..to of epoch, coalesced, in
// order) into signed deltas of at most limit bytes each. An item too big
// for a delta of its own is left out; the receivers' digest check finds
// the gap and they pull.
func (g *gossip) encodeDeltas(epoch, base, to uint64, items []outItem, limit int) [][]byte {
	var msgs [][]byte
	head := len(encodeDelta(g.self, epoch, base, to, maxDeltaItems, nil)) + sigLen
	var body, one []byte
	n := 0
	from := base
	flush := func(end uint64) {
		if n > 0 {
			msgs = append(msgs, seal(g.key, encodeDelta(g.self, epoch, from, end, n, body)))
		}
		body, n, from = body[:0], 0, end // encodeDelta copied body
	}
	for i, it := range items {
		one = appendChange(one[:0], &it.c)
		if head+len(one) > limit {
			// Too big for any packet: the next delta starts after it, so
			// receivers see a gap and pull the table.
			if i > 0 {
				flush(items[i-1].seq)
			}
			from = it.seq
			continue
		}
		if n == maxDeltaItems || head+len(body)+len(one) > limit {
			flush(items[i-1].seq)
		}
		body = append(body, one...)
		n++
	}
	flush(to)
	return msgs
}

// window is one flushed set of changes: (base, to] of epoch, coalesced,
// in change order.
type window struct {
	epoch, base, to uint64
	items           []outItem
}

// withPrevious is cur widened to start where prev started, when prev ends
// where cur starts: the union of their changes, the later change of a key
// winning. Sending each window widened so, a delta lost on the way is
// repaired by the next one, at the cost of bigger packets rather than more.
func withPrevious(prev, cur window) window {
	if len(prev.items) == 0 || prev.epoch != cur.epoch || prev.to != cur.base {
		return cur
	}
	latest := make(map[entryKey]outItem, len(prev.items)+len(cur.items))
	for _, w := range []window{prev, cur} {
		for _, it := range w.items {
			latest[keyOf(it.c.Entry.User, it.c.Entry.Term)] = it
		}
	}
	out := window{epoch: cur.epoch, base: prev.base, to: cur.to, items: make([]outItem, 0, len(latest))}
	for _, it := range latest {
		out.items = append(out.items, it)
	}
	slices.SortFunc(out.items, func(a, b outItem) int { return cmp.Compare(a.seq, b.seq) })
	return out
}

// flushLoop sends the outgoing window to every live member, flushDelay
// after its first change (and at least flushSpacing after the previous
// window), so that a burst of changes goes out together.
// Each window goes out widened by the recent ones (withPrevious, up to
// historyWindows windows or historyItems changes), and the last window of
// a burst is sent once more resendDelay later, so a lost packet costs a
// peer a few tens of milliseconds, not a pull.
func (g *gossip) flushLoop(ml *memberlist.Memberlist) {
	defer g.wg.Done()
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	tail := time.NewTimer(time.Hour)
	defer tail.Stop()
	var prev window      // the recent windows, as one, until sent twice
	var spans int        // windows in prev
	var sentAt time.Time // when a window was last sent
	for {
		select {
		case <-g.quit:
			return
		case <-tail.C:
			g.send(ml, prev)
			prev = window{}
			continue
		case <-g.kickFlush:
		}
		// Under sustained churn windows are spaced flushSpacing apart, so
		// each carries more changes and a receiver checks fewer
		// signatures: the packets a node sends per second are bounded by
		// its peers, not by its churn.
		t.Reset(max(g.flushDelay, time.Until(sentAt.Add(g.flushSpacing))))
		select {
		case <-g.quit:
			return
		case <-t.C:
		}
		sentAt = time.Now()
		var cur window
		cur.epoch, cur.base, cur.to, cur.items = g.takeOut()
		if len(cur.items) == 0 {
			continue
		}
		wide := withPrevious(prev, cur)
		g.send(ml, wide)
		// Keep widening by the recent windows while that stays small: a
		// receiver that lost several packets in a row (a stall) is then
		// still repaired by the next one.
		if spans++; wide.base == cur.base || spans >= historyWindows || len(wide.items) > historyItems {
			wide, spans = cur, 1
		}
		prev = wide
		tail.Reset(g.resendDelay)
	}
}

// send encodes w as deltas and sends them to every live member.
func (g *gossip) send(ml *memberlist.Memberlist, w window) {
	if len(w.items) == 0 {
		return
	}
	msgs := g.encodeDeltas(w.epoch, w.base, w.to, w.items, g.mlc.UDPBufferSize-deltaOverhead)
	g.mu.Lock()
	peers := make([]memberlist.Node, 0, len(g.peers))
	for name, p := range g.peers {
		if name != g.self {
			peers = append(peers, p.node)
		}
	}
	g.mu.Unlock()
	for _, m := range msgs {
		for i := range peers {
			if err := ml.SendBestEffort(&peers[i], m); err != nil {
				g.log.Debug("delta not sent", "node", peers[i].Name, "err", err)
			}
		}
		g.deltasSent.Add(1)
	}
}

// staleDelta reports whether handleDelta would drop m unseen, sparing its
// signature check. g.mu must be held.
func (g *gossip) staleDelta(m wireMsg) bool {
	if g.accepts(m.origin, m.ver.epoch) == nil {
		return true
	}
	held, _, ok := g.d.tableInfo(m.origin)
	return ok && (m.ver.epoch < held.epoch || m.ver.epoch == held.epoch && m.ver.seq <= held.seq)
}

// follows reports whether a delta (epoch, base, to] applies to a table held
// at held (ok: held at all).
func follows(held version, ok bool, epoch, base, to uint64) bool {
	if ok && held.epoch == epoch {
		return base <= held.seq && held.seq < to
	}
	return base == 0 && (!ok || held.epoch < epoch)
}

// handleDelta applies or buffers one delta. g.mu must be held.
func (g *gossip) handleDelta(m wireMsg) {
	p := g.accepts(m.origin, m.ver.epoch)
	if p == nil {
		return
	}
	epoch, base, to := m.ver.epoch, m.base, m.ver.seq
	held, _, ok := g.d.tableInfo(m.origin)
	if ok && (epoch < held.epoch || epoch == held.epoch && to <= held.seq) {
		return
	}
	if follows(held, ok, epoch, base, to) {
		g.d.applyRemoteDelta(m.origin, m.ver, p.unshadowed(m.items, m.ver))
		g.drainDeltas(m.origin, p)
		g.drainPending(m.origin, p, m.ver)
		return
	}
	if p.deltaEpoch < epoch {
		p.deltas, p.deltaEpoch = nil, epoch
	}
	if p.deltaEpoch == epoch && len(p.deltas) < maxPendingDeltas {
		p.deltas = append(p.deltas, pendingDelta{base, to, m.items})
		// Its items are each a key's state at a version later than any
		// we hold, so they are shown now; the table's version waits for
		// the gap, and a pulled table is overlaid with the buffered deltas
		// (handleTable), so nothing shown goes back.
		if ok && held.epoch == epoch {
			g.d.applyRemoteItems(m.origin, epoch, m.items)
		}
	}
	p.want = maxVersion(p.want, m.ver)
	g.schedule(p, g.grace)
}

// unshadowed returns items (of a delta ending at v) less the keys that a
// buffered delta ending later changes: those were shown already, at a
// later state, and applying the earlier one would take them back.
// g.mu must be held.
func (p *peer) unshadowed(items []change, v version) []change {
	var later map[entryKey]struct{}
	for _, pd := range p.deltas {
		if p.deltaEpoch != v.epoch || pd.to <= v.seq {
			continue
		}
		if later == nil {
			later = map[entryKey]struct{}{}
		}
		for _, c := range pd.items {
			later[keyOf(c.Entry.User, c.Entry.Term)] = struct{}{}
		}
	}
	if later == nil {
		return items
	}
	return slices.DeleteFunc(slices.Clone(items), func(c change) bool {
		_, ok := later[keyOf(c.Entry.User, c.Entry.Term)]
		return ok
	})
}

// overlay returns entries (a table at version v of epoch) with the items of
// the buffered deltas that end after v applied on top, in the order of
// their ends. g.mu must be held.
func (p *peer) overlay(entries []principal.Entry, v version) []principal.Entry {
	var later []pendingDelta
	for _, pd := range p.deltas {
		if p.deltaEpoch == v.epoch && pd.to > v.seq {
			later = append(later, pd)
		}
	}
	if len(later) == 0 {
		return entries
	}
	slices.SortFunc(later, func(a, b pendingDelta) int { return cmp.Compare(a.to, b.to) })
	byKey := make(map[entryKey]principal.Entry, len(entries))
	for _, e := range entries {
		byKey[keyOf(e.User, e.Term)] = e
	}
	for _, pd := range later {
		for _, c := range pd.items {
			k := keyOf(c.Entry.User, c.Entry.Term)
			if c.Op == opRemove {
				delete(byKey, k)
			} else {
				byKey[k] = c.Entry
			}
		}
	}
	out := make([]principal.Entry, 0, len(byKey))
	for _, e := range byKey {
		out = append(out, e)
	}
	return out
}

// drainDeltas applies buffered deltas that now follow what we hold and
// discards those already covered. g.mu must be held.
func (g *gossip) drainDeltas(origin string, p *peer) {
	for len(p.deltas) > 0 {
		held, _, ok := g.d.tableInfo(origin)
		if !ok || held.epoch > p.deltaEpoch {
			p.deltas = nil
			break
		}
		if held.epoch < p.deltaEpoch {
			break // waiting for the new boot's start
		}
		applied := false
		p.deltas = slices.DeleteFunc(p.deltas, func(pd pendingDelta) bool {
			switch {
			case pd.to <= held.seq:
				return true
			case applied || pd.base > held.seq:
				return false
			}
			g.d.applyRemoteDelta(origin, version{held.epoch, pd.to}, p.unshadowed(pd.items, version{held.epoch, pd.to}))
			applied = true
			return true
		})
		if !applied {
			break
		}
	}
	if len(p.deltas) == 0 {
		p.deltas = nil
	}
}
