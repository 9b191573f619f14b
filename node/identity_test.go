package node_test

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/msprelay/msprelay/internal/testcluster"
	"github.com/msprelay/msprelay/principal"
)

// signedOut makes user known to the cluster and offline: she signs in at
// term on node 0 and out again, and the known-users store has recorded it.
func signedOut(t *testing.T, c *testcluster.Cluster, user, term string) {
	t.Helper()
	cl := c.SignIn(0, user, term, principal.Online)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := cl.SignOut(ctx); err != nil {
		t.Fatal(err)
	}
	testcluster.WaitFor(t, 10*time.Second, user+" recorded as signed out", func() bool {
		s, err := c.Node(0).Switchboard().LastSeen(ctx, user)
		return err == nil && s.State == "offline"
	})
}

// exchangeTCP sends each request on a connection of its own (a script run
// once per recipient) and returns the replies.
func exchangeTCP(t *testing.T, addr string, reqs ...[]byte) []string {
	t.Helper()
	var out []string
	for _, req := range reqs {
		conn := dialTCP(t, addr)
		if _, err := conn.Write(req); err != nil {
			t.Fatal(err)
		}
		out = append(out, readReply(t, conn))
		conn.Close()
	}
	return out
}

// Issue 12, "Silent loss": "Two different messages with the same SENDER,
// SENDER-TERM and COOKIE from one host over TCP (e.g. a script with a
// one-second time cookie sending to two people) get '+... (already
// delivered)' / '+queued ... (already queued)' and the second is never
// delivered. Over UDP, a message to alice with the same cookie as one just
// sent to bob is answered for bob and dropped." And: "A repeat of the same
// message still gets the same reply and one delivery."
func TestMessageIdentity(t *testing.T) {
	t.Parallel()
	c := testcluster.Start(t, 1, testcluster.Options{})
	signedOut(t, c, "carol", "pts/7")
	signedOut(t, c, "dave", "pts/8")
	alice := c.SignIn(0, "alice", "pts/1", principal.Online)
	bob := c.SignIn(0, "bob", "pts/2", principal.Online)
	addr := c.MSPAddr(0)

	t.Run("TCP: one sender, terminal and cookie to two people online: both delivered", func(t *testing.T) {
		got := exchangeTCP(t, addr,
			v2("alice", "", "backup done", "cron", "", "1700000001", ""),
			v2("bob", "", "backup done", "cron", "", "1700000001", ""))
		if got[0] != "+delivered to alice at pts/1 on n1" || got[1] != "+delivered to bob at pts/2 on n1" {
			t.Fatalf("replies %q", got)
		}
		expectText(t, alice, "backup done")
		expectText(t, bob, "backup done")
	})
	t.Run("TCP: one sender, terminal and cookie to two people offline: both queued", func(t *testing.T) {
		got := exchangeTCP(t, addr,
			v2("carol", "", "backup done", "cron", "", "1700000002", ""),
			v2("dave", "", "backup done", "cron", "", "1700000002", ""))
		if got[0] != "+queued for carol" || got[1] != "+queued for dave" {
			t.Fatalf("replies %q", got)
		}
	})
	t.Run("TCP: one cookie on two texts to one person on one connection: both delivered", func(t *testing.T) {
		conn := dialTCP(t, addr)
		for _, text := range []string{"disk 91% full", "disk 97% full"} {
			conn.Write(v2("alice", "", text, "cron", "", "1700000003", ""))
			if r := readReply(t, conn); r != "+delivered to alice at pts/1 on n1" {
				t.Fatalf("%q: reply %q", text, r)
			}
			expectText(t, alice, text)
		}
	})
	t.Run("TCP: the same message twice on one connection: delivered once, '+' twice", func(t *testing.T) {
		conn := dialTCP(t, addr)
		req := v2("alice", "", "once", "bob", "tty1", "c-once", "")
		var replies []string
		for range 2 {
			conn.Write(req)
			replies = append(replies, readReply(t, conn))
		}
		if replies[0] != "+delivered to alice at pts/1 on n1" || replies[1] != "+delivered to alice at pts/1 on n1 (already delivered)" {
			t.Fatalf("replies %q", replies)
		}
		expectText(t, alice, "once")
		expectNothing(t, alice)
	})
	t.Run("TCP: the same queued message twice on one connection: queued once", func(t *testing.T) {
		conn := dialTCP(t, addr)
		req := v2("carol", "", "once", "bob", "tty1", "c-once", "")
		var replies []string
		for range 2 {
			conn.Write(req)
			replies = append(replies, readReply(t, conn))
		}
		if replies[0] != "+queued for carol" || replies[1] != "+queued for carol (already queued)" {
			t.Fatalf("replies %q", replies)
		}
	})
	t.Run("UDP: one cookie to bob then alice from one socket: both delivered and answered", func(t *testing.T) {
		conn, err := net.Dial("udp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		for _, tc := range []struct {
			req  []byte
			want string
		}{
			{v2("bob", "", "lunch at noon at the usual place?", "eve", "", "u-1", ""), "+delivered to bob at pts/2 on n1"},
			{v2("alice", "", "lunch at noon at the usual place?", "eve", "", "u-1", ""), "+delivered to alice at pts/1 on n1"},
		} {
			conn.Write(tc.req)
			if r := readDatagram(t, conn); r != tc.want {
				t.Fatalf("reply %q, want %q", r, tc.want)
			}
		}
		expectText(t, bob, "lunch at noon at the usual place?")
		expectText(t, alice, "lunch at noon at the usual place?")
	})
	t.Run("UDP: a true retransmission is answered again and delivered once", func(t *testing.T) {
		conn, err := net.Dial("udp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		req := v2("alice", "", "are you there? call me back please", "eve", "", "u-2", "")
		for i := range 3 {
			conn.Write(req)
			if r := readDatagram(t, conn); r != "+delivered to alice at pts/1 on n1" {
				t.Fatalf("answer %d: %q", i, r)
			}
		}
		expectText(t, alice, "are you there? call me back please")
		expectNothing(t, alice)
	})
	// Both offline users got their one copy each, the repeat none.
	for _, u := range []struct{ user, term string }{{"carol", "pts/7"}, {"dave", "pts/8"}} {
		cl := c.SignIn(0, u.user, u.term, principal.Online)
		expectText(t, cl, "backup done")
		if u.user == "carol" {
			expectText(t, cl, "once")
		}
		expectNothing(t, cl)
	}
}

// readDatagram reads one UDP reply and returns it without its NUL.
func readDatagram(t *testing.T, c net.Conn) string {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 1024)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("reading reply: %v", err)
	}
	return strings.TrimSuffix(string(buf[:n]), "\x00")
}
