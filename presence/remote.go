package presence

import (
	"cmp"
	"slices"

	"github.com/msprelay/msprelay/principal"
)

// This file holds the Directory side of gossip: reading this node's table for
// the wire, and replacing or patching other nodes' tables as gossip decides.
// The gossip layer checks membership and versions before calling in; these
// methods only apply, and emit the events that the change implies.

type op uint8

const (
	opUpsert op = iota + 1
	opRemove
)

// change is one edit of a node's table, as broadcast by its owner.
type change struct {
	Op    op
	Entry principal.Entry
}

// tableInfo reports the version and size of node's table, if held.
func (d *Directory) tableInfo(node string) (v version, count int, ok bool) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	t := d.tables[node]
	if t == nil {
		return version{}, 0, false
	}
	return version{t.epoch, t.seq}, len(t.entries), true
}

// localDigest summarises this node's own table for its memberlist metadata.
func (d *Directory) localDigest() digest {
	v, n, _ := d.tableInfo(d.cfg.Name)
	return digest{ver: v, count: uint32(min(n, 1<<32-1))}
}

// snapshot copies tables for the wire: this node's own, plus every remote
// table when all is set. Entries are ordered so the encoding is stable.
func (d *Directory) snapshot(all bool) []wireTable {
	d.mu.RLock()
	defer d.mu.RUnlock()
	var out []wireTable
	for name, t := range d.tables {
		if !all && name != d.cfg.Name {
			continue
		}
		wt := wireTable{origin: name, ver: version{t.epoch, t.seq}, entries: make([]principal.Entry, 0, len(t.entries))}
		for _, e := range t.entries {
			wt.entries = append(wt.entries, e) // aliases are never mutated in place, sharing is safe
		}
		slices.SortFunc(wt.entries, compareKeys)
		out = append(out, wt)
	}
	slices.SortFunc(out, func(a, b wireTable) int { return cmp.Compare(a.origin, b.origin) })
	return out
}

// applyRemoteChange applies the change numbered v to origin's table. The
// caller has checked that v directly follows the held version, or that v
// starts a new epoch (seq 1), in which case the old table is discarded.
func (d *Directory) applyRemoteChange(origin string, v version, c change) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed || origin == d.cfg.Name {
		return
	}
	t := d.tables[origin]
	if t == nil || t.epoch != v.epoch {
		d.replaceLocked(origin, version{v.epoch, v.seq - 1}, nil)
		t = d.tables[origin]
	}
	t.seq = v.seq
	d.applyLocked(origin, t, c)
}

// applyRemoteDelta applies the coalesced changes that bring origin's table
// to version v. The caller has checked that the delta follows the held
// version (delta.go), or starts a new epoch (base 0), in which case the old
// table is discarded.
func (d *Directory) applyRemoteDelta(origin string, v version, items []change) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed || origin == d.cfg.Name {
		return
	}
	t := d.tables[origin]
	if t == nil || t.epoch != v.epoch {
		d.replaceLocked(origin, version{v.epoch, 0}, nil)
		t = d.tables[origin]
	}
	t.seq = v.seq
	for _, c := range items {
		d.applyLocked(origin, t, c)
	}
}

// applyRemoteItems applies changes of origin's table of boot epoch that
// arrived ahead of a gap, leaving its version alone (delta.go).
func (d *Directory) applyRemoteItems(origin string, epoch uint64, items []change) {
	d.mu.Lock()
	defer d.mu.Unlock()
	t := d.tables[origin]
	if d.closed || origin == d.cfg.Name || t == nil || t.epoch != epoch {
		return
	}
	for _, c := range items {
		d.applyLocked(origin, t, c)
	}
}

// applyLocked applies one change to origin's table t and emits its event,
// if it changes anything. d.mu must be held.
func (d *Directory) applyLocked(origin string, t *table, c change) {
	c.Entry.Node = origin
	k := keyOf(c.Entry.User, c.Entry.Term)
	old, had := t.entries[k]
	switch c.Op {
	case opUpsert:
		if had && entriesEqual(&old, &c.Entry) {
			return
		}
		t.entries[k] = c.Entry
		d.index.replace(origin, k, &old, had, &c.Entry)
		d.emitLocked(Event{Type: EventUpsert, Entry: cloneEntry(c.Entry)})
	case opRemove:
		if !had {
			return
		}
		delete(t.entries, k)
		d.index.remove(origin, k, &old)
		old.State = principal.Offline
		d.emitLocked(Event{Type: EventRemove, Entry: old})
	}
}

