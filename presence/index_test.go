package presence

import (
	"cmp"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/msprelay/msprelay/internal/waitfor"
	"github.com/msprelay/msprelay/principal"
)

// benchDirectory builds a directory holding n principals: a quarter local,
// the rest spread over three remote tables, every tenth with two aliases.
func benchDirectory(b *testing.B, n int) *Directory {
	b.Helper()
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	d, err := New(Config{Name: "me", Logger: testLogger(), Now: func() time.Time { return base }})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { d.Close() })
	remote := map[string][]principal.Entry{}
	for i := range n {
		e := principal.Entry{User: fmt.Sprintf("u%d", i), Term: "tty", State: principal.Online, LastActive: base.Add(time.Duration(i) * time.Second)}
		if i%10 == 0 {
			e.Aliases = []string{fmt.Sprintf("a%d", i), "team"}
		}
		node := [...]string{"me", "n1", "n2", "n3"}[i%4]
		if node == "me" {
			if err := d.Upsert(e); err != nil {
				b.Fatal(err)
			}
			continue
		}
		e.Node = node
		remote[node] = append(remote[node], e)
	}
	for node, es := range remote {
		d.replaceRemoteTable(node, version{1, 1}, es)
	}
	return d
}

// BenchmarkLookup measures the switchboard's per-message lookup at 100k
// principals: one user name, one alias, and a name nobody answers to.
func BenchmarkLookup(b *testing.B) {
	d := benchDirectory(b, 100_000)
	for _, c := range []struct {
		name string
		want int
	}{{"u77777", 1}, {"a50010", 1}, {"nobody", 0}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if got := len(d.Lookup(c.name)); got != c.want {
					b.Fatalf("Lookup(%q) returned %d entries, want %d", c.name, got, c.want)
				}
			}
		})
	}
}

// BenchmarkReplaceRemoteTable measures churn: a 25k-entry remote table
// (inside a 100k directory) is replaced by a copy in which 1% of entries
// changed activity, with one subscriber reading the events.
func BenchmarkReplaceRemoteTable(b *testing.B) {
	d := benchDirectory(b, 100_000)
	sub := d.Subscribe()
	defer sub.Cancel()
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		for range sub.C {
		}
	}()
	cur := d.ByNode("n1")
	b.ReportAllocs()
	seq := uint64(1)
	for b.Loop() {
		next := make([]principal.Entry, len(cur))
		copy(next, cur)
		for i := int(seq % 100); i < len(next); i += 100 {
			next[i].LastActive = next[i].LastActive.Add(time.Second)
		}
		seq++
		d.replaceRemoteTable("n1", version{1, seq}, next)
		cur = next
	}
	b.StopTimer()
	sub.Cancel()
	waitfor.Recv(b, drained, 10*time.Second, "the subscriber to drain")
}

