package node

import (
	"context"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/msprelay/msprelay/identity"
	"github.com/msprelay/msprelay/msp"
)

// peerWriter is an msp.ResponseWriter whose only answer that matters is
// the sending socket's owner.
type peerWriter struct{ peer msp.Peer }

func (peerWriter) Ack(string) error         { return nil }
func (peerWriter) Nack(string) error        { return nil }
func (peerWriter) RemoteAddr() net.Addr     { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9} }
func (peerWriter) RemoteAddrString() string { return "127.0.0.1:9" }
func (peerWriter) LocalAddr() net.Addr      { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 18} }
func (peerWriter) Network() string          { return "tcp" }
func (peerWriter) Context() context.Context { return context.Background() }
func (w peerWriter) Peer() msp.Peer         { return w.peer }

// Issue 18: the identity is "a value attached at ingress and never
// re-derived from claims": a signature that verifies first (it proves the
// SENDER itself), then the kernel's word on the socket, else nothing; the SENDER stays a claim
// either way.
func TestIngressMakesTheIdentityOnce(t *testing.T) {
	t.Parallel()
	secrets := filepath.Join(t.TempDir(), "secrets")
	if err := os.WriteFile(secrets, []byte("bob b0bsecret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	n := &Node{cfg: Config{Name: "n1", SessionSecrets: secrets}, log: slog.New(slog.DiscardHandler)}
	signed := func(sender string) *msp.Message {
		m := &msp.Message{Version: msp.Version2, Recipient: "alice", Sender: sender, Text: "hi", Cookie: "c1"}
		m.Signature = msp.Sign(m, []byte("b0bsecret"))
		return m
	}
	mallory := msp.Peer{Local: true, Known: true, UID: 1001, User: "mallory"}
	for _, tc := range []struct {
		name     string
		peer     msp.Peer
		m        *msp.Message
		want     identity.Identity
		verified bool
	}{
		{"a local user under her own name is verified by the kernel", mallory,
			&msp.Message{Sender: "mallory", Text: "hi"},
			identity.Identity{User: "mallory", Claimed: "mallory", Method: identity.Kernel}, true},
		{"a local user without a SENDER is verified by the kernel", mallory,
			&msp.Message{Text: "hi"},
			identity.Identity{User: "mallory", Method: identity.Kernel}, true},
		{"a local user claiming root is shown as both", mallory,
			&msp.Message{Sender: "root", Text: "hi"},
			identity.Identity{User: "mallory", Claimed: "root", Method: identity.Kernel}, false},
		{"a signature proves the SENDER even from another local account", mallory, signed("bob"),
			identity.Identity{User: "bob", Claimed: "bob", Method: identity.Signature}, true},
		{"a signature that verifies proves the SENDER", msp.Peer{}, signed("bob"),
			identity.Identity{User: "bob", Claimed: "bob", Method: identity.Signature}, true},
		{"an owner the kernel does not name proves nothing", msp.Peer{Local: true}, &msp.Message{Sender: "root", Text: "hi"},
			identity.Identity{Claimed: "root"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := n.senderIdentity(peerWriter{tc.peer}, tc.m, "127.0.0.1:9", tc.m.Signature != "")
			want := tc.want
			want.Node, want.Source = "n1", "127.0.0.1:9"
			if got != want || got.Verified() != tc.verified {
				t.Fatalf("identity %+v (verified %v), want %+v (verified %v)", got, got.Verified(), want, tc.verified)
			}
		})
	}
}

// Issue 19: "Revision ... live[s] in the delivery's origin, not in ctx".
func TestRevisionNamesTheMSPVersion(t *testing.T) {
	t.Parallel()
	if revision(msp.Version1) != "A" || revision(msp.Version2) != "B" {
		t.Fatalf("revisions %q %q", revision(msp.Version1), revision(msp.Version2))
	}
}
