package session

import (
	"strings"
	"testing"

	"github.com/msprelay/msprelay/identity"
	"github.com/msprelay/msprelay/sessionproto"
	"github.com/msprelay/msprelay/switchboard"
)

// Issue 18: "Every screen shows it": a pushed MSG carries how the sender
// was established and, for a local user who claimed another name, both
// the claim and the real user, so that a client can show "UNVERIFIED root
// (sent by local user mallory)".
func TestPushCarriesTheSenderIdentity(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name          string
		id            identity.Identity
		sender        string
		verified      bool
		impersonation bool
		headers       []string
	}{
		{"a local user claiming root is pushed as both", identity.Identity{User: "mallory", Claimed: "root", Method: identity.Kernel, Node: "n1"},
			"root", false, true, []string{"Verified: no\r\n", "Sender-Method: kernel\r\n", "Sender-User: mallory\r\n"}},
		{"a signed sender is pushed verified", identity.Identity{User: "bob", Claimed: "bob", Method: identity.Signature, Node: "n1"},
			"bob", true, false, []string{"Verified: yes\r\n", "Sender-Method: signature\r\n", "Sender-User: bob\r\n"}},
		{"a bare claim is pushed unverified, with no user", identity.Identity{Claimed: "root", Node: "n1"},
			"root", false, false, []string{"Verified: no\r\n", "Sender-Method: none\r\n"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := &switchboard.Delivery{ID: "k", Recipient: "alice", Sender: tc.sender, Text: "hi",
				Origin: switchboard.Origin{Node: "n1", Addr: "127.0.0.1:9", Transport: "tcp", Sender: tc.id}}
			m := messageFromDelivery(d)
			p := sessionproto.AppendMessage(nil, &m)
			for _, h := range tc.headers {
				if !strings.Contains(string(p), h) {
					t.Errorf("payload %q lacks %q", p, h)
				}
			}
			if tc.id.User == "" && strings.Contains(string(p), "Sender-User") {
				t.Errorf("payload %q names a user nobody proved", p)
			}
			back, err := sessionproto.ParseMessage(p)
			if err != nil {
				t.Fatal(err)
			}
			if back.Verified != tc.verified || back.Impersonation() != tc.impersonation || back.SenderUser != tc.id.User ||
				back.SenderMethod != tc.id.Method.String() {
				t.Fatalf("client reads %+v: verified %v impersonation %v", back, back.Verified, back.Impersonation())
			}
		})
	}
}
