package node

import (
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/msprelay/msprelay/msp"
)

// Issue 12: "`trust` mode refuses non-loopback addresses unless
// `--session-auth-insecure` is given".
func TestTrustListensOnLoopbackOnly(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		addr     string
		insecure bool
		ok       bool
	}{
		{"127.0.0.1:0", false, true},
		{"[::1]:0", false, true},
		{"localhost:0", false, true},
		{":1863", false, false},
		{"0.0.0.0:1863", false, false},
		{"192.0.2.1:1863", false, false},
		{":1863", true, true},
	} {
		c := DefaultConfig()
		c.Name = "n1"
		c.DataDir = t.TempDir()
		c.SessionSocket = ""
		c.SessionAddr = tc.addr
		c.SessionAuth = AuthTrust
		c.SessionAuthInsecure = tc.insecure
		err := c.validate()
		if tc.ok != (err == nil) {
			t.Errorf("trust on %s (insecure %v): validate = %v, want ok=%v", tc.addr, tc.insecure, err, tc.ok)
		}
		if err != nil && !errors.Is(err, ErrConfig) {
			t.Errorf("error %v is not ErrConfig", err)
		}
	}
}

// Issue 12: a data directory others may write to is refused.
func TestDataDirMustBePrivate(t *testing.T) {
	t.Parallel()
	d := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(d, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(d, 0o777); err != nil {
		t.Fatal(err)
	}
	c := DefaultConfig()
	c.Name = "n1"
	c.SessionSocket = ""
	c.DataDir = d
	if err := c.validate(); !errors.Is(err, ErrConfig) {
		t.Fatalf("validate with a world-writable data dir = %v, want ErrConfig", err)
	}
	if err := os.Chmod(d, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := c.validate(); err != nil {
		t.Fatalf("validate with a private data dir = %v", err)
	}
}

// Issue 12, item 9: "show 'verified' only for verified senders".
func TestSignatureVerifiedOnlyForKnownSenders(t *testing.T) {
	t.Parallel()
	secrets := filepath.Join(t.TempDir(), "secrets")
	if err := os.WriteFile(secrets, []byte("alice s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	msg := func(sender, secret string) *msp.Message {
		m := &msp.Message{Recipient: "bob", Text: "hi", Sender: sender, Cookie: "1"}
		if secret != "" {
			m.Signature = msp.Sign(m, []byte(secret))
		}
		return m
	}
	var s signatures
	for _, tc := range []struct {
		name string
		path string
		m    *msp.Message
		want bool
	}{
		{"signed with the sender's secret", secrets, msg("Alice", "s3cret"), true},
		{"unsigned", secrets, msg("alice", ""), false},
		{"signed with another secret", secrets, msg("alice", "guess"), false},
		{"sender without a secret", secrets, msg("mallory", "s3cret"), false},
		{"no secrets file configured", "", msg("alice", "s3cret"), false},
	} {
		if got := s.verified(tc.path, tc.m, log); got != tc.want {
			t.Errorf("%s: verified = %v, want %v", tc.name, got, tc.want)
		}
	}
}
