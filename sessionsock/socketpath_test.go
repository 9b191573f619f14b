package sessionsock

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Issue 12: "create them 0700, refuse one not owned by the running uid or
// writable by others".
func TestCheckDir(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	mk := func(name string, mode os.FileMode) string {
		p := filepath.Join(base, name)
		if err := os.Mkdir(p, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	private := mk("private", 0o700)
	shared := mk("shared", 0o755)
	worldWritable := mk("world", 0o777)
	groupWritable := mk("group", 0o770)
	sticky := mk("sticky", 0o777|os.ModeSticky)
	link := filepath.Join(base, "link")
	if err := os.Symlink(private, link); err != nil {
		t.Fatal(err)
	}
	underOpen := filepath.Join(worldWritable, "d")
	underSticky := filepath.Join(sticky, "d")
	for _, p := range []string{underOpen, underSticky} {
		if err := os.Mkdir(p, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name, path string
		ok         bool
	}{
		{"private directory", private, true},
		{"readable but not writable by others", shared, true},
		{"writable by others", worldWritable, false},
		{"writable by group", groupWritable, false},
		{"symbolic link", link, false},
		{"under a directory others may write to", underOpen, false},
		{"under a sticky directory like /tmp", underSticky, true},
		{"missing", filepath.Join(base, "none"), false},
	} {
		err := CheckDir(tc.path)
		if tc.ok != (err == nil) {
			t.Errorf("%s: CheckDir = %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
	if os.Geteuid() == 0 {
		foreign := mk("foreign", 0o700)
		if err := os.Chown(foreign, 65534, 65534); err != nil {
			t.Fatal(err)
		}
		if err := CheckDir(foreign); !errors.Is(err, ErrUnsafeDir) {
			t.Errorf("directory of uid 65534: CheckDir = %v, want ErrUnsafeDir", err)
		}
	}
}

// EnsureDir creates a missing directory 0700 (umask permitting).
func TestEnsureDirCreatesPrivate(t *testing.T) {
	t.Parallel()
	p := filepath.Join(t.TempDir(), "a", "b")
	if err := EnsureDir(p, 0o700); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(p)
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("mode %v, %v; want 0700", fi.Mode().Perm(), err)
	}
}

// Issue 12: "If /tmp/msprelay-<uid> was pre-created by another user, a node
// without XDG variables uses it silently"; now the defaults never name a
// shared directory.
func TestDefaultSocketPathAvoidsSharedDirs(t *testing.T) {
	// Not parallel: it sets environment variables.
	t.Setenv("MSPRELAY_SESSION_SOCKET", "")
	t.Setenv("XDG_RUNTIME_DIR", "")
	for _, p := range SocketCandidates() {
		if strings.HasPrefix(p, os.TempDir()) {
			t.Fatalf("candidate %s is in the shared temporary directory", p)
		}
	}
}
