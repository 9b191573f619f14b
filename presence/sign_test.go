package presence

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"testing"

	"github.com/msprelay/msprelay/principal"
)

// Issue 12: "Even with the key, a member can send a presence table in
// another node's name and freeze that node's entries everywhere." A member
// (n1, holding the gossip key) now tries every way to speak for n0; n0's
// entries stay n0's everywhere and n0's own later changes still arrive.
func TestNoSpeakingForAnotherNode(t *testing.T) {
	t.Parallel()
	nodes := startCluster(t, 3, nil)
	victim, rogue, witness := nodes[0], nodes[1], nodes[2]
	if err := victim.Upsert(entry("alice", "", "tty", principal.Online)); err != nil {
		t.Fatal(err)
	}
	waitLookup(t, witness, "alice", entry("alice", "n0", "tty", principal.Online))
	v, _, _ := victim.tableInfo("n0")
	mallory := entry("mallory", "n0", "tty", principal.Online)
	ahead := version{v.epoch, v.seq + 100}

	forged := []struct {
		name string
		msg  []byte
	}{
		{"a table in n0's name signed by n1", seal(rogue.g.key, encodeTable(wireTable{origin: "n0", ver: ahead, entries: []principal.Entry{mallory}}))},
		{"a change in n0's name signed by n1", seal(rogue.g.key, encodeChange("n0", version{v.epoch, v.seq + 1}, change{Op: opUpsert, Entry: mallory}))},
		{"a change removing alice, signed by n1", seal(rogue.g.key, encodeChange("n0", version{v.epoch, v.seq + 1}, change{Op: opRemove, Entry: principal.Entry{User: "alice", Term: "tty"}}))},
		{"a delta in n0's name signed by n1", seal(rogue.g.key, encodeDelta("n0", v.epoch, v.seq, v.seq+1, 1, appendChange(nil, &change{Op: opUpsert, Entry: mallory})))},
		{"a delta removing alice, signed by n1", seal(rogue.g.key, encodeDelta("n0", v.epoch, v.seq, v.seq+1, 1, appendChange(nil, &change{Op: opRemove, Entry: principal.Entry{User: "alice", Term: "tty"}})))},
		{"an unsigned table (the old format)", encodeTable(wireTable{origin: "n0", ver: ahead, entries: []principal.Entry{mallory}})},
		{"n0's signature moved onto another table", append(encodeTable(wireTable{origin: "n0", ver: ahead, entries: []principal.Entry{mallory}}),
			ed25519.Sign(victim.g.key, encodeTable(wireTable{origin: "n0", ver: v, entries: []principal.Entry{entry("alice", "n0", "tty", principal.Online)}}))...)},
	}
	ml := rogue.g.memberlist()
	// Copies made under g.mu: memberlist's own Node values change under it.
	rogue.g.mu.Lock()
	target := rogue.g.peers[witness.Name()].node
	rogue.g.mu.Unlock()
	for _, f := range forged {
		// Over memberlist's reliable channel, as a pull reply would come,
		// and as a broadcast that every member relays.
		if err := ml.SendReliable(&target, f.msg); err != nil {
			t.Fatalf("%s: send: %v", f.name, err)
		}
		rogue.g.queue(bytes.Clone(f.msg))
		// And as push-pull state, which memberlist hands to MergeRemoteState.
		state := seal(rogue.g.key, encodeState([]wireTable{{origin: "n0", ver: ahead, entries: []principal.Entry{mallory}}}))
		witness.g.MergeRemoteState(state, false)
	}
	// A member announcing its own key for n0's current boot is ignored, so
	// the forgeries stay unverifiable after it too.
	witness.g.mu.Lock()
	forgedMeta := witness.g.peers["n0"].node
	witness.g.mu.Unlock()
	forgedMeta.Meta = encodeMeta(digest{ver: ahead, count: 1}, rogue.g.key.Public().(ed25519.PublicKey))
	witness.g.NotifyUpdate(&forgedMeta)
	witness.g.NotifyMsg(forged[0].msg)

	// n0 changes again; once that reached every node, so had the forgeries.
	if err := victim.Upsert(entry("bob", "", "tty", principal.Busy)); err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		waitLookup(t, n, "bob", entry("bob", "n0", "tty", principal.Busy))
		if got := n.Lookup("mallory"); len(got) != 0 {
			t.Errorf("%s: Lookup(mallory) = %s, want none", n.Name(), formatEntries(got))
		}
		if got := n.Lookup("alice"); len(got) != 1 {
			t.Errorf("%s: Lookup(alice) = %s, want n0's entry", n.Name(), formatEntries(got))
		}
	}
	witness.g.mu.Lock()
	key := witness.g.peers["n0"].key
	witness.g.mu.Unlock()
	if !key.Equal(victim.g.key.Public()) {
		t.Error("witness replaced n0's key with the one a member announced for n0's boot")
	}
}

func TestOpenMessageRules(t *testing.T) {
	t.Parallel()
	key := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{1}, ed25519.SeedSize))
	tbl := wireTable{origin: "n0", ver: version{1, 1}, entries: []principal.Entry{entry("a", "n0", "tty", principal.Online)}}
	for _, tc := range []struct {
		name string
		in   []byte
		ok   bool
	}{
		{"a signed table", seal(key, encodeTable(tbl)), true},
		{"a pull needs no signature", encodePull("n1"), true},
		{"a table too short to hold a signature", encodeTable(wireTable{origin: "n0"})[:5], false},
		{"a state must hold only its sender's table", seal(key, encodeState([]wireTable{tbl, {origin: "n1", ver: version{1, 1}}})), false},
		{"an empty message", nil, false},
	} {
		_, err := openMessage(tc.in)
		if tc.ok != (err == nil) || err != nil && !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
}
