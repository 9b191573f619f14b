package node_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/msprelay/msprelay/internal/testcluster"
	"github.com/msprelay/msprelay/msp"
	"github.com/msprelay/msprelay/node"
	"github.com/msprelay/msprelay/presence"
)

// Issue 12, item 9: "verify it when present, and show 'verified' only for
// verified senders". A node with a secrets file marks an MSP message
// verified only when its SIGNATURE matches the sender's secret; the message
// is delivered either way.
func TestSignedMSPMessageIsVerified(t *testing.T) {
	t.Parallel()
	secrets := filepath.Join(t.TempDir(), "secrets")
	if err := os.WriteFile(secrets, []byte("bob b0bsecret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := testcluster.Start(t, 1, testcluster.Options{Configure: func(_ int, cfg *node.Config) {
		cfg.SessionSecrets = secrets
	}})
	alice := c.SignIn(0, "alice", "pts/1", presence.Online)
	c.WaitPresent("alice", "pts/1", c.Name(0), true)
	for i, tc := range []struct {
		name     string
		secret   string
		network  string
		verified bool
	}{
		{"signed with the sender's secret over TCP", "b0bsecret", "tcp", true},
		{"signed with the sender's secret over UDP", "b0bsecret", "udp", true},
		{"signed with a guessed secret", "guess", "tcp", false},
		{"unsigned", "", "tcp", false},
	} {
		m := &msp.Message{Recipient: "alice", Text: tc.name + "\nline two", Sender: "bob", SenderTerm: "tty1", Cookie: "c" + string(rune('0'+i))}
		if tc.secret != "" {
			m.Signature = msp.Sign(m, []byte(tc.secret))
		}
		r, err := c.Send(0, tc.network, m)
		if err != nil || !r.OK {
			t.Fatalf("%s: send = %+v, %v", tc.name, r, err)
		}
		got := testcluster.NextMessage(t, alice, 5*time.Second)
		if got.Verified != tc.verified {
			t.Fatalf("%s: delivered with Verified=%v, want %v", tc.name, got.Verified, tc.verified)
		}
		// The identity is made once, at ingress, and says how.
		if want := map[bool]string{true: "signature", false: "none"}[tc.verified]; got.SenderMethod != want ||
			(tc.verified && got.SenderUser != "bob") {
			t.Fatalf("%s: sender method %q user %q, want %q", tc.name, got.SenderMethod, got.SenderUser, want)
		}
	}
}
