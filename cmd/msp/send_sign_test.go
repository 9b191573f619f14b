package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/msprelay/msprelay/internal/testcluster"
	"github.com/msprelay/msprelay/msp"
	"github.com/msprelay/msprelay/node"
	"github.com/msprelay/msprelay/principal"
)

// Issue 18, item 6: "`msp send` uses it" (the signature scheme with a
// time). With --secret-file, msp send signs with hm2 and the node shows the
// message as verified; a wrong secret gives an unverified message.
func TestSendSignsWithTheTimedScheme(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	nodeSecrets := write("secrets", "bob b0bsecret\n")
	good, bad := write("good", "b0bsecret\n"), write("bad", "guess\n")
	c := testcluster.Start(t, 1, testcluster.Options{Configure: func(_ int, cfg *node.Config) { cfg.SessionSecrets = nodeSecrets }})
	alice := c.SignIn(0, "alice", "pts/1", principal.Online)
	srv := c.MSPAddr(0)
	for _, tc := range []struct {
		name     string
		file     string
		network  string
		verified bool
	}{
		{"the sender's secret over TCP", good, "", true},
		{"the sender's secret over UDP", good, "--udp", true},
		{"a wrong secret", bad, "", false},
	} {
		args := []string{"send", "--server", srv, "--from", "bob", "--from-term", "tty1", "--secret-file", tc.file}
		if tc.network != "" {
			args = append(args, tc.network)
		}
		before := time.Now().Add(-time.Second)
		if r := runCLI(t, "", append(args, "alice", tc.name)...); r.code != 0 {
			t.Fatalf("%s: exit %d: %s", tc.name, r.code, r.stderr)
		}
		m := testcluster.NextMessage(t, alice, 10*time.Second)
		if m.Text != tc.name || m.Verified != tc.verified {
			t.Fatalf("%s: got %q verified=%v, want verified=%v", tc.name, m.Text, m.Verified, tc.verified)
		}
		st, ok := msp.SignatureTime(m.Signature)
		if !strings.HasPrefix(m.Signature, msp.SignaturePrefixTimed) || !ok || st.Before(before.Truncate(time.Second)) || st.After(time.Now()) {
			t.Fatalf("%s: signature %q (time %v), want hm2 made during the send", tc.name, m.Signature, st)
		}
	}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"with --v1", []string{"--v1"}, "not with --v1"},
		{"with --signature", []string{"--signature", "x"}, "or --signature"},
		{"an empty file", []string{"--secret-file", write("empty", "\n")}, "is empty"},
		{"a missing file", []string{"--secret-file", filepath.Join(dir, "none")}, "no such file"},
	} {
		args := append([]string{"send", "--server", srv, "--from", "bob", "--secret-file", good}, tc.args...)
		if r := runCLI(t, "", append(args, "alice", "hi")...); r.code != exitUsage || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("%s: exit %d, stderr %q; want %d and %q", tc.name, r.code, r.stderr, exitUsage, tc.want)
		}
	}
}
