package conversation_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/msprelay/msprelay/conversation"
	"github.com/msprelay/msprelay/identity"
)

// Rule (issue 18, "Rooms believe any SENDER"): "MSP #room posts are
// accepted only from verified members (-#ops: members only otherwise)";
// "every room message carries the identity", live and in the history.
func TestPostOnlyFromVerifiedMembers(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	n1 := c.node("n1", nil)
	a, as, _, _ := join(t, n1, "ops", "alice", true)
	_, bs, _, _ := join(t, n1, "ops", "bob", false)
	as.nextKind(t, conversation.KindJoin)
	from := conversation.Member{User: "alice", Node: "n1", Term: "pts/7"}
	for _, tc := range []struct {
		name   string
		sender identity.Identity
	}{
		{"unauthenticated MSP naming alice pts/7", identity.Identity{Claimed: "alice", Node: "n1", Source: "192.0.2.7:4000"}},
		{"a local user claiming alice", identity.Identity{User: "mallory", Claimed: "alice", Method: identity.Kernel, Node: "n1", Source: "127.0.0.1:4000"}},
		{"a verified non-member", identity.Identity{User: "mallory", Method: identity.Kernel, Node: "n1", Source: "127.0.0.1:4000"}},
		{"a trusted-network name is not proved", identity.Identity{User: "alice", Claimed: "alice", Method: identity.Trust, Node: "n1", Source: "session"}},
	} {
		if _, err := n1.m.Post(ctx(t), "ops", from, tc.sender, "id-"+tc.name, "forged"); !errors.Is(err, conversation.ErrMembersOnly) {
			t.Errorf("%s: Post = %v, want ErrMembersOnly", tc.name, err)
		}
	}
	// alice herself, identified by the kernel, is a verified member.
	kernel := identity.Identity{User: "alice", Claimed: "alice", Method: identity.Kernel, Node: "n1", Source: "127.0.0.1:5000"}
	if n, err := n1.m.Post(ctx(t), "ops", from, kernel, "id-ok", "from my shell"); err != nil || n != 2 {
		t.Fatalf("verified member's post: %d, %v", n, err)
	}
	for _, s := range []*sink{as, bs} {
		ev := s.nextKind(t, conversation.KindMessage)
		if ev.Text != "from my shell" || !ev.Sender.Verified() || ev.Sender.Method != identity.Kernel || ev.Sender.Source != "127.0.0.1:5000" {
			t.Fatalf("got %+v, want the verified post and nothing forged before it", ev)
		}
	}
	// A session member's message carries her session's identity.
	if _, err := a.Send(ctx(t), conversation.KindMessage, "hi bob"); err != nil {
		t.Fatal(err)
	}
	if ev := bs.nextKind(t, conversation.KindMessage); ev.Text != "hi bob" || !ev.Sender.Verified() || ev.Sender.Method != identity.PeerCred {
		t.Fatalf("bob got %+v", ev)
	}
	// The history keeps the identities.
	_, _, _, hist := join(t, n1, "ops", "carol", false)
	if len(hist) != 2 || !hist[0].Sender.Verified() || hist[0].Sender.Method != identity.Kernel || hist[1].Sender.Method != identity.PeerCred {
		t.Fatalf("history %+v", hist)
	}
	// A trust-method session is a member, and its lines say unverified.
	ts := newSink()
	tm, _, _, err := n1.m.Join(ctx(t), "ops", conversation.Identity{User: "dave", Sender: identity.Identity{User: "dave", Claimed: "dave", Method: identity.Trust, Node: "n1", Source: "session"}}, ts, conversation.JoinExisting)
	if err != nil {
		t.Fatal(err)
	}
	tm.Activate()
	if _, err := tm.Send(ctx(t), conversation.KindMessage, "trust me"); err != nil {
		t.Fatal(err)
	}
	if ev := bs.nextKind(t, conversation.KindMessage); ev.Text != "trust me" || ev.Sender.Verified() || ev.Sender.Method != identity.Trust {
		t.Fatalf("bob got %+v", ev)
	}
}

