package node_test

import (
	"bytes"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/msprelay/msprelay/internal/testcluster"
	"github.com/msprelay/msprelay/principal"
	"github.com/msprelay/msprelay/sessionclient"
	"github.com/msprelay/msprelay/sessionproto"
)

// These tests speak raw octets to a whole node, as netcat or another
// implementation's test suite would, and check what arrives at the
// recipient's session: the RFC rules hold end to end, not only in the msp
// package.

func v2(parts ...string) []byte { return []byte("B" + strings.Join(parts, "\x00") + "\x00") }

func dialTCP(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	return c
}

// readReply reads one '+'/'-' reply up to its NUL.
func readReply(t *testing.T, c net.Conn) string {
	t.Helper()
	var b []byte
	one := make([]byte, 1)
	for {
		if _, err := c.Read(one); err != nil {
			t.Fatalf("reading reply after %q: %v", b, err)
		}
		if one[0] == 0 {
			return string(b)
		}
		b = append(b, one[0])
	}
}

func udpExchange(t *testing.T, addr string, req []byte, wait time.Duration) []byte {
	t.Helper()
	c, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(req); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(wait))
	buf := make([]byte, 1024)
	n, err := c.Read(buf)
	if err != nil {
		return nil // silence
	}
	return buf[:n]
}

func expectText(t *testing.T, cl *sessionclient.Client, want string) *sessionproto.Message {
	t.Helper()
	m := testcluster.NextMessage(t, cl, 5*time.Second)
	if m.Text != want {
		t.Fatalf("delivered text %q, want %q", m.Text, want)
	}
	return m
}

func expectNothing(t *testing.T, cl *sessionclient.Client) {
	t.Helper()
	select {
	case m := <-cl.Messages():
		t.Fatalf("unexpected delivery %+v", m)
	case <-time.After(150 * time.Millisecond):
	}
}

func TestRawTCPConformance(t *testing.T) {
	t.Parallel()
	c := testcluster.Start(t, 1, testcluster.Options{})
	alice := c.SignIn(0, "alice", "pts/1", principal.Online)
	addr := c.MSPAddr(0)

	t.Run("several messages may follow on one connection, one reply each", func(t *testing.T) {
		conn := dialTCP(t, addr)
		for i, text := range []string{"one", "two", "three"} {
			if _, err := conn.Write(v2("alice", "", text, "bob", "tty1", "c"+text, "")); err != nil {
				t.Fatal(err)
			}
			if r := readReply(t, conn); r != "+delivered to alice at pts/1 on n1" {
				t.Fatalf("reply %d = %q", i, r)
			}
			expectText(t, alice, text)
		}
	})
	t.Run("a refusal is '-' with a reason and the connection stays usable", func(t *testing.T) {
		conn := dialTCP(t, addr)
		conn.Write(v2("nobody", "", "x", "bob", "", "c1", ""))
		if r := readReply(t, conn); r != "-nobody: unknown user" {
			t.Fatalf("reply %q", r)
		}
		conn.Write(v2("alice", "", "after refusal", "bob", "", "c2", ""))
		if r := readReply(t, conn); !strings.HasPrefix(r, "+") {
			t.Fatalf("reply %q", r)
		}
		expectText(t, alice, "after refusal")
	})
	t.Run("do not strip the eighth bit", func(t *testing.T) {
		conn := dialTCP(t, addr)
		conn.Write(v2("ALICE", "PTS/1", "caf\xe9 \xbfqu\xe9?", "Ren\xe9", "tty\xe0", "c8", ""))
		if r := readReply(t, conn); !strings.HasPrefix(r, "+") {
			t.Fatalf("reply %q", r)
		}
		m := expectText(t, alice, "caf\xe9 \xbfqu\xe9?")
		if m.Sender != "Ren\xe9" || m.SenderTerm != "tty\xe0" {
			t.Fatalf("sender %q term %q", m.Sender, m.SenderTerm)
		}
	})
	t.Run("LF-only line ends are delivered as CR LF", func(t *testing.T) {
		conn := dialTCP(t, addr)
		conn.Write(v2("alice", "", "line1\nline2\n", "bob", "", "lf", ""))
		readReply(t, conn)
		expectText(t, alice, "line1\r\nline2\r\n")
	})
	bad := []struct {
		name string
		msg  []byte
		want string
	}{
		{"escape sequences are refused", v2("alice", "", "\x1b[2Jgotcha", "bob", "", "e1", ""), "-"},
		{"C1 control (8-bit CSI) is refused", v2("alice", "", "x\x9b2J", "bob", "", "e2", ""), "-"},
		{"control characters in the sender are refused", v2("alice", "", "hi", "bo\x07b", "", "e3", ""), "-"},
		{"512 octets or more is refused", v2("alice", "", strings.Repeat("x", 520), "bob", "", "e4", ""), "-"},
		{"a cookie over 32 octets is refused", v2("alice", "", "hi", "bob", "", strings.Repeat("c", 33), ""), "-"},
		{"an unknown revision is refused", []byte("Calice\x00\x00hi\x00"), "-"},
	}
	for _, tc := range bad {
		t.Run(tc.name+", then the server may close", func(t *testing.T) {
			conn := dialTCP(t, addr)
			conn.Write(tc.msg)
			r := readReply(t, conn)
			if !strings.HasPrefix(r, tc.want) || len(r) < 2 {
				t.Fatalf("reply %q, want '-' with a reason", r)
			}
			expectNothing(t, alice)
		})
	}
	t.Run("v1 over TCP: nothing is owed back, the message is delivered", func(t *testing.T) {
		conn := dialTCP(t, addr)
		conn.Write([]byte("Aalice\x00\x00version one\x00"))
		conn.(*net.TCPConn).CloseWrite()
		rest, _ := io.ReadAll(conn)
		if len(rest) != 0 {
			t.Fatalf("server sent %q to a v1 TCP client", rest)
		}
		expectText(t, alice, "version one")
	})
}

