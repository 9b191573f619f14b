package sessionclient

import (
	"bufio"
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/msprelay/msprelay/principal"
)

// scriptedServer answers VER with version and USR with OK, then reports
// every line the client sends on lines. It stands in for servers of other
// versions than this tree's (package session tests the real one).
func scriptedServer(t *testing.T, version string) (addr string, lines <-chan string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	ch := make(chan string, 64)
	go func() {
		defer close(ch)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		br := bufio.NewReader(c)
		for {
			l, err := br.ReadString('\n')
			if err != nil {
				return
			}
			l = strings.TrimSuffix(l, "\r\n")
			f := strings.Fields(l)
			switch {
			case len(f) >= 2 && f[0] == "VER":
				c.Write([]byte("VER " + f[1] + " " + version + "\r\n"))
			case len(f) >= 4 && f[0] == "USR":
				c.Write([]byte("USR " + f[1] + " OK " + f[2] + " " + f[3] + " NLN n1 trust\r\n"))
			default:
				ch <- l
			}
		}
	}()
	return ln.Addr().String(), ch
}

// Issue 21: the client "acknowledges them in one frame" when the server
// speaks MSPS3, and old servers keep working: to an MSPS2 server AckAll
// sends one id per ACK line (an MSPS2 server takes no more), to an MSPS3
// server one line. In both cases the client offered MSPS3 first.
func TestAckAllFollowsServerVersion(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		version   string
		batch     bool
		wantLines []string
	}{
		{"MSPS3", true, []string{"ACK 3 id1 id2 id3"}},
		{"MSPS2", false, []string{"ACK 3 id1", "ACK 4 id2", "ACK 5 id3"}},
	} {
		t.Run(tc.version, func(t *testing.T) {
			t.Parallel()
			addr, lines := scriptedServer(t, tc.version)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			c, err := Dial(ctx, addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			si, err := c.SignIn(ctx, "alice", "pts/1", principal.Online, WithAcks())
			if err != nil || !si.Acks || si.BatchAcks != tc.batch {
				t.Fatalf("SignIn = %+v, %v; want Acks, BatchAcks %v", si, err, tc.batch)
			}
			if err := c.AckAll(ctx, []string{"id1", "id2", "id3"}); err != nil {
				t.Fatal(err)
			}
			for _, want := range tc.wantLines {
				if got := <-lines; got != want {
					t.Fatalf("server read %q, want %q", got, want)
				}
			}
		})
	}
}

// A client that does not ask for acknowledgements offers MSPS1 only and
// never sends ACK, whatever the server could speak.
func TestNoAcksOffersMSPS1(t *testing.T) {
	t.Parallel()
	addr, _ := scriptedServer(t, "MSPS1")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := Dial(ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	si, err := c.SignIn(ctx, "alice", "pts/1", principal.Online)
	if err != nil || si.Acks || si.BatchAcks {
		t.Fatalf("SignIn = %+v, %v; want no acks", si, err)
	}
}
