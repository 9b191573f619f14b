package presence

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"

	"github.com/hashicorp/memberlist"
	"github.com/msprelay/msprelay/principal"
)

// newUnstarted builds a gossiping Directory without starting memberlist, and
// makes node x (boot epoch 7) a live member, so the table logic can be fed
// messages directly.
func newUnstarted(t *testing.T) (*Directory, *Subscription) {
	t.Helper()
	d, err := New(Config{Name: "me", Logger: testLogger(), Gossip: GossipConfig{BindAddr: "127.0.0.1:0", Profile: "local"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	d.g.NotifyJoin(&memberlist.Node{Name: "x", Addr: net.IPv4(127, 0, 0, 1), Port: 1, Meta: encodeMeta(digest{ver: version{7, 0}}, xKey().Public().(ed25519.PublicKey))})
	return d, d.Subscribe()
}

// xKey is node x's signing key in these tests.
func xKey() ed25519.PrivateKey {
	return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize))
}

// xSigned is msg as x sends it: signed with x's key.
func xSigned(msg []byte) []byte { return seal(xKey(), msg) }

func upsertMsg(epoch, seq uint64, user string) []byte {
	return xSigned(encodeChange("x", version{epoch, seq}, change{Op: opUpsert, Entry: entry(user, "x", "tty", principal.Online)}))
}

func removeMsg(epoch, seq uint64, user string) []byte {
	return xSigned(encodeChange("x", version{epoch, seq}, change{Op: opRemove, Entry: principal.Entry{User: user, Term: "tty"}}))
}

// drain renders the events delivered so far, e.g. "+a -b".
func drain(s *Subscription) string {
	var out []string
	for {
		select {
		case ev := <-s.C:
			sign := "+"
			if ev.Type == EventRemove {
				sign = "-"
			}
			out = append(out, sign+ev.Entry.User)
		default:
			return strings.Join(out, " ")
		}
	}
}

// Rule: changes are applied in (epoch, seq) order whatever order they
// arrive in; each is re-queued for relay once, on first sight; duplicates
// and earlier boots are dropped; a new boot replaces the old table.
func TestChangesApplyInOrderOnce(t *testing.T) {
	t.Parallel()
	steps := []struct {
		name       string
		msg        []byte
		wantEvents string
		wantVer    version
		wantQueued int
		wantWant   bool // a pull is pending
	}{
		{"early arrival waits", upsertMsg(7, 2, "b"), "", version{}, 1, true},
		{"early arrival, twice", upsertMsg(7, 3, "c"), "", version{}, 2, true},
		{"duplicate of a waiting change", upsertMsg(7, 2, "b"), "", version{}, 2, true},
		{"gap filled: all apply", upsertMsg(7, 1, "a"), "+a +b +c", version{7, 3}, 3, false},
		{"duplicate of an applied change", upsertMsg(7, 1, "a"), "", version{7, 3}, 3, false},
		{"next change", removeMsg(7, 4, "b"), "-b", version{7, 4}, 4, false},
		{"earlier boot", upsertMsg(6, 9, "old"), "", version{7, 4}, 4, false},
		{"new boot starts empty", upsertMsg(8, 1, "new"), "-a -c +new", version{8, 1}, 5, false},
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
		if got := d.g.q.NumQueued(); got != s.wantQueued {
			t.Fatalf("%s: %d queued for relay, want %d", s.name, got, s.wantQueued)
		}
		d.g.mu.Lock()
		behind := d.g.behind("x", d.g.peers["x"])
		d.g.mu.Unlock()
		if behind != s.wantWant {
			t.Fatalf("%s: behind = %v, want %v", s.name, behind, s.wantWant)
		}
	}
}

// Rule: a full table replaces the held one and emits exactly the
// difference; an older table is ignored.
func TestTableReplacementEmitsDifference(t *testing.T) {
	t.Parallel()
	d, sub := newUnstarted(t)
	table := func(seq uint64, users ...string) []byte {
		wt := wireTable{origin: "x", ver: version{7, seq}}
		for _, u := range users {
			wt.entries = append(wt.entries, entry(u, "x", "tty", principal.Online))
		}
		return xSigned(encodeTable(wt))
	}
	busyB := wireTable{origin: "x", ver: version{7, 6}, entries: []principal.Entry{entry("a", "x", "tty", principal.Online), entry("b", "x", "tty", principal.Busy)}}
	steps := []struct {
		name string
		msg  []byte
		want string
	}{
		{"first table", table(3, "a", "b", "c"), "+a +b +c"},
		{"c left, d arrived", table(5, "a", "b", "d"), "-c +d"},
		{"older table ignored", table(4, "z"), ""},
		{"b changed state, d left", xSigned(encodeTable(busyB)), "-d +b"},
		{"same version again", xSigned(encodeTable(busyB)), ""},
	}
	for _, s := range steps {
		d.g.NotifyMsg(s.msg)
		if got := drain(sub); got != s.want {
			t.Fatalf("%s: events %q, want %q", s.name, got, s.want)
		}
	}
	if got := formatEntries(d.ByNode("x")); got != formatEntries([]principal.Entry{busyB.entries[1], busyB.entries[0]}) &&
		got != formatEntries(busyB.entries) {
		t.Fatalf("ByNode(x) = %s", got)
	}
}

// Rule: a member's newer digest makes us pull; a matching one does not.
func TestDigestDrivesPulls(t *testing.T) {
	t.Parallel()
	d, _ := newUnstarted(t)
	d.g.NotifyMsg(xSigned(encodeTable(wireTable{origin: "x", ver: version{7, 2}, entries: []principal.Entry{entry("a", "x", "tty", principal.Online)}})))
	tests := []struct {
		name string
		dg   digest
		want bool
	}{
		{"same version and count", digest{version{7, 2}, 1}, false},
		{"newer seq", digest{version{7, 3}, 1}, true},
		{"same version, other count", digest{version{7, 2}, 4}, true},
		{"new boot", digest{version{9, 0}, 0}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := d.g
			g.mu.Lock()
			p := g.peers["x"]
			p.digest, p.want = tt.dg, tt.dg.ver
			got := g.behind("x", p)
			p.digest, p.want = digest{version{7, 0}, 0}, version{7, 0}
			g.mu.Unlock()
			if got != tt.want {
				t.Fatalf("behind = %v, want %v", got, tt.want)
			}
		})
	}
}

