package switchboard_test

import (
	"context"
	"slices"
	"testing"

	"github.com/msprelay/msprelay/switchboard"
)

// Issue 12: "Two different messages with the same SENDER, SENDER-TERM and
// COOKIE ... get '+... (already delivered)' and the second is never
// delivered." The id Send goes by holds the recipient, her terminal and the
// text; only the same message again is a repeat.
func TestOneCookieOnDifferentMessagesIsNoRepeat(t *testing.T) {
	t.Parallel()
	sb := newBoard(t, "n1")
	boxes := setup(t, sb, []signin{{user: "alice", term: "pts/1"}, {user: "bob", term: "pts/2"}, {user: "bob", term: "pts/3"}})
	mk := func(recipient, term, text string) *switchboard.Delivery {
		return &switchboard.Delivery{Recipient: recipient, RecipTerm: term, Sender: "cron", Cookie: "1700000000", Text: text,
			Origin: switchboard.Origin{Addr: "192.0.2.1:9"}}
	}
	for _, tc := range []struct {
		d    *switchboard.Delivery
		want string
	}{
		{mk("alice", "", "backup done"), "delivered to alice at pts/1 on n1"},
		{mk("bob", "pts/2", "backup done"), "delivered to bob at pts/2 on n1"},
		{mk("bob", "pts/3", "backup done"), "delivered to bob at pts/3 on n1"},
		{mk("alice", "", "disk full"), "delivered to alice at pts/1 on n1"},
		{mk("ALICE", "", "disk full"), "delivered to alice at pts/1 on n1 (already delivered)"},
		{mk("bob", "PTS/2", "backup done"), "delivered to bob at pts/2 on n1 (already delivered)"},
	} {
		o := sb.Send(context.Background(), tc.d)
		if !o.Delivered() || o.Summary() != tc.want {
			t.Fatalf("to %s %s %q: %v %q, want %q", tc.d.Recipient, tc.d.RecipTerm, tc.d.Text, o.Delivered(), o.Summary(), tc.want)
		}
	}
	for key, want := range map[string][]string{
		"alice/pts/1": {"backup done", "disk full"},
		"bob/pts/2":   {"backup done"},
		"bob/pts/3":   {"backup done"},
	} {
		if got := boxes[key].texts(); !slices.Equal(got, want) {
			t.Errorf("%s got %q, want %q", key, got, want)
		}
	}
}

// Ids cross nodes, so MessageKey is a stable function of its parts (no
// per-process seed) and tells every part apart. The value below is
// SHA-256 over the NUL-ended parts, cut to 12 octets, computed outside Go.
func TestMessageKeyIsStableAndTellsPartsApart(t *testing.T) {
	t.Parallel()
	id := switchboard.MessageID("bob", "tty1", "c1", "192.0.2.1:9")
	k := switchboard.MessageKey(id, "alice", "", "hi")
	if k != "1bb623d0c6098795a323d165" {
		// A different value breaks repeats across a rolling upgrade
		// and between nodes; change it only on purpose.
		t.Errorf("MessageKey = %s, the value every node must compute", k)
	}
	for _, other := range []string{
		switchboard.MessageKey(id, "bob", "", "hi"),
		switchboard.MessageKey(id, "alice", "tty1", "hi"),
		switchboard.MessageKey(id, "alice", "", "hi!"),
		switchboard.MessageKey(id, "alicehi", "", ""),
		switchboard.MessageKey(switchboard.MessageID("bob", "tty1", "c1", "192.0.2.1:10"), "alice", "", "hi"),
	} {
		if other == k {
			t.Errorf("a different message shares key %s", k)
		}
	}
	if switchboard.MessageKey(id, "ALICE", "", "hi") != k {
		t.Error("RECIPIENT compares case-insensitively; the key must too")
	}
	if switchboard.MessageKey("", "alice", "", "hi") != "" {
		t.Error("no id, no key")
	}
}

// The MSP ingress computes a message's key in one step; it must be the
// very key Send derives from the sender-side id, or a repeat entering
// through another node (or an older one) would not be recognised.
func TestFullMessageKeyIsMessageKeyOfMessageID(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ sender, sterm, cookie, addr, rcpt, rterm, text string }{
		{"alice", "pts/1", "c1", "192.0.2.1", "bob", "", "hi"},
		{"ALICE", "PTS/1", "C1", "192.0.2.1:4000", "Bob@n2", "Tty\xe1", "caf\xe9\r\n"},
		{"", "", "", "session", "", "*", ""},
	} {
		want := switchboard.MessageKey(switchboard.MessageID(c.sender, c.sterm, c.cookie, c.addr), c.rcpt, c.rterm, c.text)
		if got := switchboard.FullMessageKey(c.sender, c.sterm, c.cookie, c.addr, c.rcpt, c.rterm, c.text); got != want {
			t.Errorf("FullMessageKey%+v = %s, want %s", c, got, want)
		}
	}
}

// Issue 19: "one Send entry point". Send keys a delivery that comes
// without an id from its own parts and origin address (FullMessageKey),
// and trusts an id the ingress made, which may know better which address
// identifies a retransmission (MSP over TCP: the host only).
func TestOneSendKeysOnlyWhatHasNoKey(t *testing.T) {
	t.Parallel()
	sb := newBoard(t, "n1")
	setup(t, sb, []signin{{user: "alice", term: "pts/1"}})
	d := &switchboard.Delivery{Recipient: "alice", Sender: "bob", SenderTerm: "tty1", Cookie: "c1", Text: "hi",
		Origin: switchboard.Origin{Addr: "192.0.2.1:9"}}
	sb.Send(context.Background(), d)
	if want := switchboard.FullMessageKey("bob", "tty1", "c1", "192.0.2.1:9", "alice", "", "hi"); d.ID != want {
		t.Errorf("an empty id became %q, want %q", d.ID, want)
	}
	given := switchboard.FullMessageKey("bob", "tty1", "c1", "192.0.2.1", "alice", "", "hi")
	d = &switchboard.Delivery{ID: given, Recipient: "alice", Sender: "bob", SenderTerm: "tty1", Cookie: "c1", Text: "hi",
		Origin: switchboard.Origin{Addr: "192.0.2.1:10"}}
	sb.Send(context.Background(), d)
	if d.ID != given {
		t.Errorf("the ingress's key %q became %q", given, d.ID)
	}
}
