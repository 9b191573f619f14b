package mailbox_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/msprelay/msprelay/broker"
	"github.com/msprelay/msprelay/internal/testcluster"
	"github.com/msprelay/msprelay/internal/waitfor"
	"github.com/msprelay/msprelay/msp"
	"github.com/msprelay/msprelay/node"
	"github.com/msprelay/msprelay/principal"
	"github.com/msprelay/msprelay/sessionclient"
	"github.com/msprelay/msprelay/sessionproto"
)

// These tests run whole nodes (testcluster: real gossip, a real nats-server
// with JetStream, real MSP and session listeners) to check the mailbox
// from the outside: MSP replies and what session clients receive.

// ackingSignIn signs user in at term on node i with end-to-end
// acknowledgements; when autoAck is set, every message is acknowledged as
// it is taken from the returned channel's feeder.
func ackingSignIn(t *testing.T, c *testcluster.Cluster, i int, user, term string) *sessionclient.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cl, err := sessionclient.Dial(ctx, c.Node(i).Addrs().Session)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	si, err := cl.SignIn(ctx, user, term, principal.Online, sessionclient.WithAcks())
	if err != nil || !si.Acks {
		t.Fatalf("sign in %s/%s on %s with acks: %+v %v", user, term, c.Name(i), si, err)
	}
	return cl
}

