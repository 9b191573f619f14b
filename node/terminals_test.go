//go:build linux

package node_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/msprelay/msprelay/internal/ptytest"
	"github.com/msprelay/msprelay/internal/testcluster"
	"github.com/msprelay/msprelay/msp"
	"github.com/msprelay/msprelay/node"
	"github.com/msprelay/msprelay/principal"
	"github.com/msprelay/msprelay/switchboard"
	"github.com/msprelay/msprelay/terminal"
)

// ttyCluster starts n nodes; node 0 reads the utmp file it returns (in a
// temp dir) and publishes its logins as tty terminals.
func ttyCluster(t *testing.T, n int) (*testcluster.Cluster, string) {
	t.Helper()
	utmp := filepath.Join(t.TempDir(), "utmp")
	if err := terminal.WriteUtmp(utmp, nil); err != nil {
		t.Fatal(err)
	}
	c := testcluster.Start(t, n, testcluster.Options{Configure: func(i int, cfg *node.Config) {
		if i == 0 {
			cfg.Terminals, cfg.Utmp, cfg.TTYPoll = true, utmp, 20*time.Millisecond
		}
	}})
	return c, utmp
}

// login lists user on each pty (and nothing else) in utmp.
func login(t *testing.T, utmp, user string, ptys ...*ptytest.PTY) {
	t.Helper()
	var rs []terminal.Record
	for i, p := range ptys {
		rs = append(rs, terminal.Record{Type: terminal.UserProcess, PID: int32(100 + i), Line: p.Line, User: user, Time: time.Now()})
	}
	if err := terminal.WriteUtmp(utmp, rs); err != nil {
		t.Fatal(err)
	}
}

func sendMSP(t *testing.T, c *testcluster.Cluster, i int, m *msp.Message) msp.Reply {
	t.Helper()
	r, err := c.Send(i, "tcp", m)
	if err != nil {
		t.Fatalf("send: %v", err)
	}
	return r
}

func lookup(c *testcluster.Cluster, i int, user, term string) (principal.Entry, bool) {
	for _, e := range c.Node(i).Directory().Lookup(user) {
		if e.Term == term {
			return e, true
		}
	}
	return principal.Entry{}, false
}

// Rule (issue 9): "when the chosen terminal is a tty ... the node opens the
// device ... and writes a banner and the message", the reply says
// "+delivered to bob at pts/0 on hosta (terminal)", the login is a tty
// terminal in every node's directory, mesg n refuses, and after the logout
// the user is known for the mailbox.
func TestTTYLoginDeliveryThroughMSP(t *testing.T) {
	t.Parallel()
	c, utmp := ttyCluster(t, 2)
	pt := ptytest.Open(t, os.Getuid(), 0o620)
	login(t, utmp, "root", pt)
	c.WaitPresent("root", pt.Line, c.Name(0), true)
	e, _ := lookup(c, 1, "root", pt.Line)
	if e.Kind != principal.KindTTY || e.State != principal.Online {
		t.Fatalf("entry seen on n2 = %+v, want a tty, online", e)
	}

	// Through the real MSP server of the other node, over NATS to n1.
	r := sendMSP(t, c, 1, &msp.Message{Version: msp.Version2, Recipient: "root", Text: "lunch at 12?\r\ncaf\xe9", Sender: "alice", SenderTerm: "pts/9"})
	want := fmt.Sprintf("delivered to root at %s on n1 (terminal)", pt.Line)
	if !r.OK || r.Text != want {
		t.Fatalf("reply = %+v, want +%s", r, want)
	}
	got := pt.ReadUntil(t, "EOF\r\n", 5*time.Second)
	// Unauthenticated MSP: the banner says so, with where it came from
	// (issue 18).
	banner := regexp.MustCompile(`^\r\nMessage from UNVERIFIED "alice" \(via n2 from 127\.0\.0\.1:\d+\) on pts/9 at \d\d:\d\d \.\.\.\r\nlunch at 12\?\r\ncafé\r\nEOF\r\n$`)
	if !banner.MatchString(got) {
		t.Fatalf("terminal shows %q", got)
	}

	// mesg n: the state turns busy cluster-wide and the message is refused.
	pt.Chmod(t, 0o600)
	testcluster.WaitFor(t, 10*time.Second, "busy on n2", func() bool {
		e, ok := lookup(c, 1, "root", pt.Line)
		return ok && e.State == principal.Busy
	})
	r = sendMSP(t, c, 1, &msp.Message{Version: msp.Version2, Recipient: "root", Text: "hello?", Sender: "alice", SenderTerm: "pts/9"})
	want = fmt.Sprintf("root at %s on n1: not accepting messages (mesg n)", pt.Line)
	if r.OK || r.Text != want {
		t.Fatalf("reply = %+v, want -%s", r, want)
	}
	pt.ReadNothing(t, 200*time.Millisecond)

	// Logout: gone everywhere, and root is now known, so mail is queued.
	login(t, utmp, "root")
	c.WaitPresent("root", pt.Line, c.Name(0), false)
	r = sendMSP(t, c, 1, &msp.Message{Version: msp.Version2, Recipient: "root", Text: "later", Sender: "alice"})
	if !r.OK || r.Text != "queued for root" {
		t.Fatalf("reply after logout = %+v, want +queued for root", r)
	}

	// The next login (mesg y) gets the queued message on its tty.
	pt.Chmod(t, 0o620)
	login(t, utmp, "root", pt)
	if got := pt.ReadUntil(t, "later\r\nEOF\r\n", 10*time.Second); !strings.Contains(got, `Message from UNVERIFIED "alice" (via n2 from 127.0.0.1:`) {
		t.Fatalf("queued message on the next login shows %q", got)
	}
}