// Rule: New validates the gossip configuration before anything starts.
func TestGossipConfigValidation(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		g    GossipConfig
		want string // substring of the error; "" means valid
	}{
		{"lan default", GossipConfig{BindAddr: "127.0.0.1:0"}, ""},
		{"wan", GossipConfig{BindAddr: "127.0.0.1:7946", Profile: "wan"}, ""},
		{"empty host binds all", GossipConfig{BindAddr: ":7946", Profile: "local"}, ""},
		{"unknown profile", GossipConfig{BindAddr: "127.0.0.1:0", Profile: "moon"}, "profile"},
		{"host name bind", GossipConfig{BindAddr: "localhost:0"}, "not an IP"},
		{"missing port", GossipConfig{BindAddr: "127.0.0.1"}, "bind address"},
		{"port out of range", GossipConfig{BindAddr: "127.0.0.1:70000"}, "bind address"},
		{"bad advertise", GossipConfig{BindAddr: "127.0.0.1:0", AdvertiseAddr: ":1"}, "advertise"},
		{"bad seed", GossipConfig{BindAddr: "127.0.0.1:0", Join: []string{"nohostport"}}, "seed"},
		{"key 16", GossipConfig{BindAddr: "127.0.0.1:0", SecretKey: make([]byte, 16)}, ""},
		{"key 24", GossipConfig{BindAddr: "127.0.0.1:0", SecretKey: make([]byte, 24)}, ""},
		{"key 32", GossipConfig{BindAddr: "127.0.0.1:0", SecretKey: make([]byte, 32)}, ""},
		{"key 20", GossipConfig{BindAddr: "127.0.0.1:0", SecretKey: make([]byte, 20)}, "20 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := New(Config{Name: "n", Logger: testLogger(), Gossip: tt.g})
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("New: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("New = %v, want an error containing %q", err, tt.want)
			}
			if d != nil {
				d.Close()
			}
		})
	}
}

// Rule: an entry may carry at most MaxAliases aliases, so that every entry
// a node accepts can be gossiped to its peers.
func TestUpsertLimitsAliases(t *testing.T) {
	t.Parallel()
	d, err := New(Config{Name: "n", Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	aliases := func(n int) []string {
		var out []string
		for i := range n {
			out = append(out, fmt.Sprintf("a%d", i))
		}
		return out
	}
	if err := d.Upsert(principal.Entry{User: "u", Term: "t", State: principal.Online, Aliases: aliases(MaxAliases)}); err != nil {
		t.Fatalf("Upsert with %d aliases: %v", MaxAliases, err)
	}
	if err := d.Upsert(principal.Entry{User: "u", Term: "t", State: principal.Online, Aliases: aliases(MaxAliases + 1)}); !errors.Is(err, principal.ErrBadUser) {
		t.Fatalf("Upsert with %d aliases = %v, want ErrBadUser", MaxAliases+1, err)
	}
}

// Rule: a directory stops at most once; Run after Close reports ErrClosed,
// and Close before Run is fine.
func TestRunAfterClose(t *testing.T) {
	t.Parallel()
	d, err := New(Config{Name: "n", Logger: testLogger(), Gossip: GossipConfig{BindAddr: "127.0.0.1:0", Profile: "local"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := d.Run(t.Context()); !errors.Is(err, ErrClosed) {
		t.Fatalf("Run after Close = %v, want ErrClosed", err)
	}
	if got := d.GossipAddr(); got != "" {
		t.Fatalf("GossipAddr after Close = %q", got)
	}
}
