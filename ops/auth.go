package ops

import (
	"crypto/subtle"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
)

// maxTokenFile bounds what is read of a token file.
const maxTokenFile = 4 << 10

// tokenAuth guards the API, the events stream and the status page with one
// shared token, given either as "Authorization: Bearer TOKEN" (scripts,
// msp status) or as the password of HTTP basic auth with any user name (a
// browser asks for it). The probes and /metrics stay open: they carry no
// user names, and load balancers and scrapers must reach them.
type tokenAuth struct {
	path string // "" = no token: everything is open
	// mu guards token.
	mu    sync.RWMutex
	token []byte
}

func newTokenAuth(path string) (*tokenAuth, error) {
	a := &tokenAuth{path: path}
	if path == "" {
		return a, nil
	}
	if _, err := a.reload(); err != nil {
		return nil, err
	}
	return a, nil
}

// readToken reads a token file: its first line, trimmed, which must not be
// empty (an empty token would let everyone in).
func readToken(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("ops: token file: %w", err)
	}
	defer f.Close()
	buf := make([]byte, maxTokenFile)
	n, _ := f.Read(buf)
	line, _, _ := strings.Cut(string(buf[:n]), "\n")
	line = strings.TrimSpace(line)
	if line == "" {
		return nil, fmt.Errorf("%w: token file %s is empty", ErrConfig, path)
	}
	return []byte(line), nil
}

// reload re-reads the file; on error the old token stays. It reports
// whether the token changed.
func (a *tokenAuth) reload() (bool, error) {
	if a.path == "" {
		return false, nil
	}
	t, err := readToken(a.path)
	if err != nil {
		return false, err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	changed := subtle.ConstantTimeCompare(t, a.token) != 1
	a.token = t
	return changed, nil
}

func (a *tokenAuth) ok(r *http.Request) bool {
	if a.path == "" {
		return true
	}
	var got string
	if u, p, ok := r.BasicAuth(); ok {
		_ = u // any user name: the token is the secret
		got = p
	} else if b, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		got = strings.TrimSpace(b)
	}
	a.mu.RLock()
	defer a.mu.RUnlock()
	return got != "" && subtle.ConstantTimeCompare([]byte(got), a.token) == 1
}

func (a *tokenAuth) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !a.ok(r) {
			w.Header().Set("WWW-Authenticate", `Basic realm="msprelay", charset="UTF-8"`)
			writeError(w, http.StatusUnauthorized, "token required: Authorization: Bearer TOKEN, or basic auth with the token as password")
			return
		}
		h.ServeHTTP(w, r)
	})
}
