package secrets_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/msprelay/msprelay/secrets"
)

func TestParse(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, in string
		users    map[string]string
		err      string
	}{
		{"user and secret", "alice s3cret\n", map[string]string{"alice": "s3cret"}, ""},
		{"comments, blanks, tabs, spaces in secrets", "# team\n\n  Bob\tcorrect horse  \ncarol x\n",
			map[string]string{"bob": "correct horse", "BOB": "correct horse", "carol": "x"}, ""},
		{"missing secret", "alice\n", nil, "line 1: user alice has no secret"},
		{"duplicate user", "alice a\nALICE b\n", nil, "line 2: user ALICE listed twice"},
		{"invalid user", "a@b x\n", nil, "line 1: secrets: invalid user name"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, err := secrets.Parse(strings.NewReader(tc.in))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for u, want := range tc.users {
				if got, ok := s.Secret(u); !ok || got != want {
					t.Fatalf("Secret(%s) = %q %v, want %q", u, got, ok, want)
				}
			}
		})
	}
}

func writeFile(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

// Like an SSH key, the file must be private.
func TestLoadRefusesAFileOthersCanRead(t *testing.T) {
	t.Parallel()
	p := filepath.Join(t.TempDir(), "secrets")
	writeFile(t, p, "alice s3cret\n", 0o644)
	if _, err := secrets.Load(p); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("Load(0644) = %v, want a permission error", err)
	}
	writeFile(t, p, "alice s3cret\n", 0o600)
	if s, err := secrets.Load(p); err != nil || s.Len() != 1 {
		t.Fatalf("Load(0600) = %v %v", s, err)
	}
}

// Issue 19: "one reloadable secrets store". A reload that works replaces
// every secret at once; one that fails (a bad line, a file others can read,
// a missing file) keeps the secrets in use and says why.
func TestStoreReloadKeepsOldSecretsOnFailure(t *testing.T) {
	t.Parallel()
	p := filepath.Join(t.TempDir(), "secrets")
	writeFile(t, p, "alice one\n", 0o600)
	st, err := secrets.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	if st.Path() != p {
		t.Fatalf("Path = %q", st.Path())
	}
	writeFile(t, p, "alice two\nbob b\n", 0o600)
	if err := st.Reload(); err != nil {
		t.Fatal(err)
	}
	if s, ok := st.Secret("ALICE"); !ok || s != "two" || st.Len() != 2 {
		t.Fatalf("after reload: Secret(ALICE) = %q %v, Len %d", s, ok, st.Len())
	}
	for _, tc := range []struct {
		name    string
		content string
		mode    os.FileMode
		remove  bool
	}{
		{"a line without a secret", "alice three\ncarol\n", 0o600, false},
		{"a file others can read", "alice three\n", 0o640, false},
		{"a missing file", "", 0, true},
	} {
		if tc.remove {
			if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
		} else {
			writeFile(t, p, tc.content, tc.mode)
		}
		if err := st.Reload(); err == nil {
			t.Fatalf("%s: Reload succeeded", tc.name)
		}
		if s, ok := st.Secret("alice"); !ok || s != "two" || st.Len() != 2 {
			t.Fatalf("%s: after a failed reload Secret(alice) = %q %v, Len %d; want the old secrets", tc.name, s, ok, st.Len())
		}
	}
	if _, err := secrets.Open(p); err == nil {
		t.Fatal("Open of a missing file succeeded")
	}
}

// Readers see one whole version of the file while reloads run.
func TestStoreReadersSeeWholeVersions(t *testing.T) {
	t.Parallel()
	p := filepath.Join(t.TempDir(), "secrets")
	writeFile(t, p, "alice a1\nbob b1\n", 0o600)
	st, err := secrets.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	errc := make(chan error, 1)
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			if s, ok := st.Secret("alice"); !ok || (s != "a1" && s != "a2") {
				select {
				case errc <- errors.New("alice's secret is " + s):
				default:
				}
				return
			}
		}
	})
	for i := range 50 {
		writeFile(t, p, map[bool]string{true: "alice a1\nbob b1\n", false: "alice a2\nbob b2\n"}[i%2 == 0], 0o600)
		if err := st.Reload(); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	select {
	case err := <-errc:
		t.Fatal(err)
	default:
	}
}
