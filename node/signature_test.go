package node_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/msprelay/msprelay/internal/testcluster"
	"github.com/msprelay/msprelay/msp"
	"github.com/msprelay/msprelay/node"
	"github.com/msprelay/msprelay/principal"
	"github.com/msprelay/msprelay/sessionclient"
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
	alice := c.SignIn(0, "alice", "pts/1", principal.Online)
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
		// The identity is made once, at ingress, and says how. Without a
		// valid signature the kernel may still name the local account that
		// sent it (this test's own), which is then not bob.
		switch {
		case tc.verified && (got.SenderMethod != "signature" || got.SenderUser != "bob"):
			t.Fatalf("%s: sender method %q user %q, want signature bob", tc.name, got.SenderMethod, got.SenderUser)
		case !tc.verified && got.SenderMethod != "none" && (got.SenderMethod != "kernel" || got.SenderUser == "bob"):
			t.Fatalf("%s: sender method %q user %q, want none, or kernel naming this test's account", tc.name, got.SenderMethod, got.SenderUser)
		}
	}
}

// writeSecrets writes a node secrets file of mode 0600.
func writeSecrets(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// Issue 18, "Signed messages replay": "A captured hm1: message re-sent from
// another address is delivered again as verified, under a new id (the id
// includes the source address)." Item 6: "A signed message's id does not
// depend on the source address, so a replay within --dedup-window is a
// repeat." The capture is re-sent byte for byte from other loopback
// addresses, over TCP and UDP, to the recipient's node and to another one.
func TestSignedReplayFromAnotherAddressIsARepeat(t *testing.T) {
	t.Parallel()
	secrets := filepath.Join(t.TempDir(), "secrets")
	writeSecrets(t, secrets, "bob b0bsecret\n")
	c := testcluster.Start(t, 2, testcluster.Options{Configure: func(_ int, cfg *node.Config) {
		cfg.SessionSecrets = secrets
	}})
	alice := c.SignIn(0, "alice", "pts/1", principal.Online)
	c.WaitPresent("alice", "pts/1", c.Name(0), true)
	for _, scheme := range []struct {
		name string
		sign func(m *msp.Message) string
	}{
		{"hm1", func(m *msp.Message) string { return msp.Sign(m, []byte("b0bsecret")) }},
		{"hm2", func(m *msp.Message) string { return msp.SignAt(m, []byte("b0bsecret"), time.Now()) }},
	} {
		captured := &msp.Message{Version: msp.Version2, Recipient: "alice", Text: "pay 100 to mallory (" + scheme.name + ")",
			Sender: "bob", SenderTerm: "tty1", Cookie: msp.NewCookie()}
		captured.Signature = scheme.sign(captured)
		r, err := c.Send(0, "tcp", captured)
		if err != nil || !r.OK {
			t.Fatalf("%s: first send = %+v, %v", scheme.name, r, err)
		}
		if got := testcluster.NextMessage(t, alice, 5*time.Second); got.Text != captured.Text || !got.Verified {
			t.Fatalf("%s: first copy arrived as %q verified=%v", scheme.name, got.Text, got.Verified)
		}
		for _, replay := range []struct {
			name    string
			node    int
			network string
			ip      string
		}{
			{"TCP from another address to the same node", 0, "tcp", "127.0.0.2"},
			{"UDP from another address to the same node", 0, "udp", "127.0.0.3"},
			{"TCP from another address to another node", 1, "tcp", "127.0.0.4"},
		} {
			r, err := c.SendFrom(replay.node, replay.network, replay.ip, captured)
			if err != nil || !r.OK || !strings.Contains(r.Text, "already delivered") {
				t.Fatalf("%s, replayed %s: reply %+v, %v; want a repeat (+... already delivered)", scheme.name, replay.name, r, err)
			}
		}
		// Nothing of the replays reached her: the next message she gets is
		// a new one.
		fresh := &msp.Message{Version: msp.Version2, Recipient: "alice", Text: "fresh after " + scheme.name, Sender: "bob", SenderTerm: "tty1"}
		if r, err := c.Send(0, "tcp", fresh); err != nil || !r.OK {
			t.Fatalf("fresh send = %+v, %v", r, err)
		}
		if got := testcluster.NextMessage(t, alice, 5*time.Second); got.Text != fresh.Text {
			t.Fatalf("%s: after the replays alice got %q, want %q", scheme.name, got.Text, fresh.Text)
		}
	}
}

// Issue 18, item 6: "a signature scheme with a time in it lets a node
// refuse a capture older than the window". A genuine hm2 signature older
// than --dedup-window (minus the skew allowance, docs/MSP.md) or too far
// ahead is refused over TCP with the reason and not delivered; over UDP it
// gets no answer. A stale time under a MAC that does not match is just an
// unverified message.
func TestStaleTimedSignatureIsRefused(t *testing.T) {
	t.Parallel()
	secrets := filepath.Join(t.TempDir(), "secrets")
	writeSecrets(t, secrets, "bob b0bsecret\n")
	const window = 5 * time.Minute // the default --dedup-window
	c := testcluster.Start(t, 1, testcluster.Options{Configure: func(_ int, cfg *node.Config) {
		cfg.SessionSecrets = secrets
		cfg.DedupWindow = window
	}})
	alice := c.SignIn(0, "alice", "pts/1", principal.Online)
	c.WaitPresent("alice", "pts/1", c.Name(0), true)
	for i, tc := range []struct {
		name     string
		secret   string
		age      time.Duration // before now; negative: ahead
		network  string
		refusal  string // "" means delivered
		verified bool
	}{
		{"signed now", "b0bsecret", 0, "tcp", "", true},
		{"signed a minute ago", "b0bsecret", time.Minute, "tcp", "", true},
		{"signed longer ago than the window", "b0bsecret", window + time.Second, "tcp", "signature too old", false},
		{"signed 4m50s ago: within the window, past its skew allowance", "b0bsecret", window - 10*time.Second, "tcp", "signature too old", false},
		{"signed a day ago", "b0bsecret", 24 * time.Hour, "tcp", "signature too old", false},
		{"signed ten minutes ahead", "b0bsecret", -10 * time.Minute, "tcp", "signature time is in the future", false},
		{"signed longer ago than the window, over UDP", "b0bsecret", window + time.Second, "udp", "no answer", false},
		{"an old time under a wrong MAC", "guess", time.Hour, "tcp", "", false},
	} {
		m := &msp.Message{Version: msp.Version2, Recipient: "alice", Text: tc.name, Sender: "bob", SenderTerm: "tty1", Cookie: fmt.Sprintf("c%d", i)}
		m.Signature = msp.SignAt(m, []byte(tc.secret), time.Now().Add(-tc.age))
		r, err := c.Send(0, tc.network, m)
		switch {
		case tc.refusal == "":
			if err != nil || !r.OK {
				t.Fatalf("%s: reply %+v, %v; want delivered", tc.name, r, err)
			}
			if got := testcluster.NextMessage(t, alice, 5*time.Second); got.Text != tc.name || got.Verified != tc.verified {
				t.Fatalf("%s: delivered %q verified=%v, want verified=%v", tc.name, got.Text, got.Verified, tc.verified)
			}
		case tc.network == "udp":
			// msp send treats both alike: no acknowledgement.
			if !errors.Is(err, msp.ErrNoReply) && !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("%s: reply %+v, %v; want no answer", tc.name, r, err)
			}
		default:
			if err != nil || r.OK || r.Text != tc.refusal {
				t.Fatalf("%s: reply %+v, %v; want -%s", tc.name, r, err, tc.refusal)
			}
		}
	}
	// None of the refused messages reached her.
	last := &msp.Message{Version: msp.Version2, Recipient: "alice", Text: "last", Sender: "bob"}
	if r, err := c.Send(0, "tcp", last); err != nil || !r.OK {
		t.Fatalf("last send = %+v, %v", r, err)
	}
	if got := testcluster.NextMessage(t, alice, 5*time.Second); got.Text != "last" {
		t.Fatalf("after the refusals alice got %q, want \"last\"", got.Text)
	}
}

