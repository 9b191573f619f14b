package mailbox_test

import (
	"testing"
	"time"

	"github.com/msprelay/msprelay/identity"
	"github.com/msprelay/msprelay/internal/waitfor"
	"github.com/msprelay/msprelay/mailbox"
	"github.com/msprelay/msprelay/principal"
	"github.com/msprelay/msprelay/switchboard"
)

// Issue 18: the identity "travels in the federation frame, the mailbox
// entry ...": a queued message reaches its recipient on another node with
// the identity its ingress made, unchanged, the vouching node included,
// when NATS binds each node to its own subjects (per-node credentials:
// PeersAuthenticated; without them TestNodeCredentialsCannotForgeOrBlockAnotherNodesMailbox shows it drains
// unverified).
func TestMailboxKeepsTheSenderIdentity(t *testing.T) {
	t.Parallel()
	st := newStore(t)
	bound := func(_ *switchboard.Config, m *mailbox.Config) { m.PeersAuthenticated = true }
	n1, n2 := st.board("n1", bound), st.board("n2", bound)
	known(t, n2, "alice")
	for _, id := range []identity.Identity{
		{User: "mallory", Claimed: "bob", Method: identity.Kernel, Node: "n1", Source: "127.0.0.1:9"},
		{User: "bob", Claimed: "bob", Method: identity.Signature, Node: "n1", Source: "192.0.2.1:9"},
		{Claimed: "bob", Node: "n1", Source: "192.0.2.1:9"},
	} {
		d := msg("alice", "from "+id.Method.String())
		d.Origin.Sender = id
		if ok, sum := send(t, n1, d); !ok || sum != "queued for alice" {
			t.Fatalf("%+v: %v %q, want +queued", id, ok, sum)
		}
	}
	box := &ackBox{ack: true}
	if _, err := n2.SignIn("alice", "pts/3", principal.Online, box); err != nil {
		t.Fatal(err)
	}
	waitfor.True(t, 10*time.Second, "3 queued messages", func() bool { return len(box.texts()) >= 3 })
	box.mu.Lock()
	defer box.mu.Unlock()
	want := map[string]identity.Identity{
		"from kernel":    {User: "mallory", Claimed: "bob", Method: identity.Kernel, Node: "n1", Source: "127.0.0.1:9"},
		"from signature": {User: "bob", Claimed: "bob", Method: identity.Signature, Node: "n1", Source: "192.0.2.1:9"},
		"from none":      {Claimed: "bob", Node: "n1", Source: "192.0.2.1:9"},
	}
	for _, d := range box.got {
		if d.Origin.Sender != want[d.Text] {
			t.Errorf("%q arrived with %+v, want %+v", d.Text, d.Origin.Sender, want[d.Text])
		}
	}

}
