package session

import (
	"strings"
	"testing"

	"github.com/msprelay/msprelay/principal"
	"github.com/msprelay/msprelay/sessionclient"
	"github.com/msprelay/msprelay/sessionproto"
)

// MSPS2 by hand: the client offers it in VER, acknowledges the MSG with
// "ACK TrID id", and the server sends nothing back for the ACK (the PNG
// after it is answered first); the sender's SND is answered only once the
// ACK is in, and says the message was acknowledged.
func TestAckTranscript(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Trust{}, nil)
	alice := e.raw(t)
	alice.send("VER 1 MSPS2 MSPS1\r\n")
	alice.expect("VER 1 MSPS2")
	alice.send("USR 2 alice pts/1\r\n")
	alice.expect("USR 2 OK alice pts/1 NLN n1 trust")
	bob := e.raw(t)
	bob.send("VER 1 MSPS1\r\n")
	bob.expect("VER 1 MSPS1")
	bob.send("USR 2 bob tty1\r\n")
	bob.expect("USR 2 OK bob tty1 NLN n1 trust")
	bob.send("SND 3 alice - 5\r\nhello")
	m, err := sessionproto.ParseMessage([]byte(alice.payload("MSG")))
	if err != nil {
		t.Fatal(err)
	}
	alice.send("ACK 3 " + m.ID + "\r\nPNG\r\n")
	alice.expect("QNG 90")
	bob.expect("ACK 3 delivered to alice at pts/1 on n1 (acknowledged)")
	alice.send("ACK 4 0123456789ab\r\nPNG\r\n") // an id nothing waits for: ignored
	alice.expect("QNG 90")
	alice.send("ACK 5\r\n")
	alice.expectPrefix("200 5 ")
}

// The rules of acknowledged delivery, through the Go client: "delivered"
// means acknowledged; a client that never acknowledges, or whose session
// ends first, does not earn a '+' without a mailbox (the switchboard tests
// cover the mailbox taking such messages back); an MSPS1 client is
// unchanged.
func TestAckedDelivery(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		acks   bool
		client func(t *testing.T, c *sessionclient.Client)
		wantOK bool
		want   string
	}{
		{"acknowledged: delivered", true, func(t *testing.T, c *sessionclient.Client) {
			m := nextMessage(t, c)
			if err := c.Ack(ctxT(t), m.ID); err != nil {
				t.Error(err)
			}
		}, true, "delivered to alice at pts/1 on n1 (acknowledged)"},
		{"never acknowledged: not delivered", true, func(t *testing.T, c *sessionclient.Client) { nextMessage(t, c) },
			false, "alice at pts/1 on n1: not acknowledged"},
		{"session ends before the ACK", true, func(t *testing.T, c *sessionclient.Client) {
			nextMessage(t, c)
			c.Close()
		}, false, "alice at pts/1 on n1: not acknowledged: terminal signed out"},
		{"MSPS1 client: delivered once queued, as before", false, func(t *testing.T, c *sessionclient.Client) { nextMessage(t, c) },
			true, "delivered to alice at pts/1 on n1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, Trust{}, nil)
			alice := e.dial()
			var opts []sessionclient.SignInOption
			if tc.acks {
				opts = append(opts, sessionclient.WithAcks())
			}
			si, err := alice.SignIn(ctxT(t), "alice", "pts/1", principal.Online, opts...)
			if err != nil || si.Acks != tc.acks {
				t.Fatalf("sign in: %+v %v; want Acks %v", si, err, tc.acks)
			}
			bob := e.signIn("bob", "tty1")
			done := make(chan struct{})
			go func() {
				defer close(done)
				tc.client(t, alice)
			}()
			ok, summary, err := bob.Send(ctxT(t), "alice", "", "hi")
			<-done
			if err != nil || ok != tc.wantOK || !strings.HasPrefix(summary, tc.want) {
				t.Fatalf("Send = %v %q %v; want %v %q", ok, summary, err, tc.wantOK, tc.want)
			}
		})
	}
}

// A session blocked in its own SND cannot read ACKs, so a message for it
// meanwhile is refused as slow (the switchboard queues or falls back)
// instead of waiting for an ACK that cannot be read in time.
func TestAckSessionInsideSNDRefusesAsSlow(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Trust{}, nil)
	alice := e.dial()
	if _, err := alice.SignIn(ctxT(t), "alice", "pts/1", principal.Online, sessionclient.WithAcks()); err != nil {
		t.Fatal(err)
	}
	ok, summary, err := alice.Send(ctxT(t), "alice", "", "to myself")
	if err != nil || ok || summary != "alice at pts/1 on n1: terminal not reading (sending)" {
		t.Fatalf("self-send on an acknowledging session = %v %q %v", ok, summary, err)
	}
	noMessage(t, alice, "alice")
}
