package node_test

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/msprelay/msprelay/internal/testcluster"
	"github.com/msprelay/msprelay/node"
	"github.com/msprelay/msprelay/principal"
)

// Issue 18, "Any local user is 16 million sources": "Ten loopback addresses
// filled another user's mailbox (1000 messages) in 0.4 s; every sender, a
// verified session sender included, then got '-... mailbox full'". Through
// a whole node: one local sender flooding from ten loopback addresses under
// ten SENDER names takes one share of alice's mailbox, and a session sender
// still queues.
func TestLocalFloodFromManyLoopbackAddressesTakesOneShare(t *testing.T) {
	t.Parallel()
	const share = 5
	c := testcluster.Start(t, 1, testcluster.Options{Configure: func(_ int, cfg *node.Config) {
		cfg.MailboxSenderMax = share
	}})
	signedOut(t, c, "alice", "pts/1")
	_, port, err := net.SplitHostPort(c.MSPAddr(0))
	if err != nil {
		t.Fatal(err)
	}
	queued, full := 0, 0
	for i := range 10 {
		for j := range 3 {
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(fmt.Sprintf("127.0.0.%d", 10+i))}, Timeout: 5 * time.Second}
			conn, err := d.Dial("tcp", net.JoinHostPort("127.0.0.1", port))
			if err != nil {
				t.Fatal(err)
			}
			conn.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := conn.Write(v2("alice", "", fmt.Sprintf("flood %d.%d", i, j), fmt.Sprint("name", i), "", fmt.Sprint(i*10+j), "")); err != nil {
				t.Fatal(err)
			}
			switch r := readReply(t, conn); {
			case r == "+queued for alice":
				queued++
			case strings.Contains(r, "mailbox share for this sender full"):
				full++
			default:
				t.Fatalf("flood message %d.%d: %q", i, j, r)
			}
			conn.Close()
		}
	}
	if queued != share || full != 30-share {
		t.Fatalf("ten loopback addresses queued %d and were refused %d times, want one share: %d queued", queued, full, share)
	}
	bob := c.SignIn(0, "bob", "pts/2", principal.Online)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ok, summary, err := bob.Send(ctx, "alice", "", "are you there?")
	if err != nil || !ok || summary != "queued for alice" {
		t.Fatalf("a session sender after the flood: %v %q %v, want queued for alice", ok, summary, err)
	}
}
