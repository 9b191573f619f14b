package broker

import (
	"errors"
	"log/slog"
	"path/filepath"
	"testing"
)

// Issue 12: "the relay refuses to listen on a non-loopback address without
// credentials unless told --insecure".
func TestNoOpenPortWithoutCredentials(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"all interfaces, no credentials: refused", Config{Name: "n", Listen: ":0"}, false},
		{"an address beyond loopback, no credentials: refused", Config{Name: "n", Listen: "0.0.0.0:0"}, false},
		{"a leafnode port beyond loopback, no credentials: refused", Config{Name: "n", Listen: "127.0.0.1:0", Leafnode: ":0"}, false},
		{"loopback needs nothing", Config{Name: "n", Listen: "127.0.0.1:0", Leafnode: "[::1]:0"}, true},
		{"localhost needs nothing", Config{Name: "n", Listen: "localhost:0"}, true},
		{"no listener at all (in-process) needs nothing", Config{Name: "n"}, true},
		{"a user and password are credentials", Config{Name: "n", Listen: ":0", User: "u", Password: "p"}, true},
		{"a token is", Config{Name: "n", Listen: ":0", Token: "t"}, true},
		{"--insecure overrides", Config{Name: "n", Listen: ":0", Leafnode: ":0", Insecure: true}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b, err := New(tc.cfg)
			if b != nil {
				b.Close()
			}
			if tc.ok && err != nil || !tc.ok && !errors.Is(err, ErrNoCredentials) {
				t.Fatalf("New: %v, want ok=%v (ErrNoCredentials otherwise)", err, tc.ok)
			}
		})
	}
}

// A users file from GenerateCredentials counts as credentials, and
// --insecure is announced loudly.
func TestUsersFileAndInsecureWarning(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	c, err := GenerateCredentials([]string{"a"}, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := WriteCredentials(dir, c); err != nil {
		t.Fatal(err)
	}
	started(t, Config{Name: "n", Listen: ":0", ConfigFile: filepath.Join(dir, AuthConfFile)})
	rec := newRecorder(slog.LevelWarn)
	started(t, Config{Name: "open", Listen: ":0", Insecure: true, Logger: slog.New(rec)})
	if got := rec.matching("INSECURE", "client port accepts anyone"); len(got) != 1 {
		t.Fatalf("warnings %q, want one INSECURE line", rec.matching("WARN"))
	}
}