// Issue 18, "SIGHUP does not reload the secrets that MSP signatures are
// checked against"; item 6: "SIGHUP reloads the secrets for both session
// sign-ins and signatures". After Reload (what SIGHUP calls) a new user's
// secret and a changed one work for both, the replaced one for neither;
// a reload that fails keeps the secrets in use.
func TestReloadMakesANewSecretValidForSignInAndSignature(t *testing.T) {
	t.Parallel()
	secrets := filepath.Join(t.TempDir(), "secrets")
	writeSecrets(t, secrets, "alice a-one\ncarol c-one\n")
	c := testcluster.Start(t, 1, testcluster.Options{Configure: func(_ int, cfg *node.Config) {
		cfg.SessionAuth = node.AuthSecret
		cfg.SessionSecrets = secrets
	}})
	signIn := func(user, secret string) (*sessionclient.Client, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		cl, err := sessionclient.Dial(ctx, c.Node(0).Addrs().Session)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cl.Close() })
		_, err = cl.SignIn(ctx, user, "pts/"+secret, principal.Online, sessionclient.WithSecret(secret))
		return cl, err
	}
	carol, err := signIn("carol", "c-one")
	if err != nil {
		t.Fatal(err)
	}
	c.WaitPresent("carol", "pts/c-one", c.Name(0), true)
	n := 0
	check := func(when, sender, secret string, signInOK, verified bool) {
		t.Helper()
		if _, err := signIn(sender, secret); (err == nil) != signInOK {
			t.Errorf("%s: sign-in of %s with %q: %v, want ok=%v", when, sender, secret, err, signInOK)
		}
		n++
		m := &msp.Message{Version: msp.Version2, Recipient: "carol", Text: fmt.Sprintf("%s: %s with %s", when, sender, secret),
			Sender: sender, SenderTerm: "tty1", Cookie: fmt.Sprintf("r%d", n)}
		m.Signature = msp.SignAt(m, []byte(secret), time.Now())
		if r, err := c.Send(0, "tcp", m); err != nil || !r.OK {
			t.Fatalf("%s: send = %+v, %v", when, r, err)
		}
		if got := testcluster.NextMessage(t, carol, 5*time.Second); got.Text != m.Text || got.Verified != verified {
			t.Errorf("%s: %q arrived verified=%v, want %v", when, got.Text, got.Verified, verified)
		}
	}
	check("before the reload", "alice", "a-one", true, true)
	check("before the reload", "bob", "b-new", false, false)
	writeSecrets(t, secrets, "alice a-two\nbob b-new\ncarol c-one\n")
	if err := c.Node(0).Reload(); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	check("after the reload", "bob", "b-new", true, true)
	check("after the reload", "alice", "a-two", true, true)
	check("after the reload", "alice", "a-one", false, false)
	writeSecrets(t, secrets, "alice a-three\nbob\n") // bob has no secret: the file is refused
	if err := c.Node(0).Reload(); err == nil {
		t.Fatal("Reload of a broken file succeeded")
	}
	check("after a failed reload", "bob", "b-new", true, true)
	check("after a failed reload", "alice", "a-three", false, false)
}

// The secrets file is read once at start for sign-ins and signatures
// alike: one that cannot be used stops the start and names the field (it
// used to be read at the first signed message, and a bad file only made
// every signature unverified, with one log line).
func TestUnusableSecretsFileStopsTheStart(t *testing.T) {
	t.Parallel()
	secrets := filepath.Join(t.TempDir(), "secrets")
	if err := os.WriteFile(secrets, []byte("bob b0bsecret\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := node.DefaultConfig()
	cfg.Name = "s1"
	cfg.MSPAddr = "127.0.0.1:0"
	cfg.SessionAddr, cfg.SessionSocket = "", ""
	cfg.GossipAddr, cfg.GossipProfile = "127.0.0.1:0", "local"
	cfg.DataDir = t.TempDir()
	cfg.Terminals = false
	cfg.SessionSecrets = secrets
	n, err := node.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = n.Start(ctx)
	var fe *node.FieldError
	if !errors.As(err, &fe) || fe.Field != "SessionSecrets" || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("Start with a secrets file others can read = %v, want a SessionSecrets error", err)
	}
}