// Rule: Lookup through the name index returns exactly what a scan of every
// entry for Entry.Answers returns, most recently active first, after any
// sequence of local upserts (with alias changes) and removes, remote
// changes, remote table replacements (including new boots) and drops; and
// a replacement emits the Removes of the entries gone, then the Upserts of
// the entries new or changed, each in key order.
func TestIndexMatchesScan(t *testing.T) {
	t.Parallel()
	base := time.Unix(1_700_000_000, 0)
	d, err := New(Config{Name: "me", Logger: testLogger(), Now: func() time.Time { return base }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	sub := d.Subscribe()
	rng := rand.New(rand.NewPCG(1159, 1312))
	users := []string{"ann", "bob", "cy", "dee", "ed", "flo"}
	pool := append(slices.Clone(users), "team", "ops", "root")
	nodes := []string{"n1", "n2", "n3"}
	vers := map[string]version{}
	pick := func(s []string) string { return s[rng.IntN(len(s))] }
	randEntry := func(node string) principal.Entry {
		e := principal.Entry{User: pick(users), Node: node, Term: pick([]string{"tty", "pts1", "pts2"}), State: principal.Online,
			Since: base, LastActive: base.Add(time.Duration(rng.IntN(5)) * time.Second)}
		for range rng.IntN(4) { // duplicates and the user's own name included: remote entries are taken as sent
			e.Aliases = append(e.Aliases, pick(pool))
		}
		return e
	}
	const iterations = 3000
	for i := range iterations {
		var what string
		var wantEvents *string // checked only when set
		switch op := rng.IntN(10); {
		case op < 4:
			e := randEntry("me")
			if rng.IntN(2) == 0 {
				e.User = strings.ToUpper(e.User) // canonicalised by Upsert
			}
			what = fmt.Sprintf("Upsert(%s/%s %v)", e.User, e.Term, e.Aliases)
			slices.Sort(e.Aliases)
			if err := d.Upsert(e); err != nil {
				t.Fatalf("%d: %s: %v", i, what, err)
			}
		case op < 5:
			u, term := pick(users), pick([]string{"tty", "pts1", "PTS2"})
			what = fmt.Sprintf("Remove(%s/%s)", u, term)
			d.Remove(u, term)
		case op < 7:
			node := pick(nodes)
			v := vers[node]
			v.seq++
			if v.epoch == 0 || rng.IntN(8) == 0 {
				v = version{v.epoch + 1, 1} // a new boot starts from an empty table
			}
			vers[node] = v
			c := change{Op: opUpsert, Entry: randEntry(node)}
			if rng.IntN(3) == 0 {
				c.Op = opRemove
			}
			what = fmt.Sprintf("applyRemoteChange(%s %v %d %s/%s)", node, v, c.Op, c.Entry.User, c.Entry.Term)
			d.applyRemoteChange(node, v, c)
		case op < 9:
			node := pick(nodes)
			v := vers[node]
			v.epoch, v.seq = max(v.epoch, 1), v.seq+1
			vers[node] = v
			var next []principal.Entry
			for range rng.IntN(8) {
				next = append(next, randEntry(node))
			}
			what = fmt.Sprintf("replaceRemoteTable(%s, %d entries)", node, len(next))
			w := renderEvents(replaceEventsByScan(d.ByNode(node), node, next))
			wantEvents = &w
			d.replaceRemoteTable(node, v, next)
		default:
			node := pick(nodes)
			what = "dropRemoteTable(" + node + ")"
			delete(vers, node)
			d.dropRemoteTable(node)
		}
		got := renderEvents(drainEvents(t, sub))
		if wantEvents != nil && got != *wantEvents {
			t.Fatalf("%d: %s emitted\n%s\nwant\n%s", i, what, got, *wantEvents)
		}
		checkIndex(t, d, append(pool, "nobody", "TEAM"), fmt.Sprintf("%d: after %s", i, what))
	}
	if n := len(d.All()); n == 0 {
		t.Fatalf("directory ended empty after %d operations: the sequence exercised nothing", iterations)
	}
}

// checkIndex compares Lookup with a scan for every name, and checks that
// the index holds each (entry, name) pair once and nothing else.
func checkIndex(t *testing.T, d *Directory, names []string, when string) {
	t.Helper()
	all := d.All()
	for _, name := range names {
		var want []principal.Entry
		for _, e := range all {
			if e.Answers(name) {
				want = append(want, e)
			}
		}
		got := d.Lookup(name)
		if !slices.IsSortedFunc(got, func(a, b principal.Entry) int {
			return cmp.Or(b.LastActive.Compare(a.LastActive), cmp.Compare(a.Node, b.Node), cmp.Compare(a.Term, b.Term))
		}) {
			t.Fatalf("%s: Lookup(%q) not most recent first: %s", when, name, formatEntries(got))
		}
		total := func(a, b principal.Entry) int {
			return cmp.Or(cmp.Compare(a.Node, b.Node), cmp.Compare(a.Term, b.Term), cmp.Compare(a.User, b.User))
		}
		slices.SortFunc(want, total)
		slices.SortFunc(got, total)
		if g, w := formatEntries(got), formatEntries(want); g != w {
			t.Fatalf("%s: Lookup(%q) = %s, scan finds %s", when, name, g, w)
		}
	}
	d.mu.RLock()
	defer d.mu.RUnlock()
	pairs := 0
	for _, tb := range d.tables {
		for _, e := range tb.entries {
			for range entryNames(&e) {
				pairs++
			}
		}
	}
	refs := 0
	for name, rs := range d.index {
		if len(rs) == 0 {
			t.Fatalf("%s: index keeps an empty list for %q", when, name)
		}
		for i, r := range rs {
			tb := d.tables[r.node]
			if tb == nil {
				t.Fatalf("%s: index[%q] refers to dropped table %s", when, name, r.node)
			}
			e, ok := tb.entries[r.key]
			if !ok || !e.Answers(name) {
				t.Fatalf("%s: index[%q] refers to %v, which does not answer to it", when, name, r)
			}
			if slices.Contains(rs[:i], r) {
				t.Fatalf("%s: index[%q] holds %v twice", when, name, r)
			}
		}
		refs += len(rs)
	}
	if refs != pairs {
		t.Fatalf("%s: index holds %d refs, the tables %d (entry, name) pairs", when, refs, pairs)
	}
}

// replaceEventsByScan is the event sequence a table replacement must emit,
// computed the plain way: every held key in order, then every new key.
func replaceEventsByScan(held []principal.Entry, node string, next []principal.Entry) []Event {
	byKey := func(es []principal.Entry) map[entryKey]principal.Entry {
		m := map[entryKey]principal.Entry{}
		for _, e := range es {
			e.Node = node
			m[keyOf(e.User, e.Term)] = e
		}
		return m
	}
	prev, nxt := byKey(held), byKey(next)
	var out []Event
	for _, k := range slices.SortedFunc(maps.Keys(prev), compareEntryKeys) {
		if _, ok := nxt[k]; !ok {
			e := prev[k]
			e.State = principal.Offline
			out = append(out, Event{Type: EventRemove, Entry: e})
		}
	}
	for _, k := range slices.SortedFunc(maps.Keys(nxt), compareEntryKeys) {
		e := nxt[k]
		if old, ok := prev[k]; !ok || !entriesEqual(&old, &e) {
			out = append(out, Event{Type: EventUpsert, Entry: e})
		}
	}
	return out
}

// drainEvents returns the events delivered so far; the subscription must
// still be live (the test never lets it lag).
func drainEvents(t *testing.T, s *Subscription) []Event {
	t.Helper()
	var out []Event
	for {
		select {
		case ev, ok := <-s.C:
			if !ok {
				t.Fatalf("subscription ended: %v", s.Err())
			}
			out = append(out, ev)
		default:
			return out
		}
	}
}

func renderEvents(evs []Event) string {
	var b strings.Builder
	for _, ev := range evs {
		sign := "+"
		if ev.Type == EventRemove {
			sign = "-"
		}
		b.WriteString(sign + formatEntries([]principal.Entry{ev.Entry}) + "\n")
	}
	return b.String()
}