// nextAcked waits for the next message and acknowledges it.
func nextAcked(t *testing.T, cl *sessionclient.Client) *sessionproto.Message {
	t.Helper()
	m, err := ackNext(cl)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// ackNext is nextAcked for goroutines other than the test's own, which
// must not call t.Fatal: it returns what went wrong instead.
func ackNext(cl *sessionclient.Client) (*sessionproto.Message, error) {
	var m *sessionproto.Message
	select {
	case got, ok := <-cl.Messages():
		if !ok {
			return nil, fmt.Errorf("session closed: %v", cl.Err())
		}
		m = got
	case <-time.After(10 * time.Second):
		return nil, errors.New("no message within 10s")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := cl.Ack(ctx, m.ID); err != nil {
		return nil, fmt.Errorf("ack %s: %w", m.ID, err)
	}
	return m, nil
}

// noMore checks that nothing else arrives for a short while.
func noMore(t *testing.T, cl *sessionclient.Client, d time.Duration) {
	t.Helper()
	select {
	case m, ok := <-cl.Messages():
		if ok {
			t.Fatalf("unexpected extra message %q (id %s)", m.Text, m.ID)
		}
	case <-time.After(d):
	}
}

func mspSend(t *testing.T, c *testcluster.Cluster, i int, network string, m *msp.Message) msp.Reply {
	t.Helper()
	r, err := c.Send(i, network, m)
	if err != nil && network == "tcp" {
		t.Fatalf("send via %s: %v", c.Name(i), err)
	}
	return r
}

// An offline message "arrives at next sign-in on any node"; a user never
// seen is refused ('-' over TCP, silence over UDP: RFC 1312 "no reply when
// ... delivery failed").
func TestClusterOfflineMessagesArriveAtNextSignInOnAnyNode(t *testing.T) {
	t.Parallel()
	c := testcluster.Start(t, 3, testcluster.Options{})
	if r := mspSend(t, c, 0, "tcp", &msp.Message{Recipient: "alice", Text: "x", Sender: "bob", Cookie: "u0"}); r.OK || r.Text != "alice: unknown user" {
		t.Fatalf("before alice was ever seen: %+v, want -alice: unknown user", r)
	}
	a := c.SignIn(1, "alice", "pts/1", principal.Online)
	c.WaitPresent("alice", "pts/1", "n2", true)
	a.Close()
	c.WaitPresent("alice", "pts/1", "n2", false)
	if r := mspSend(t, c, 0, "tcp", &msp.Message{Recipient: "alice", Text: "over tcp", Sender: "bob", Cookie: "c1"}); !r.OK || r.Text != "queued for alice" {
		t.Fatalf("tcp to offline alice: %+v, want +queued for alice", r)
	}
	if r := mspSend(t, c, 2, "udp", &msp.Message{Recipient: "alice", Text: "over udp", Sender: "bob", Cookie: "c2"}); !r.OK || r.Text != "queued for alice" {
		t.Fatalf("udp to offline alice: %+v, want +queued for alice", r)
	}
	quick := &msp.Client{Network: "udp", Timeout: 700 * time.Millisecond}
	if r, err := quick.Send(context.Background(), c.MSPAddr(0), &msp.Message{Recipient: "carol", Text: "x", Sender: "bob", Cookie: "c3"}); err == nil || r.OK {
		t.Fatalf("udp to unknown carol: %+v %v, want no reply", r, err)
	}
	back := ackingSignIn(t, c, 2, "alice", "pts/9")
	for _, want := range []string{"over tcp", "over udp"} {
		if m := nextAcked(t, back); m.Text != want || m.Sender != "bob" || m.OriginNode == "" {
			t.Fatalf("got %q from %s via %s, want %q from bob", m.Text, m.Sender, m.OriginNode, want)
		}
	}
	noMore(t, back, 300*time.Millisecond)
}

// "queue-on-node-down": her only node cannot be reached over NATS while
// gossip still lists her; the ingress queues, and she gets the message when
// she signs in on a node that works.
func TestClusterQueuesWhenHerNodeIsUnreachable(t *testing.T) {
	t.Parallel()
	island := testcluster.StartBroker(t, broker.Config{Name: "island"})
	c := testcluster.Start(t, 3, testcluster.Options{Configure: func(i int, cfg *node.Config) {
		if i == 2 {
			cfg.NATSURLs = []string{island.ClientURL()}
		}
	}})
	c.SignIn(2, "alice", "pts/2", principal.Online)
	c.WaitPresent("alice", "pts/2", "n3", true)
	r := mspSend(t, c, 0, "tcp", &msp.Message{Recipient: "alice", Text: "while n3 is cut off", Sender: "bob", Cookie: "d1"})
	if !r.OK || r.Text != "queued for alice (pts/2@n3 node unreachable)" {
		t.Fatalf("reply %+v, want +queued for alice (pts/2@n3 node unreachable)", r)
	}
	a := ackingSignIn(t, c, 1, "alice", "pts/1")
	if m := nextAcked(t, a); m.Text != "while n3 is cut off" {
		t.Fatalf("got %q", m.Text)
	}
}

// A message pushed to a session that dies before acknowledging goes back to
// the mailbox and reaches her next session with the same id; "delivered"
// then means acknowledged.
func TestClusterRedeliversWhenSessionDiesBeforeAck(t *testing.T) {
	t.Parallel()
	c := testcluster.Start(t, 2, testcluster.Options{})
	doomed := ackingSignIn(t, c, 1, "alice", "pts/1")
	c.WaitPresent("alice", "pts/1", "n2", true)
	var r msp.Reply
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		r, _ = c.Send(0, "tcp", &msp.Message{Recipient: "alice", Text: "lost client", Sender: "bob", Cookie: "e1"})
	}()
	first := testcluster.NextMessage(t, doomed, 10*time.Second)
	doomed.Close() // dies with the message in hand, unacknowledged
	waitfor.Recv(t, sent, 15*time.Second, "the reply to the sender")
	if !r.OK || !strings.HasPrefix(r.Text, "queued for alice (pts/1@n2 not acknowledged") {
		t.Fatalf("reply %+v, want +queued for alice (pts/1@n2 not acknowledged...)", r)
	}
	c.WaitPresent("alice", "pts/1", "n2", false)
	again := ackingSignIn(t, c, 0, "alice", "pts/3")
	if m := nextAcked(t, again); m.ID != first.ID || m.Text != first.Text {
		t.Fatalf("redelivered %q id %s, want %q id %s", m.Text, m.ID, first.Text, first.ID)
	}
	c.WaitPresent("alice", "pts/3", "n1", true)
	acked := make(chan error, 1)
	go func() { _, err := ackNext(again); acked <- err }()
	if r := mspSend(t, c, 1, "tcp", &msp.Message{Recipient: "alice", Text: "now", Sender: "bob", Cookie: "e2"}); !r.OK || r.Text != "delivered to alice at pts/3 on n1 (acknowledged)" {
		t.Fatalf("reply %+v", r)
	}
	if err := <-acked; err != nil {
		t.Fatal(err)
	}
}

// docs/ARCHITECTURE.md: "for UDP, (source address, source port, cookie) identify a
// message; retransmissions within the dedup window are acknowledged again
// but delivered once" — also when the same datagram goes to several nodes.
func TestClusterSameDatagramToTwoIngressNodesDeliveredOnce(t *testing.T) {
	t.Parallel()
	c := testcluster.Start(t, 3, testcluster.Options{})
	a := ackingSignIn(t, c, 1, "alice", "pts/1")
	c.WaitPresent("alice", "pts/1", "n2", true)
	pkt, err := (&msp.Message{Recipient: "alice", Text: "once", Sender: "bob", SenderTerm: "tty1", Cookie: "dup1"}).MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	acked := make(chan error, 1)
	go func() { _, err := ackNext(a); acked <- err }()
	var replies []string
	buf := make([]byte, 600)
	// The same datagram to two nodes at once, then retransmitted to both.
	for round := range 2 {
		for _, i := range []int{0, 2} {
			ua, err := net.ResolveUDPAddr("udp", c.MSPAddr(i))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := pc.WriteTo(pkt, ua); err != nil {
				t.Fatal(err)
			}
		}
		pc.SetReadDeadline(time.Now().Add(8 * time.Second))
		for range 2 {
			n, _, err := pc.ReadFrom(buf)
			if err != nil {
				t.Fatalf("round %d, after replies %q: %v", round, replies, err)
			}
			replies = append(replies, string(buf[:n]))
		}
	}
	if err := <-acked; err != nil {
		t.Fatal(err)
	}
	noMore(t, a, 500*time.Millisecond)
	for _, rep := range replies {
		if !strings.HasPrefix(rep, "+delivered to alice at pts/") { // cut to the request's length
			t.Errorf("reply %q, want +delivered to alice at pts/...", rep)
		}
	}
	slices.Sort(replies)
	t.Logf("replies: %q", replies)
}

// "store outage (close the broker) gives '-' not '+'".
func TestClusterStoreOutageGivesMinus(t *testing.T) {
	t.Parallel()
	c := testcluster.Start(t, 2, testcluster.Options{})
	a := c.SignIn(1, "alice", "pts/1", principal.Online)
	c.WaitPresent("alice", "pts/1", "n2", true)
	testcluster.WaitFor(t, 10*time.Second, "alice known", func() bool {
		_, err := c.Node(0).Switchboard().LastSeen(context.Background(), "alice")
		return err == nil
	})
	a.Close()
	c.WaitPresent("alice", "pts/1", "n2", false)
	c.Broker.Close()
	r := mspSend(t, c, 0, "tcp", &msp.Message{Recipient: "alice", Text: "x", Sender: "bob", Cookie: "o1"})
	if r.OK || !strings.HasPrefix(r.Text, "alice: not signed in; mailbox unavailable") {
		t.Fatalf("send with the store down: %+v, want -alice: not signed in; mailbox unavailable...", r)
	}
}

// No loss, no duplicate in her view, while her sessions come and go: a
// stream of messages goes to alice while she signs in on one node, drops
// (connection cut, messages unacknowledged), signs in on another, and so
// on. Every message that got '+' must reach her view exactly once after
// dropping repeats by id.
func TestClusterStreamThroughSessionChurnLosesNothing(t *testing.T) {
	t.Parallel()
	c := testcluster.Start(t, 3, testcluster.Options{})
	a := ackingSignIn(t, c, 1, "alice", "pts/0")
	c.WaitPresent("alice", "pts/0", "n2", true)

	const total = 150
	var (
		mu    sync.Mutex
		plus  = map[string]bool{} // text -> got '+'
		minus int
	)
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		conn := &msp.Client{Timeout: 10 * time.Second}
		for i := range total {
			text := fmt.Sprintf("m%03d", i)
			r, err := conn.Send(context.Background(), c.MSPAddr(0), &msp.Message{Recipient: "alice", Text: text, Sender: "bob", Cookie: text})
			mu.Lock()
			if err == nil && r.OK {
				plus[text] = true
			} else {
				minus++
			}
			mu.Unlock()
			time.Sleep(8 * time.Millisecond) // pacing, so that the stream spans the churn
		}
	}()
	view := map[string]string{} // id -> text
	dups := 0
	take := func(cl *sessionclient.Client, ack bool, d time.Duration) {
		deadline := time.After(d)
		for {
			select {
			case m, ok := <-cl.Messages():
				if !ok {
					return
				}
				if _, seen := view[m.ID]; seen {
					dups++
				} else {
					view[m.ID] = m.Text
				}
				if ack {
					ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
					cl.Ack(ctx, m.ID)
					cancel()
				}
			case <-deadline:
				return
			}
		}
	}
	// Rounds: read and acknowledge for a while, then read without
	// acknowledging and drop the connection, and sign in elsewhere.
	for round := range 4 {
		take(a, true, 250*time.Millisecond)
		n0 := len(view)
		take(a, false, 60*time.Millisecond)
		t.Logf("round %d: %d unacknowledged, view %d", round, len(view)-n0, len(view))
		a.Close()
		a = ackingSignIn(t, c, round%3, "alice", fmt.Sprintf("pts/%d", round+1))
	}
	for done := false; !done; {
		select {
		case <-sent:
			done = true
		default:
			take(a, true, 50*time.Millisecond)
		}
	}
	mu.Lock()
	want, nminus := len(plus), minus
	mu.Unlock()
	testcluster.WaitFor(t, 30*time.Second, "every '+' message in her view", func() bool {
		take(a, true, 50*time.Millisecond)
		got := 0
		for _, text := range view {
			if plus[text] {
				got++
			}
		}
		return got == want
	})
	take(a, true, 300*time.Millisecond)
	texts := map[string]int{}
	for _, text := range view {
		texts[text]++
	}
	for text, n := range texts {
		if n > 1 {
			t.Errorf("%q in her view under %d ids", text, n)
		}
	}
	t.Logf("sent %d, '+' %d, '-' %d, delivered %d distinct, duplicates dropped by id %d", total, want, nminus, len(view), dups)
	if nminus != 0 || want != total {
		t.Errorf("%d of %d messages refused with the store up", nminus, total)
	}
}
