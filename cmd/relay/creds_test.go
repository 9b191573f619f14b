package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestGenCreds(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "creds")
	var out, errb bytes.Buffer
	if code := run([]string{"gen-creds", "--nodes", "a, b", "--out", dir}, env(), &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	for _, f := range []string{"auth.conf", "a.nk", "b.nk"} {
		st, err := os.Stat(filepath.Join(dir, f))
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v mode %v, want a 0600 file", f, err, st.Mode().Perm())
		}
	}
	if !strings.Contains(out.String(), "--config "+filepath.Join(dir, "auth.conf")) {
		t.Errorf("output %q does not say how to use the files", out.String())
	}
	out.Reset()
	if code := run([]string{"gen-creds", "--nodes", "c", "--out", t.TempDir(), "--passwords"}, env(), &out, &errb); code != 0 || !strings.Contains(out.String(), "c.pass") {
		t.Errorf("--passwords: exit %d, output %q", code, out.String())
	}
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"gen-creds", "--out", dir}, 2, "--nodes and --out are required"},
		{[]string{"gen-creds", "--nodes", "a.b", "--out", t.TempDir()}, 2, `node name "a.b"`},
		{[]string{"gen-creds", "--nodes", "a", "--out", dir}, 1, "already exists"},
		{[]string{"gen-creds", "--bogus"}, 2, "flag provided but not defined"},
	} {
		var out bytes.Buffer
		if code := run(tc.args, env(), &out, &out); code != tc.code || !strings.Contains(out.String(), tc.want) {
			t.Errorf("%q: exit %d output %q, want %d and %q", tc.args, code, out.String(), tc.code, tc.want)
		}
	}
}

// Issue 12: "relay listens on :4222 with no credentials and no warning".
// Now it refuses to, and says what to do.
func TestRelayRefusesOpenPort(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	if code := run(nil, env(), &out, &out); code != 2 || !strings.Contains(out.String(), "without credentials") || !strings.Contains(out.String(), "--insecure") {
		t.Fatalf("default relay: exit %d output %q, want 2 and a refusal naming --insecure", code, out.String())
	}
}