func TestRawUDPConformance(t *testing.T) {
	t.Parallel()
	c := testcluster.Start(t, 1, testcluster.Options{})
	alice := c.SignIn(0, "alice", "pts/1", principal.Online)
	addr := c.MSPAddr(0)
	const silence = 400 * time.Millisecond

	t.Run("v2: '+' only for a named recipient that was delivered, never larger than the request", func(t *testing.T) {
		req := v2("alice", "", "hi", "bob", "", "u1", "")
		rep := udpExchange(t, addr, req, 5*time.Second)
		if len(rep) == 0 || rep[0] != '+' || rep[len(rep)-1] != 0 || len(rep) > len(req) {
			t.Fatalf("reply %q for a %d-octet request", rep, len(req))
		}
		expectText(t, alice, "hi")
	})
	t.Run("v2: no reply when delivery failed; never '-' over UDP", func(t *testing.T) {
		if rep := udpExchange(t, addr, v2("nobody", "", "hi", "bob", "", "u2", ""), silence); rep != nil {
			t.Fatalf("reply %q", rep)
		}
	})
	t.Run("v2: no reply when RECIPIENT is empty", func(t *testing.T) {
		if rep := udpExchange(t, addr, v2("", "pts/1", "to the terminal", "bob", "", "u3", ""), silence); rep != nil {
			t.Fatalf("reply %q", rep)
		}
		expectText(t, alice, "to the terminal")
	})
	t.Run("v2: invalid messages get silence and are not delivered", func(t *testing.T) {
		if rep := udpExchange(t, addr, v2("alice", "", "\x1b[31mred", "bob", "", "u4", ""), silence); rep != nil {
			t.Fatalf("reply %q", rep)
		}
		expectNothing(t, alice)
	})
	t.Run("v1: the answering datagram contains exactly the received data", func(t *testing.T) {
		req := []byte("Aalice\x00\x00v1 udp\x00")
		if rep := udpExchange(t, addr, req, 5*time.Second); !bytes.Equal(rep, req) {
			t.Fatalf("echo %q, want %q", rep, req)
		}
		expectText(t, alice, "v1 udp")
	})
	t.Run("a retransmission (same address, port, cookie) is acknowledged again but delivered once", func(t *testing.T) {
		conn, err := net.Dial("udp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		req := v2("alice", "", "once", "bob", "", "dup-1", "")
		buf := make([]byte, 1024)
		for i := range 3 {
			conn.Write(req)
			conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			n, err := conn.Read(buf)
			if err != nil || buf[0] != '+' {
				t.Fatalf("ack %d: %q %v", i, buf[:n], err)
			}
		}
		expectText(t, alice, "once")
		expectNothing(t, alice)
	})
}

// A TCP sender that retries with the same cookie on a new connection (a new
// source port) has sent the same message: it is acknowledged, not shown twice.
func TestTCPRetryOnNewConnectionDeliveredOnce(t *testing.T) {
	t.Parallel()
	c := testcluster.Start(t, 1, testcluster.Options{})
	alice := c.SignIn(0, "alice", "pts/1", principal.Online)
	msg := v2("alice", "", "retry me", "bob", "tty1", "261122010203", "")
	for i := range 2 {
		conn := dialTCP(t, c.MSPAddr(0))
		conn.Write(msg)
		if r := readReply(t, conn); !strings.HasPrefix(r, "+") {
			t.Fatalf("attempt %d: %q", i, r)
		}
		conn.Close()
	}
	expectText(t, alice, "retry me")
	expectNothing(t, alice)
}
