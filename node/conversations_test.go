package node_test

import (
	"context"
	"testing"
	"time"

	"github.com/msprelay/msprelay/internal/testcluster"
	"github.com/msprelay/msprelay/msp"
	"github.com/msprelay/msprelay/node"
	"github.com/msprelay/msprelay/principal"
	"github.com/msprelay/msprelay/sessionclient"
	"github.com/msprelay/msprelay/sessionproto"
)

func nextConv(t *testing.T, cl *sessionclient.Client, typ string) sessionproto.ConvEvent {
	t.Helper()
	return testcluster.NextConv(t, cl, typ, 10*time.Second)
}

// "an MSP message whose RECIPIENT is #NAME goes to every member of
// conversation NAME, wherever they are; the reply says how many got it ...;
// an unknown conversation gets -#ops: no such conversation; UDP follows the
// RFC reply rules as for users." The operator opened #ops's bridge
// (--room-open-bridge), so an unauthenticated monitor may post; its lines
// are marked unverified (issue 18).
func TestMSPToConversationReachesEveryMember(t *testing.T) {
	t.Parallel()
	c := testcluster.Start(t, 4, testcluster.Options{Configure: func(_ int, cfg *node.Config) { cfg.RoomOpenBridge = []string{"ops"} }})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	users := []string{"alice", "bob", "carol"}
	var cls []*sessionclient.Client
	for i, u := range users {
		cl := c.SignIn(i, u, "pts/1", principal.Online)
		cl.Conversations()
		var err error
		if i == 0 {
			_, _, err = cl.Join(ctx, "ops")
		} else {
			_, _, err = cl.Answer(ctx, "ops")
		}
		if err != nil {
			t.Fatalf("%s joins: %v", u, err)
		}
		cls = append(cls, cl)
	}
	nextConv(t, cls[0], "join")
	nextConv(t, cls[0], "join")
	nextConv(t, cls[1], "join")

	r, err := c.Send(3, "tcp", &msp.Message{Version: msp.Version2, Recipient: "#OPS", Text: "disk full on db1", Sender: "nagios", SenderTerm: "mon", Cookie: "c1"})
	if err != nil || !r.OK || r.Text != "delivered to #ops (3 of 3 members)" {
		t.Fatalf("reply %+v, %v; want +delivered to #ops (3 of 3 members)", r, err)
	}
	for i, cl := range cls {
		ev := nextConv(t, cl, "message")
		if ev.Text != "disk full on db1" || ev.User != "nagios" || ev.Node != c.Name(3) || ev.Conversation != "ops" || ev.Verified || (ev.SenderMethod != "none" && ev.SenderMethod != "kernel") {
			t.Fatalf("%s got %+v", users[i], ev)
		}
	}

	r, err = c.Send(3, "tcp", &msp.Message{Version: msp.Version2, Recipient: "#nope", Text: "x", Sender: "nagios", Cookie: "c2"})
	if err != nil || r.OK || r.Text != "#nope: no such conversation" {
		t.Fatalf("unknown conversation over TCP: %+v, %v", r, err)
	}
	if rep := udpExchange(t, c.MSPAddr(3), v2("#nope", "", "x", "nagios", "", "u1", ""), 400*time.Millisecond); rep != nil {
		t.Fatalf("UDP to an unknown conversation got %q, want silence", rep)
	}
	if rep := udpExchange(t, c.MSPAddr(2), v2("#ops", "", "by udp", "nagios", "", "u2", ""), 5*time.Second); len(rep) == 0 || rep[0] != '+' {
		t.Fatalf("UDP to #ops got %q, want +", rep)
	}
	for _, cl := range cls {
		if ev := nextConv(t, cl, "message"); ev.Text != "by udp" {
			t.Fatalf("got %+v", ev)
		}
	}

	// A late joiner on the fourth node gets the history, then the
	// conversation goes on when a member's node stops.
	dave := c.SignIn(3, "dave", "pts/9", principal.Online)
	dave.Conversations()
	if _, roster, err := dave.Answer(ctx, "ops"); err != nil || len(roster) != 3 {
		t.Fatalf("dave answers: %v %v", roster, err)
	}
	for _, want := range []string{"disk full on db1", "by udp"} {
		if ev := nextConv(t, dave, "message"); !ev.History || ev.Text != want {
			t.Fatalf("dave's history: %+v, want %q", ev, want)
		}
	}
	c.Stop(0)
	if ev := nextConv(t, dave, "leave"); ev.User != "alice" {
		t.Fatalf("dave saw %+v, want alice leave", ev)
	}
	if _, err := cls[1].SendConv(ctx, "ops", "still here"); err != nil {
		t.Fatal(err)
	}
	for _, cl := range []*sessionclient.Client{cls[2], dave} {
		if ev := nextConv(t, cl, "message"); ev.Text != "still here" || ev.User != "bob" {
			t.Fatalf("got %+v", ev)
		}
	}
}

// Rule (issue 18, "Rooms believe any SENDER"): "An unauthenticated MSP
// message to #ops naming sender alice pts/7 reaches the members as MSG ops
// alice ..., exactly like alice's own lines; the sender need not be a
// member." MSP #room posts are accepted only from verified members:
// "-#ops: members only" otherwise, and the members see nothing.
func TestMSPToRoomOnlyFromVerifiedMembers(t *testing.T) {
	t.Parallel()
	c := testcluster.Start(t, 2, testcluster.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	alice := c.SignIn(0, "alice", "pts/1", principal.Online)
	bob := c.SignIn(1, "bob", "pts/2", principal.Online)
	alice.Conversations()
	bob.Conversations()
	if _, _, err := alice.Join(ctx, "ops"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := bob.Answer(ctx, "ops"); err != nil {
		t.Fatal(err)
	}
	nextConv(t, alice, "join")
	for i, m := range []*msp.Message{
		{Version: msp.Version2, Recipient: "#ops", Sender: "alice", SenderTerm: "pts/7", Text: "reboot db1 now", Cookie: "f1"},
		{Version: msp.Version2, Recipient: "#OPS", Sender: "mallory", Text: "not a member", Cookie: "f2"},
	} {
		r, err := c.Send(i, "tcp", m)
		if err != nil || r.OK || r.Text != "#ops: members only" {
			t.Fatalf("unauthenticated post as %s: %+v, %v; want -#ops: members only", m.Sender, r, err)
		}
	}
	if rep := udpExchange(t, c.MSPAddr(1), v2("#ops", "", "by udp", "alice", "pts/7", "u1", ""), 400*time.Millisecond); rep != nil {
		t.Fatalf("UDP post got %q, want silence (no - over UDP)", rep)
	}
	// The members saw none of it: the next message they get is bob's own.
	if _, err := bob.SendConv(ctx, "ops", "real line"); err != nil {
		t.Fatal(err)
	}
	if ev := nextConv(t, alice, "message"); ev.Text != "real line" || ev.User != "bob" {
		t.Fatalf("alice got %+v, want bob's line and nothing forged before it", ev)
	}
}