// Rule (issue 9): the tty flags are checked like every other flag.
func TestTTYConfigValidated(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		modify func(*node.Config)
		// offToo: refused with terminals off as well. Issue 19: a
		// number out of range is refused whatever else is set; the
		// settings only terminals use are not checked without them.
		offToo bool
	}{
		"unknown charset": {func(c *node.Config) { c.TTYCharset = "EBCDIC" }, false},
		"empty utmp":      {func(c *node.Config) { c.Utmp = "" }, false},
		"negative idle":   {func(c *node.Config) { c.TTYIdle = -time.Second }, true},
	} {
		cfg := node.DefaultConfig()
		cfg.DataDir = t.TempDir()
		tc.modify(&cfg)
		if _, err := node.New(cfg); !errors.Is(err, node.ErrConfig) {
			t.Errorf("%s: New = %v, want ErrConfig", name, err)
		}
		cfg.Terminals = false
		if _, err := node.New(cfg); tc.offToo != (err != nil) {
			t.Errorf("%s with --terminals=off: New = %v, want refused %v", name, err, tc.offToo)
		}
	}
}

// Rule (issue 9): "no escape sequence can ever reach a terminal". MSP
// refuses such octets at the door, and so does a node receiving a delivery
// from another node (issue 12: "re-validates every delivery by the MSP
// rules"); a delivery that gets past both (here: handed straight to the
// tty's own switchboard) is still rendered safely on the tty.
func TestTTYRendersHostileDeliverySafely(t *testing.T) {
	t.Parallel()
	c, utmp := ttyCluster(t, 2)
	pt := ptytest.Open(t, os.Getuid(), 0o620)
	login(t, utmp, "root", pt)
	c.WaitPresent("root", pt.Line, c.Name(0), true)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	hostile := "\x1b[2J\x1b[H\x1b]0;owned\x07\x1b]52;c;aGk=\x1b\\\x9b31m\x9d2;x\x9c\xe2\x80\xae\xe2\x81\xa6\x7f\rfake\n"
	d := &switchboard.Delivery{ID: "hostile-1", Recipient: "root", Sender: "eve\x1b[1m",
		SenderTerm: "\x9b", Text: hostile, Origin: switchboard.Origin{Node: "n2", Transport: "session"}, Time: time.Now()}
	if o := c.Node(1).Switchboard().Send(ctx, d); o.Delivered() || !strings.Contains(o.Summary(), "invalid delivery from n2") {
		t.Fatalf("hostile delivery from n2 = %s, want refused by n1 on receipt", o.Summary())
	}
	if o := c.Node(0).Switchboard().Send(ctx, d); !o.Delivered() {
		t.Fatalf("outcome = %s", o.Summary())
	}
	got := pt.ReadUntil(t, "EOF\r\n", 5*time.Second)
	wantText := `^[[2J^[[H^[]0;owned^G^[]52;c;aGk=^[\\x9b31m\x9d2;x\x9câ\x80®â\x81¦^?^Mfake` + "\r\nEOF\r\n"
	if !strings.HasPrefix(got, "\r\nMessage from UNVERIFIED \"eve^[[1m\" (via n2) on \\x9b at ") || !strings.HasSuffix(got, " ...\r\n"+wantText) {
		t.Fatalf("terminal shows %q, want the text %q", got, wantText)
	}
	for i := 0; i < len(got); i++ {
		if b := got[i]; b == 0x1b || b == 0x07 || b == 0x7f || b >= 0x80 && b < 0xa0 && (i == 0 || got[i-1] != 0xc2 && got[i-1] != 0xc3) {
			t.Fatalf("control octet %#x at %d reached the terminal: %q", b, i, got)
		}
	}
}

