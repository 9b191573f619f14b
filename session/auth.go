package session

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/msprelay/msprelay/principal"
	"github.com/msprelay/msprelay/sessionproto"
	"github.com/msprelay/msprelay/sessionsock"
)

// AuthRequest is one sign-in attempt handed to an Authenticator.
type AuthRequest struct {
	// Conn is the client's connection; peer-credential schemes inspect it.
	// The authenticator must not read, write or close it.
	Conn net.Conn
	// User and Term are the claimed names exactly as sent (not folded).
	User, Term string
	// Challenge sends nonce to the client (CHL) and returns its answer (QRY).
	// It may be called at most once.
	Challenge func(nonce string) (response string, err error)
}

// Identity is what an Authenticator established.
type Identity struct {
	// Method names the scheme: "peercred", "secret" or "trust".
	Method string
	// Verified means the user name was proved, not just claimed; it becomes
	// Origin.Verified on messages the session sends.
	Verified bool
}

// Authenticator decides whether a connection may sign in as a user. The
// server calls it from the session's reader goroutine; implementations must
// be safe for concurrent use.
type Authenticator interface {
	Authenticate(ctx context.Context, req *AuthRequest) (Identity, error)
}

// ErrNotLoopback refuses a [Trust] sign-in from a non-loopback address.
var ErrNotLoopback = errors.New("session: trust authentication accepts loopback clients only")

// Trust believes the claimed name. It is for trusted networks and tests
// only: the identity is not verified, and messages sent by such sessions
// carry Verified=false. Anyone who can connect signs in as anyone and reads
// their queued mail, so by default only loopback (and Unix socket) clients
// are accepted.
type Trust struct {
	// Insecure accepts clients from any address (node flag
	// --session-auth-insecure).
	Insecure bool
}

// Authenticate accepts every claim from an allowed address, unverified.
func (t Trust) Authenticate(_ context.Context, req *AuthRequest) (Identity, error) {
	if !t.Insecure && !isLocal(req.Conn.RemoteAddr()) {
		return Identity{}, fmt.Errorf("%w: %w: %s", sessionproto.ErrAuthFailed, ErrNotLoopback, req.Conn.RemoteAddr())
	}
	return Identity{Method: "trust"}, nil
}

// isLocal reports whether a peer is on this host: a Unix socket peer, a
// loopback IP, or the other end of an in-process pipe.
func isLocal(a net.Addr) bool {
	if a != nil && a.Network() == "pipe" {
		return true
	}
	switch a := a.(type) {
	case *net.UnixAddr:
		return true
	case *net.TCPAddr:
		return a.AddrPort().Addr().Unmap().IsLoopback()
	}
	return false
}

// SecretSource looks up a user's shared secret, comparing the name
// case-insensitively. The node passes one *secrets.Store, which SIGHUP
// reloads and which MSP signature checks read too; tests may pass a fixed
// *secrets.Secrets. It must be safe for concurrent use.
type SecretSource interface {
	Secret(user string) (string, bool)
}

// SecretAuth authenticates network clients by challenge-response over
// per-user shared secrets. Sessions it admits are Verified.
type SecretAuth struct {
	src SecretSource
}

// NewSecretAuth returns a SecretAuth that looks each secret up in src at
// the time of the sign-in, so that a reload of src applies to the next
// sign-in; sessions already signed in stay.
func NewSecretAuth(src SecretSource) *SecretAuth { return &SecretAuth{src: src} }

// Authenticate challenges the client. A user without a secret is challenged
// too, so that the reply does not tell which users exist.
func (a *SecretAuth) Authenticate(_ context.Context, req *AuthRequest) (Identity, error) {
	var raw [32]byte
	rand.Read(raw[:])
	nonce := hex.EncodeToString(raw[:])
	resp, err := req.Challenge(nonce)
	if err != nil {
		return Identity{}, err
	}
	var secret string
	var ok bool
	if a.src != nil {
		secret, ok = a.src.Secret(req.User)
	}
	if !ok {
		// Spend the same work as a real check.
		secret = nonce
	}
	want := sessionproto.ChallengeResponse(secret, nonce, req.User, req.Term)
	if !hmac.Equal([]byte(strings.ToLower(resp)), []byte(want)) || !ok {
		return Identity{}, fmt.Errorf("%w: bad response for %s", sessionproto.ErrAuthFailed, req.User)
	}
	return Identity{Method: "secret", Verified: true}, nil
}

// PeerCred authenticates Unix-socket clients by the peer's credentials
// (SO_PEERCRED): uid 0 may sign in as any user, every other uid only as its
// own login name. Sessions it admits are Verified.
type PeerCred struct {
	// LookupUID maps a uid to its login name; nil means os/user.
	LookupUID func(uid uint32) (string, error)
}

// Authenticate checks the claim against the connection's peer uid.
func (p PeerCred) Authenticate(_ context.Context, req *AuthRequest) (Identity, error) {
	uid, err := sessionsock.PeerUID(req.Conn)
	if err != nil {
		return Identity{}, fmt.Errorf("%w: %v", sessionproto.ErrAuthFailed, err)
	}
	if uid == 0 {
		return Identity{Method: "peercred", Verified: true}, nil
	}
	lookup := p.LookupUID
	if lookup == nil {
		lookup = loginName
	}
	name, err := lookup(uid)
	if err != nil {
		return Identity{}, fmt.Errorf("%w: uid %d: %v", sessionproto.ErrAuthFailed, uid, err)
	}
	if principal.CanonicalUser(name) != principal.CanonicalUser(req.User) {
		return Identity{}, fmt.Errorf("%w: uid %d (%s) may not sign in as %s", sessionproto.ErrAuthFailed, uid, name, req.User)
	}
	return Identity{Method: "peercred", Verified: true}, nil
}
