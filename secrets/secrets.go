// Package secrets reads the node's per-user shared secrets file and keeps
// it reloadable. One [Store] serves every check keyed by those secrets: the
// session protocol's challenge-response sign-in and the MSP SIGNATURE part.
// A reload (SIGHUP) therefore changes both at once.
//
// It is a leaf package: it imports only the standard library and msp (for
// the protocol's case folding of names), so that clients and tools can read
// a secrets file without linking the server.
package secrets

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/msprelay/msprelay/msp"
)

// ErrBadUser is wrapped by a secrets line whose user name is not valid.
var ErrBadUser = errors.New("secrets: invalid user name")

// MaxUserLen bounds a user name; it is the cluster's limit on names
// (principal.MaxNameLen), repeated here so that this package stays a leaf.
const MaxUserLen = 64

// validUser applies the cluster's rule for user names (principal.ValidUser):
// 1..MaxUserLen octets, no space, control octet, NBSP, '@', '*' or '/'. A
// test keeps the two in step.
func validUser(name string) error {
	if name == "" || len(name) > MaxUserLen {
		return fmt.Errorf("%w %q: length must be 1..%d", ErrBadUser, name, MaxUserLen)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c <= ' ' || c == 0x7f || (c >= 0x80 && c <= 0xa0) {
			return fmt.Errorf("%w %q: byte %#x not allowed", ErrBadUser, name, c)
		}
		if c == '@' || c == '*' || c == '/' {
			return fmt.Errorf("%w %q: %q not allowed", ErrBadUser, name, c)
		}
	}
	return nil
}

// Secrets maps users to shared secrets. It is immutable once built, so it
// is safe for concurrent use.
type Secrets struct {
	m map[string]string // canonical (folded) user -> secret
}

// Parse reads "user secret" lines. Blank lines and lines starting with '#'
// are skipped; the secret is the rest of the line after the user name and
// its following spaces, with trailing spaces removed. A user listed twice
// (compared case-insensitively) is an error.
func Parse(r io.Reader) (*Secrets, error) {
	s := &Secrets{m: map[string]string{}}
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		l := strings.TrimSpace(sc.Text())
		if l == "" || l[0] == '#' {
			continue
		}
		user, secret := l, ""
		if i := strings.IndexAny(l, " \t"); i >= 0 {
			user, secret = l[:i], strings.TrimSpace(l[i+1:])
		}
		if err := validUser(user); err != nil {
			return nil, fmt.Errorf("secrets: line %d: %w", n, err)
		}
		if secret == "" {
			return nil, fmt.Errorf("secrets: line %d: user %s has no secret", n, user)
		}
		k := msp.Fold(user)
		if _, dup := s.m[k]; dup {
			return nil, fmt.Errorf("secrets: line %d: user %s listed twice", n, user)
		}
		s.m[k] = secret
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("secrets: reading: %w", err)
	}
	return s, nil
}

// Load reads a secrets file (see [Parse]). Like an SSH private key, the
// file must not be readable or writable by group or others.
func Load(path string) (*Secrets, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("secrets: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("secrets: %w", err)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("secrets: file %s has mode %#o; it must not be accessible to group or others (chmod 600)", path, perm)
	}
	s, err := Parse(f)
	if err != nil {
		return nil, fmt.Errorf("%w (file %s)", err, path)
	}
	return s, nil
}

// Len returns the number of users with a secret.
func (s *Secrets) Len() int { return len(s.m) }

// Secret returns user's secret; user is compared case-insensitively (ISO
// 8859-1, as MSP compares names).
func (s *Secrets) Secret(user string) (string, bool) {
	v, ok := s.m[msp.Fold(user)]
	return v, ok
}

// Store is the current content of one secrets file. Readers (Secret) never
// block and always see one whole version of the file; Reload swaps in a new
// version only when the file reads and parses cleanly. It is safe for
// concurrent use and owns no goroutine.
type Store struct {
	path string
	cur  atomic.Pointer[Secrets] // never nil after Open

	// reloadMu serialises Reload, so that of two reloads racing, the one
	// that read the file last is the one that stays.
	reloadMu sync.Mutex
}

// Open loads path (see [Load]) into a new Store.
func Open(path string) (*Store, error) {
	s, err := Load(path)
	if err != nil {
		return nil, err
	}
	st := &Store{path: path}
	st.cur.Store(s)
	return st, nil
}

// Path returns the file the store reads.
func (st *Store) Path() string { return st.path }

// Reload re-reads the file. On any error the secrets in use stay as they
// were and the error says why; the caller logs it. Checks already under
// way finish with the version they started with.
func (st *Store) Reload() error {
	st.reloadMu.Lock()
	defer st.reloadMu.Unlock()
	s, err := Load(st.path)
	if err != nil {
		return err
	}
	st.cur.Store(s)
	return nil
}

// Secret returns user's secret in the current version of the file.
func (st *Store) Secret(user string) (string, bool) { return st.cur.Load().Secret(user) }

// Len returns the number of users in the current version of the file.
func (st *Store) Len() int { return st.cur.Load().Len() }
