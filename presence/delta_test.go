package presence

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/msprelay/msprelay/internal/waitfor"
	"github.com/msprelay/msprelay/principal"
)

// deltaMsg is a delta of x's table (epoch, base, to] as x sends it.
func deltaMsg(epoch, base, to uint64, items ...change) []byte {
	var b []byte
	for i := range items {
		b = appendChange(b, &items[i])
	}
	return xSigned(encodeDelta("x", epoch, base, to, len(items), b))
}

func up(user string, st principal.State) change {
	return change{Op: opUpsert, Entry: entry(user, "x", "tty", st)}
}

func rm(user string) change {
	return change{Op: opRemove, Entry: principal.Entry{User: user, Term: "tty"}}
}

// newSender builds an unstarted gossiping Directory that speaks as node x
// (x's test key), whose outgoing deltas can be taken and fed to a
// directory made by newUnstarted.
func newSender(t *testing.T) *Directory {
	t.Helper()
	d, err := New(Config{Name: "x", Logger: testLogger(), Gossip: GossipConfig{BindAddr: "127.0.0.1:0", Profile: "local"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	d.g.key = xKey()
	return d
}

// sendAll takes x's outgoing window and encodes it as deltas of at most
// limit bytes.
func sendAll(x *Directory, limit int) [][]byte {
	epoch, base, to, items := x.g.takeOut()
	if len(items) == 0 {
		return nil
	}
	return x.g.encodeDeltas(epoch, base, to, items, limit)
}

// Rule (issue 22: "batched deltas ... anti-entropy still repairs anything
// a lost delta missed"): a delta (base, to] applies to a table held at any
// version from base to to-1; one that arrives before its predecessor
// waits (and the receiver counts as behind, so it would pull); duplicates,
// covered deltas and earlier boots are dropped; a new boot starts empty.
func TestDeltasApplyInOrderOnce(t *testing.T) {
	t.Parallel()
	steps := []struct {
		name       string
		msg        []byte
		wantEvents string
		wantVer    version
		wantBehind bool
	}{
		{"delta after a gap waits", deltaMsg(7, 2, 3, up("c", principal.Online)), "", version{}, true},
		{"first delta applies, then the waiting one", deltaMsg(7, 0, 2, up("a", principal.Online), up("b", principal.Online)), "+a +b +c", version{7, 3}, false},
		{"overlapping delta applies", deltaMsg(7, 2, 5, rm("b"), up("d", principal.Online)), "-b +d", version{7, 5}, false},
		{"covered delta is dropped", deltaMsg(7, 0, 2, up("a", principal.Online), up("b", principal.Online)), "", version{7, 5}, false},
		{"earlier boot is dropped", deltaMsg(6, 0, 9, up("old", principal.Online)), "", version{7, 5}, false},
		{"new boot starts empty", deltaMsg(8, 0, 1, up("new", principal.Online)), "-a -c -d +new", version{8, 1}, false},
		{"after a gap, the items show at once and the version waits", deltaMsg(8, 3, 4, up("z", principal.Online)), "+z", version{8, 1}, true},
		{"the gap filled: the version moves on, z keeps its later state", deltaMsg(8, 1, 3, up("y", principal.Online), up("z", principal.Busy)), "+y", version{8, 4}, false},
	}
	d, sub := newUnstarted(t)
	for _, s := range steps {
		d.g.NotifyMsg(s.msg)
		if got := drain(sub); got != s.wantEvents {
			t.Fatalf("%s: events %q, want %q", s.name, got, s.wantEvents)
		}
		v, _, _ := d.tableInfo("x")
		if v != s.wantVer {
			t.Fatalf("%s: table version %v, want %v", s.name, v, s.wantVer)
		}
		d.g.mu.Lock()
		behind := d.g.behind("x", d.g.peers["x"])
		d.g.mu.Unlock()
		if behind != s.wantBehind {
			t.Fatalf("%s: behind = %v, want %v", s.name, behind, s.wantBehind)
		}
	}
}

// Rule (issue 22: "coalescing of superseded changes per principal (a later
// change of one principal replaces the queued earlier one)"): a window
// that signed alice in, out and in again as busy sends one change for her,
// the last; the receiver ends with every principal's latest state.
func TestCoalescingKeepsLatestState(t *testing.T) {
	t.Parallel()
	x := newSender(t)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(x.Upsert(entry("alice", "", "tty", principal.Online)))
	x.Remove("alice", "tty")
	must(x.Upsert(entry("alice", "", "tty", principal.Busy)))
	must(x.Upsert(entry("bob", "", "tty", principal.Online)))
	x.Remove("bob", "tty")
	must(x.Upsert(entry("carol", "", "tty", principal.Idle)))

	epoch, base, to, items := x.g.takeOut()
	var got []string
	for _, it := range items {
		got = append(got, fmt.Sprintf("%d:%d:%s:%v", it.seq, it.c.Op, it.c.Entry.User, it.c.Entry.State))
	}
	want := []string{
		fmt.Sprintf("3:%d:alice:%v", opUpsert, principal.Busy),
		fmt.Sprintf("5:%d:bob:%v", opRemove, principal.Offline),
		fmt.Sprintf("6:%d:carol:%v", opUpsert, principal.Idle),
	}
	if base != 0 || to != 6 || !slices.Equal(got, want) {
		t.Fatalf("window (%d, %d] = %v, want (0, 6] %v", base, to, got, want)
	}
	msgs := x.g.encodeDeltas(epoch, base, to, items, 1400)
	if len(msgs) != 1 {
		t.Fatalf("%d deltas for a window of 3 changes, want 1", len(msgs))
	}
	d, sub := newUnstarted(t)
	d.g.NotifyMsg(msgs[0])
	if ev := drain(sub); ev != "+alice +carol" {
		t.Fatalf("receiver events %q, want %q", ev, "+alice +carol")
	}
	wantAll := []principal.Entry{entry("alice", "x", "tty", principal.Busy), entry("carol", "x", "tty", principal.Idle)}
	if all := d.ByNode("x"); formatEntries(sortedByUser(all)) != formatEntries(sortedByUser(wantAll)) {
		t.Fatalf("receiver holds %s, want %s", formatEntries(all), formatEntries(wantAll))
	}
	if v, _, _ := d.tableInfo("x"); v != (version{epoch, 6}) {
		t.Fatalf("receiver version %v, want %v", v, version{epoch, 6})
	}
}

func sortedByUser(es []principal.Entry) []principal.Entry {
	es = slices.Clone(es)
	slices.SortFunc(es, compareKeys)
	return es
}

// Rule: a window too big for one packet goes out as a chain of deltas, each
// starting where the previous one ended and the last ending at the window's
// end; delivered in any order, they leave the receiver with the sender's
// table.
func TestDeltaChainArrivesInAnyOrder(t *testing.T) {
	t.Parallel()
	x := newSender(t)
	for i := range 40 {
		if err := x.Upsert(entry(fmt.Sprintf("user%d", i), "", "tty", principal.Online)); err != nil {
			t.Fatal(err)
		}
	}
	x.Remove("user7", "tty")
	if err := x.Upsert(entry("user3", "", "tty", principal.Away)); err != nil {
		t.Fatal(err)
	}
	msgs := sendAll(x, 300)
	if len(msgs) < 3 {
		t.Fatalf("%d deltas with a 300-byte limit, want several", len(msgs))
	}
	prev := uint64(0)
	for i, b := range msgs {
		if len(b) > 300 {
			t.Fatalf("delta %d is %d bytes, limit 300", i, len(b))
		}
		m, err := openMessage(b)
		if err != nil {
			t.Fatal(err)
		}
		if m.base != prev {
			t.Fatalf("delta %d starts at %d, want %d (where the previous ended)", i, m.base, prev)
		}
		prev = m.ver.seq
	}
	xv, _, _ := x.tableInfo("x")
	if prev != xv.seq {
		t.Fatalf("last delta ends at %d, want the sender's version %d", prev, xv.seq)
	}
	d, _ := newUnstarted(t)
	for _, b := range slices.Backward(msgs) {
		d.g.NotifyMsg(b)
	}
	if got, want := formatEntries(sortedByUser(d.ByNode("x"))), formatEntries(sortedByUser(x.ByNode("x"))); got != want {
		t.Fatalf("receiver holds %s, want %s", got, want)
	}
	if v, _, _ := d.tableInfo("x"); v != xv {
		t.Fatalf("receiver version %v, want %v", v, xv)
	}
}

// Rule (issue 22: "bounded queues ... bounded per node"): a window of more
// changes than a delta may carry is dropped whole (the peers pull the
// table instead), and the next window starts after the gap; a receiver
// buffers at most maxPendingDeltas deltas of one origin.
func TestDeltaQueuesAreBounded(t *testing.T) {
	t.Parallel()
	x := newSender(t)
	for i := range maxOutDelta + 1 {
		if err := x.Upsert(entry(fmt.Sprintf("u%d", i), "", "tty", principal.Online)); err != nil {
			t.Fatal(err)
		}
	}
	if msgs := sendAll(x, 1400); len(msgs) != 0 || x.g.outDropped.Load() != 1 {
		t.Fatalf("overfull window: %d deltas sent, %d windows dropped; want 0 and 1", len(msgs), x.g.outDropped.Load())
	}
	if err := x.Upsert(entry("late", "", "tty", principal.Online)); err != nil {
		t.Fatal(err)
	}
	msgs := sendAll(x, 1400)
	if len(msgs) != 1 {
		t.Fatalf("%d deltas after the dropped window, want 1", len(msgs))
	}
	m, err := openMessage(msgs[0])
	if err != nil {
		t.Fatal(err)
	}
	if want := uint64(maxOutDelta + 1); m.base != want || m.ver.seq != want+1 {
		t.Fatalf("delta after the dropped window is (%d, %d], want (%d, %d]", m.base, m.ver.seq, want, want+1)
	}

	d, _ := newUnstarted(t)
	for i := range uint64(3 * maxPendingDeltas) {
		d.g.NotifyMsg(deltaMsg(7, 10+i, 11+i, up(fmt.Sprintf("u%d", i), principal.Online)))
	}
	d.g.mu.Lock()
	n := len(d.g.peers["x"].deltas)
	d.g.mu.Unlock()
	if n != maxPendingDeltas {
		t.Fatalf("%d deltas buffered for x, want the bound %d", n, maxPendingDeltas)
	}
}

// Rule (issue 22: "churn ... visible everywhere"): with real memberlist, a
// principal changed many times in a row ends in its last state on every
// node, and a burst larger than a delta window (dropped, then repaired by
// pulls) reaches every node whole.
func TestChurnAndBurstsReachEveryNode(t *testing.T) {
	t.Parallel()
	nodes := startCluster(t, 3, nil)
	src := nodes[0]
	states := []principal.State{principal.Online, principal.Idle, principal.Busy, principal.Away}
	for i := range 41 {
		if i%5 == 4 {
			src.Remove("flip", "tty")
			continue
		}
		if err := src.Upsert(entry("flip", "", "tty", states[i%len(states)])); err != nil {
			t.Fatal(err)
		}
	}
	if err := src.Upsert(entry("flip", "", "tty", principal.Busy)); err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes[1:] {
		waitLookup(t, n, "flip", entry("flip", "n0", "tty", principal.Busy))
	}
	const burst = maxOutDelta + 100
	for i := range burst {
		if err := src.Upsert(entry(fmt.Sprintf("b%d", i), "", "tty", principal.Online)); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range nodes[1:] {
		waitfor.True(t, 20*time.Second, n.Name()+" holds the burst", func() bool {
			return len(n.ByNode("n0")) == burst+1
		})
	}
	if src.g.deltasSent.Load() == 0 {
		t.Fatal("no deltas sent")
	}
}

// Rule: each window goes out widened by the window before it, so a
// receiver that lost the earlier delta still reaches the latest state from
// the later one; a window that does not continue the previous one (after a
// dropped window) is sent alone, so nobody skips the gap.
func TestWidenedDeltaRepairsALostOne(t *testing.T) {
	t.Parallel()
	x := newSender(t)
	take := func() window {
		var w window
		w.epoch, w.base, w.to, w.items = x.g.takeOut()
		return w
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(x.Upsert(entry("alice", "", "tty", principal.Online)))
	must(x.Upsert(entry("bob", "", "tty", principal.Online)))
	first := take()
	must(x.Upsert(entry("alice", "", "tty", principal.Busy)))
	must(x.Upsert(entry("carol", "", "tty", principal.Idle)))
	second := take()

	wide := withPrevious(first, second)
	if wide.base != first.base || wide.to != second.to || len(wide.items) != 3 {
		t.Fatalf("widened window (%d, %d] with %d items, want (%d, %d] with 3 (alice once)", wide.base, wide.to, len(wide.items), first.base, second.to)
	}
	d, _ := newUnstarted(t)
	// The first window's delta is lost; only the widened second arrives.
	for _, b := range x.g.encodeDeltas(wide.epoch, wide.base, wide.to, wide.items, 1400) {
		d.g.NotifyMsg(b)
	}
	if got, want := formatEntries(sortedByUser(d.ByNode("x"))), formatEntries(sortedByUser(x.ByNode("x"))); got != want {
		t.Fatalf("receiver holds %s, want %s", got, want)
	}

	gap := window{epoch: second.epoch, base: second.to + 1, to: second.to + 2, items: second.items[:1]}
	if got := withPrevious(second, gap); got.base != gap.base || len(got.items) != 1 {
		t.Fatalf("a window after a gap was widened to (%d, %d]", got.base, got.to)
	}
}