// replaceRemoteTable installs origin's whole table at version v and emits
// the difference from what was held: Removes first, then Upserts.
func (d *Directory) replaceRemoteTable(origin string, v version, entries []principal.Entry) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed || origin == d.cfg.Name {
		return
	}
	d.replaceLocked(origin, v, entries)
}

// dropRemoteTable forgets origin's table (the node left or died) and emits a
// Remove for each of its entries.
func (d *Directory) dropRemoteTable(origin string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed || origin == d.cfg.Name || d.tables[origin] == nil {
		return
	}
	d.replaceLocked(origin, version{}, nil)
	delete(d.tables, origin)
}

// replaceLocked installs origin's table and emits the difference from the
// held one: first a Remove for each entry gone, then an Upsert for each
// entry new or changed, each group in key order so that every node emits
// the same sequence for the same two tables. Tables are replaced whole on
// every gap repair and boot, so at scale this is the churn hot path: it
// diffs with the two maps (one pass when no key is new), sorts only the keys
// that changed (and nothing when nobody subscribes), and leaves the index
// alone for entries whose names did not change.
func (d *Directory) replaceLocked(origin string, v version, entries []principal.Entry) {
	next := &table{epoch: v.epoch, seq: v.seq, entries: make(map[entryKey]principal.Entry, len(entries))}
	for _, e := range entries {
		e.Node = origin
		next.entries[keyOf(e.User, e.Term)] = e
	}
	var prev map[entryKey]principal.Entry
	if t := d.tables[origin]; t != nil {
		prev = t.entries
	}
	d.tables[origin] = next
	emit := len(d.subs) > 0
	var removed, upserted, renamed []entryKey
	// Old refs are unindexed in one batch before new ones are added, so that
	// a ref leaving and rejoining one name's list is not lost.
	var staleKeys map[entryKey]struct{}
	var staleNames map[string]struct{}
	kept := 0
	for k, old := range prev {
		e, ok := next.entries[k]
		if ok {
			kept++
			if emit && !entriesEqual(&old, &e) {
				upserted = append(upserted, k)
			}
			if sameNames(&old, &e) {
				continue
			}
			renamed = append(renamed, k)
		} else if emit {
			removed = append(removed, k)
		}
		if staleKeys == nil {
			staleKeys, staleNames = map[entryKey]struct{}{}, map[string]struct{}{}
		}
		staleKeys[k] = struct{}{}
		for n := range entryNames(&old) {
			staleNames[n] = struct{}{}
		}
	}
	if staleKeys != nil {
		d.index.removeBatch(origin, staleKeys, staleNames)
	}
	for _, k := range renamed {
		e := next.entries[k]
		d.index.add(origin, k, &e)
	}
	if kept < len(next.entries) { // some keys are new; when none are, skip a pass
		for k, e := range next.entries {
			if _, had := prev[k]; !had {
				d.index.add(origin, k, &e)
				if emit {
					upserted = append(upserted, k)
				}
			}
		}
	}
	if !emit {
		return // emitLocked would reach nobody
	}
	slices.SortFunc(removed, compareEntryKeys)
	for _, k := range removed {
		e := prev[k]
		e.State = principal.Offline
		d.emitLocked(Event{Type: EventRemove, Entry: e})
	}
	slices.SortFunc(upserted, compareEntryKeys)
	for _, k := range upserted {
		d.emitLocked(Event{Type: EventUpsert, Entry: cloneEntry(next.entries[k])})
	}
}

func compareEntryKeys(a, b entryKey) int {
	return cmp.Or(cmp.Compare(a.user, b.user), cmp.Compare(a.term, b.term))
}

func compareKeys(a, b principal.Entry) int {
	return compareEntryKeys(keyOf(a.User, a.Term), keyOf(b.User, b.Term))
}

func entriesEqual(a, b *principal.Entry) bool {
	return a.User == b.User && a.Node == b.Node && a.Term == b.Term && a.State == b.State && a.Kind == b.Kind &&
		slices.Equal(a.Aliases, b.Aliases) && a.Since.Equal(b.Since) && a.LastActive.Equal(b.LastActive)
}
