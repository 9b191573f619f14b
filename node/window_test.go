package node_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/msprelay/msprelay/internal/testcluster"
	"github.com/msprelay/msprelay/msp"
	"github.com/msprelay/msprelay/node"
	"github.com/msprelay/msprelay/principal"
	"github.com/msprelay/msprelay/sessionclient"
)

// Issue 21: "a slow client still gets ErrTerminalSlow / queued to mailbox
// as today". msp listen's session (acknowledging, window 4 here) that
// acknowledges nothing takes four pipelined messages in order, all in
// flight at once; the fifth is queued in her mailbox ("+queued"), and once
// she acknowledges the four (in one ACK line), they are answered
// "(acknowledged)" and the mailbox hands her the fifth: none lost, none
// doubled, every one from the verified-or-not sender as sent.
func TestAckWindowFullGoesToMailbox(t *testing.T) {
	t.Parallel()
	const window = 4
	c := testcluster.Start(t, 1, testcluster.Options{Configure: func(_ int, cfg *node.Config) {
		cfg.SessionAckWindow = window
		cfg.SessionInboundRate = -1
	}})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	alice, err := sessionclient.Dial(ctx, c.Node(0).Addrs().Session)
	if err != nil {
		t.Fatal(err)
	}
	defer alice.Close()
	if si, err := alice.SignIn(ctx, "alice", "pts/1", principal.Online, sessionclient.WithAcks()); err != nil || !si.BatchAcks {
		t.Fatalf("sign in: %+v %v", si, err)
	}
	c.WaitPresent("alice", "pts/1", c.Name(0), true)

	conn := pipelineToAlice(t, c.MSPAddr(0), window, "c")
	var ids []string
	for i := range window {
		m := testcluster.NextMessage(t, alice, 10*time.Second)
		if m.Text != fmt.Sprintf("m%d", i) || m.Sender != "bob" || m.Verified || m.Queued {
			t.Fatalf("message %d: %+v", i, m)
		}
		ids = append(ids, m.ID)
	}
	r, err := c.Send(0, "tcp", &msp.Message{Version: msp.Version2, Recipient: "alice", RecipTerm: "pts/1", Text: "m4", Sender: "bob", Cookie: "c4"})
	if err != nil || !r.OK || !strings.HasPrefix(r.Text, "queued for alice") {
		t.Fatalf("past the window: %+v %v, want +queued for alice", r, err)
	}
	if err := alice.AckAll(ctx, []string{ids[3], ids[1], ids[2], ids[0]}); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	for i := range window {
		rep, err := br.ReadString(0)
		if err != nil || rep != "+delivered to alice at pts/1 on n1 (acknowledged)\x00" {
			t.Fatalf("reply %d: %q %v", i, rep, err)
		}
	}
	m := testcluster.NextMessage(t, alice, 10*time.Second)
	if m.Text != "m4" || !m.Queued || m.Sender != "bob" || m.Verified {
		t.Fatalf("from the mailbox: %+v", m)
	}
	for _, id := range ids {
		if id == m.ID {
			t.Fatalf("the queued message has the id %s of one delivered live", id)
		}
	}
	if err := alice.Ack(ctx, m.ID); err != nil {
		t.Fatal(err)
	}
}

// Issue 21: "The same on the receiving node of a cross-node delivery."
// alice listens on n2; one MSP connection to n1 pipelines messages for
// her. She receives several before acknowledging any (each waits for the
// one before it to be published to n2 and queued there in order, not for
// its acknowledgement), in the order sent, and acknowledges them out of
// order in one line; every reply is '+... (acknowledged)'.
func TestCrossNodeWindowInOrder(t *testing.T) {
	t.Parallel()
	const n, held = 8, 4
	c := testcluster.Start(t, 2, testcluster.Options{Configure: func(_ int, cfg *node.Config) {
		cfg.SessionInboundRate = -1
	}})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	alice, err := sessionclient.Dial(ctx, c.Node(1).Addrs().Session)
	if err != nil {
		t.Fatal(err)
	}
	defer alice.Close()
	if _, err := alice.SignIn(ctx, "alice", "pts/1", principal.Online, sessionclient.WithAcks()); err != nil {
		t.Fatal(err)
	}
	c.WaitPresent("alice", "pts/1", c.Name(1), true)

	conn := pipelineToAlice(t, c.MSPAddr(0), n, "x")
	var ids []string
	next := func(i int) {
		m := testcluster.NextMessage(t, alice, 10*time.Second)
		if m.Text != fmt.Sprintf("m%d", i) || m.OriginNode != "n1" || m.Sender != "bob" || m.Verified {
			t.Fatalf("message %d: %+v", i, m)
		}
		ids = append(ids, m.ID)
	}
	for i := range held {
		next(i)
	}
	if err := alice.AckAll(ctx, []string{ids[2], ids[0], ids[3], ids[1]}); err != nil {
		t.Fatal(err)
	}
	for i := held; i < n; i++ {
		next(i)
	}
	if err := alice.AckAll(ctx, ids[held:]); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	for i := range n {
		rep, err := br.ReadString(0)
		if err != nil || rep != "+delivered to alice at pts/1 on n2 (acknowledged)\x00" {
			t.Fatalf("reply %d: %q %v", i, rep, err)
		}
	}
}

// pipelineToAlice opens one MSP connection to addr and writes n messages
// from bob to alice at pts/1 in one write, texts m0, m1, ... and cookies
// <cookie>0, <cookie>1, ...; the test's cleanup closes it.
func pipelineToAlice(t *testing.T, addr string, n int, cookie string) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	var b []byte
	for i := range n {
		b = fmt.Appendf(b, "Balice\x00pts/1\x00m%d\x00bob\x00\x00%s%d\x00\x00", i, cookie, i)
	}
	if _, err := conn.Write(b); err != nil {
		t.Fatal(err)
	}
	return conn
}