// Rule (issue 18, "One user fills the rooms"): "258 sessions created 4096
// rooms in 9 s: every user then got 234 ... full"; "64 sessions of one
// user took every member slot of #ops". Per-user caps: rooms one user has
// open, member slots one user holds in one room.
func TestOneUserCannotFillTheRooms(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	const table = 64 // the cluster's table, small so that one user could fill it
	n1 := c.node("n1", func(cfg *conversation.Config) { cfg.MaxConversations = table })
	n2 := c.node("n2", func(cfg *conversation.Config) { cfg.MaxConversations = table })
	created := 0
	for i := range 258 { // one session each, alternating nodes
		n := []*node{n1, n2}[i%2]
		ms, _, _, err := n.m.Join(ctx(t), fmt.Sprintf("spam%d", i), conversation.Identity{User: "mallory", Sender: verified("mallory", n.m.Node())}, newSink(), conversation.JoinOrCreate)
		switch {
		case err == nil:
			created++
			if err := ms.Leave(ctx(t)); err != nil { // leaves it empty: it stays until it expires
				t.Fatal(err)
			}
		case !errors.Is(err, conversation.ErrTooMany):
			t.Fatalf("creation %d: %v, want ErrTooMany", i, err)
		}
	}
	// Serialised per user on each node; two nodes may each pass once.
	if created < conversation.DefaultMaxOpenPerUser || created > conversation.DefaultMaxOpenPerUser+1 {
		t.Fatalf("mallory created %d rooms, want %d", created, conversation.DefaultMaxOpenPerUser)
	}
	if _, _, _, err := n2.m.Join(ctx(t), "lunch", conversation.Identity{User: "alice"}, newSink(), conversation.JoinOrCreate); err != nil {
		t.Fatalf("alice creates a room after mallory's flood: %v", err)
	}

	held := 0
	for i := range 258 {
		n := []*node{n1, n2}[i%2]
		_, _, _, err := n.m.Join(ctx(t), "lunch", conversation.Identity{User: "mallory", Term: fmt.Sprintf("pts/%d", i)}, newSink(), conversation.JoinExisting)
		switch {
		case err == nil:
			held++
		case !errors.Is(err, conversation.ErrTooMany):
			t.Fatalf("join %d: %v, want ErrTooMany", i, err)
		}
	}
	if held < conversation.DefaultMaxSlotsPerUser || held > conversation.DefaultMaxSlotsPerUser+1 {
		t.Fatalf("mallory holds %d places in lunch, want %d", held, conversation.DefaultMaxSlotsPerUser)
	}
	if _, _, _, err := n1.m.Join(ctx(t), "lunch", conversation.Identity{User: "bob"}, newSink(), conversation.JoinExisting); err != nil {
		t.Fatalf("bob joins after mallory's flood: %v", err)
	}
}

// Rule (issue 18): "Private (invite-only) rooms, and history only for
// members": the creator owns it, only she invites, only invited users
// join, read the history or list the members.
func TestPrivateRoomAdmitsOnlyInvited(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	n1 := c.node("n1", nil)
	as := newSink()
	a, _, _, err := n1.m.Join(ctx(t), "secret", conversation.Identity{User: "alice", Sender: verified("alice", "n1")}, as, conversation.CreatePrivate)
	if err != nil {
		t.Fatal(err)
	}
	a.Activate()
	if _, err := a.Send(ctx(t), conversation.KindMessage, "the plan"); err != nil {
		t.Fatal(err)
	}
	bob := conversation.Identity{User: "bob", Sender: verified("bob", "n1")}
	if _, _, hist, err := n1.m.Join(ctx(t), "secret", bob, newSink(), conversation.JoinExisting); !errors.Is(err, conversation.ErrNotInvited) || hist != nil {
		t.Fatalf("bob joins uninvited: %v (history %v), want ErrNotInvited", err, hist)
	}
	if _, _, _, err := n1.m.Join(ctx(t), "secret", bob, newSink(), conversation.JoinOrCreate); !errors.Is(err, conversation.ErrNotInvited) {
		t.Fatalf("bob's XFR on the private name: %v, want ErrNotInvited", err)
	}
	if _, err := n1.m.RosterFor(ctx(t), "secret", "bob"); !errors.Is(err, conversation.ErrNotInvited) {
		t.Fatalf("bob lists the members: %v, want ErrNotInvited", err)
	}
	defer n1.m.Attach("bob", newSink())()
	if _, err := a.Invite(ctx(t), "bob"); err != nil {
		t.Fatalf("alice invites bob: %v", err)
	}
	bs := newSink()
	b, _, hist, err := n1.m.Join(ctx(t), "secret", bob, bs, conversation.JoinExisting)
	if err != nil || len(hist) != 1 || hist[0].Text != "the plan" {
		t.Fatalf("invited bob joins: %v, history %+v", err, hist)
	}
	b.Activate()
	if _, err := b.Invite(ctx(t), "carol"); !errors.Is(err, conversation.ErrNotOwner) {
		t.Fatalf("bob invites carol: %v, want ErrNotOwner", err)
	}
	if _, _, _, err := n1.m.Join(ctx(t), "secret", conversation.Identity{User: "carol"}, newSink(), conversation.JoinExisting); !errors.Is(err, conversation.ErrNotInvited) {
		t.Fatalf("carol joins: %v, want ErrNotInvited", err)
	}
}

// Rule (issue 18): "empty rooms expire in minutes", not an hour.
func TestDefaultIdleIsMinutes(t *testing.T) {
	t.Parallel()
	if conversation.DefaultIdle > 10*time.Minute {
		t.Fatalf("DefaultIdle %v, want minutes", conversation.DefaultIdle)
	}
}
