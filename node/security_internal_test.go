package node

import (
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/msprelay/msprelay/msp"
	"github.com/msprelay/msprelay/secrets"
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
	secretsFile := filepath.Join(t.TempDir(), "secrets")
	if err := os.WriteFile(secretsFile, []byte("alice s3cret\n"), 0o600); err != nil {
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
	st, err := secrets.Open(secretsFile)
	if err != nil {
		t.Fatal(err)
	}
	maxAge, skew := signatureBounds(0)
	withFile := signatures{store: st, maxAge: maxAge, skew: skew, now: time.Now, log: log}
	withoutFile := signatures{maxAge: maxAge, skew: skew, now: time.Now, log: log}
	for _, tc := range []struct {
		name string
		s    *signatures
		m    *msp.Message
		want bool
	}{
		{"signed with the sender's secret", &withFile, msg("Alice", "s3cret"), true},
		{"unsigned", &withFile, msg("alice", ""), false},
		{"signed with another secret", &withFile, msg("alice", "guess"), false},
		{"sender without a secret", &withFile, msg("mallory", "s3cret"), false},
		{"no secrets file configured", &withoutFile, msg("alice", "s3cret"), false},
	} {
		if got, err := tc.s.check(tc.m); got != tc.want || err != nil {
			t.Errorf("%s: check = %v, %v, want %v", tc.name, got, err, tc.want)
		}
	}
}