// Rule (RFC 1312 via issue 9): "the right terminal" is the most recently
// active one that accepts messages: of two ttys the less idle one gets the
// message, and with it on mesg n the other one does.
func TestTTYRightTerminalIsLeastIdle(t *testing.T) {
	t.Parallel()
	c, utmp := ttyCluster(t, 1)
	stale := ptytest.Open(t, os.Getuid(), 0o620)
	stale.SetIdle(t, 2*time.Hour)
	fresh := ptytest.Open(t, os.Getuid(), 0o620)
	fresh.SetIdle(t, 5*time.Second)
	login(t, utmp, "root", stale, fresh)
	c.WaitPresent("root", stale.Line, c.Name(0), true)
	c.WaitPresent("root", fresh.Line, c.Name(0), true)
	e, _ := lookup(c, 0, "root", stale.Line)
	if e.State != principal.Idle {
		t.Fatalf("a tty idle for 2h is %v, want idle (--tty-idle 10m)", e.State)
	}
	r := sendMSP(t, c, 0, &msp.Message{Version: msp.Version2, Recipient: "root", Text: "to the fresh one", Sender: "alice"})
	if want := "delivered to root at " + fresh.Line + " on n1 (terminal)"; !r.OK || r.Text != want {
		t.Fatalf("reply = %+v, want +%s", r, want)
	}
	fresh.ReadUntil(t, "to the fresh one\r\nEOF\r\n", 5*time.Second)
	stale.ReadNothing(t, 100*time.Millisecond)

	fresh.Chmod(t, 0o600)
	testcluster.WaitFor(t, 10*time.Second, "fresh tty busy", func() bool {
		e, ok := lookup(c, 0, "root", fresh.Line)
		return ok && e.State == principal.Busy
	})
	r = sendMSP(t, c, 0, &msp.Message{Version: msp.Version2, Recipient: "root", Text: "to the stale one", Sender: "alice"})
	if want := "delivered to root at " + stale.Line + " on n1 (terminal)"; !r.OK || r.Text != want {
		t.Fatalf("reply = %+v, want +%s", r, want)
	}
	stale.ReadUntil(t, "to the stale one\r\nEOF\r\n", 5*time.Second)
	fresh.ReadNothing(t, 100*time.Millisecond)
}

// Rule (issue 9): the device must "really belong to that login (owner uid
// matches the user)": a tty listed for root but owned by another uid is not
// shown and gets nothing.
func TestTTYOwnedByAnotherUIDIsNotUsed(t *testing.T) {
	t.Parallel()
	c, utmp := ttyCluster(t, 1)
	mine := ptytest.Open(t, os.Getuid(), 0o620)
	theirs := ptytest.Open(t, 65534, 0o620)
	login(t, utmp, "root", theirs, mine)
	c.WaitPresent("root", mine.Line, c.Name(0), true)
	if _, ok := lookup(c, 0, "root", theirs.Line); ok {
		t.Fatalf("%s owned by uid 65534 is listed for root", theirs.Line)
	}
	r := sendMSP(t, c, 0, &msp.Message{Version: msp.Version2, Recipient: "root", RecipTerm: theirs.Line, Text: "x", Sender: "alice"})
	if r.OK {
		t.Fatalf("reply for the foreign tty = %+v, want a refusal", r)
	}
	theirs.ReadNothing(t, 100*time.Millisecond)
}

// Rule (issue 9): "Writes use a deadline so a stuck terminal cannot block
// delivery": the most recent tty has its output stopped (^S), the write
// times out, and the message goes to the next terminal.
func TestTTYStuckTerminalFallsBack(t *testing.T) {
	t.Parallel()
	c, utmp := ttyCluster(t, 1)
	stuck := ptytest.Open(t, os.Getuid(), 0o620)
	stuck.SetIdle(t, time.Second)
	other := ptytest.Open(t, os.Getuid(), 0o620)
	other.SetIdle(t, time.Hour)
	login(t, utmp, "root", stuck, other)
	c.WaitPresent("root", stuck.Line, c.Name(0), true)
	c.WaitPresent("root", other.Line, c.Name(0), true)
	stuck.Stop(t)
	start := time.Now()
	r := sendMSP(t, c, 0, &msp.Message{Version: msp.Version2, Recipient: "root", Text: strings.Repeat("long line ", 40), Sender: "alice"})
	want := fmt.Sprintf("delivered to root at %s on n1 (terminal; after %s@n1 terminal not reading (write timed out))", other.Line, stuck.Line)
	if !r.OK || r.Text != want {
		t.Fatalf("reply = %+v, want +%s", r, want)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("delivery took %v past a stuck terminal (deliver timeout 2s)", d)
	}
	other.ReadUntil(t, "EOF\r\n", 5*time.Second)
}
