package session

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/msprelay/msprelay/internal/syncbuf"
	"github.com/msprelay/msprelay/principal"

	"github.com/msprelay/msprelay/internal/asuser"
	"github.com/msprelay/msprelay/msp"
	"github.com/msprelay/msprelay/secrets"
	"github.com/msprelay/msprelay/sessionclient"
	"github.com/msprelay/msprelay/sessionproto"
	"github.com/msprelay/msprelay/sockowner"
)

func TestMain(m *testing.M) {
	asuser.Main()
	os.Exit(m.Run())
}

// serveUnix adds a PeerCred Unix socket listener to e's server.
func (e *env) serveUnix(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "s.sock")
	l, err := ListenUnix(path)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- e.srv.Serve(l, PeerCred{}) }()
	t.Cleanup(func() {
		e.srv.Close()
		select {
		case err := <-done:
			if !errors.Is(err, ErrServerClosed) {
				t.Errorf("Unix Serve returned %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Unix Serve did not return")
		}
	})
	return path
}

// Issue 12: "1100 unauthenticated TCP session connections make a local Unix
// sign-in fail with 600 (one cap for all listeners)."
func TestUnauthenticatedNetworkConnectionsDoNotLockOutLocalUsers(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Trust{}, nil)
	sock := e.serveUnix(t)
	const n = 1100
	for range n {
		c, err := net.Dial("tcp", e.addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
	}
	waitFor(t, "1100 connections admitted or refused", func() bool {
		st := e.srv.Stats()
		return e.srv.Sessions()+int(st.RefusedPending+st.RefusedFull) == n
	})
	if got := e.srv.Sessions(); got != DefaultMaxPending {
		t.Fatalf("%d connections not signed in are open, want the cap %d", got, DefaultMaxPending)
	}
	c, err := sessionclient.Dial(ctxT(t), sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.SignIn(ctxT(t), "root", "pts/9", principal.Online); err != nil {
		t.Fatalf("local sign-in with the network side full: %v", err)
	}
	// The network side's next stranger is told why.
	r := e.raw(t)
	r.expect("600 0 too many connections not signed in")
}

// Signed-in sessions free their pending slot: MaxPending bounds only the
// strangers.
func TestPendingSlotFreedBySignIn(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Trust{}, func(c *Config) { c.MaxPending = 2 })
	for i := range 5 {
		e.signIn(fmt.Sprint("u", i), "t")
	}
	if got := e.srv.Sessions(); got != 5 {
		t.Fatalf("%d sessions, want 5", got)
	}
	e.raw(t)
	e.raw(t)
	r := e.raw(t)
	r.expect("600 0 too many connections not signed in")
}

// Issue 12: "2900 secret guesses per second, each logging two lines":
// failed sign-ins are rate-limited per source, and logged at most once per
// interval with the count of those not logged.
func TestFailedSignInsAreRateLimited(t *testing.T) {
	t.Parallel()
	var logs syncbuf.Buffer
	sec, err := secrets.Parse(strings.NewReader("alice s3cret\n"))
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, NewSecretAuth(sec), func(c *Config) {
		c.Logger = slog.New(slog.NewTextHandler(&logs, nil))
		c.FailedSignInRate = 0.001
		c.FailedSignInBurst = 5
	})
	for i := range 5 {
		c := e.dial()
		_, err := c.SignIn(ctxT(t), "alice", "t", principal.Online, sessionclient.WithSecret(fmt.Sprint("guess", i)))
		if !sessionproto.IsCode(err, sessionproto.CodeAuthFailed) || strings.Contains(err.Error(), "too many") {
			t.Fatalf("guess %d: %v, want a plain 911", i, err)
		}
	}
	// Now even the right secret is refused without being checked.
	c := e.dial()
	_, err = c.SignIn(ctxT(t), "alice", "t", principal.Online, sessionclient.WithSecret("s3cret"))
	if !sessionproto.IsCode(err, sessionproto.CodeAuthFailed) || !strings.Contains(err.Error(), "too many failed sign-ins") {
		t.Fatalf("sign-in past the failure limit: %v", err)
	}
	st := e.srv.Stats()
	if st.FailedSignIns != 5 || st.ThrottledSignIns != 1 {
		t.Fatalf("stats %+v, want 5 failed and 1 throttled", st)
	}
	out := logs.String()
	if n := strings.Count(out, `msg="session: authentication failed"`); n != 1 {
		t.Fatalf("%d log lines about failed sign-ins for 5 guesses, want 1:\n%s", n, out)
	}
	if strings.Contains(out, "session closed on error") {
		t.Fatalf("a second log line per guess:\n%s", out)
	}
}

// addrConn is a real connection reporting another remote address, to check
// the address rule of Trust without a second host.
type addrConn struct {
	net.Conn
	remote net.Addr
}

func (c addrConn) RemoteAddr() net.Addr { return c.remote }

// Issue 12: "`trust` mode refuses non-loopback addresses unless
// --session-auth-insecure is given".
func TestTrustRefusesNonLoopback(t *testing.T) {
	t.Parallel()
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	for _, tc := range []struct {
		name     string
		remote   net.Addr
		insecure bool
		ok       bool
	}{
		{"IPv4 loopback", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5}, false, true},
		{"IPv6 loopback", &net.TCPAddr{IP: net.IPv6loopback, Port: 5}, false, true},
		{"Unix socket", &net.UnixAddr{Net: "unix"}, false, true},
		{"network address refused", &net.TCPAddr{IP: net.IPv4(192, 0, 2, 9), Port: 5}, false, false},
		{"mapped network address refused", &net.TCPAddr{IP: net.ParseIP("::ffff:192.0.2.9"), Port: 5}, false, false},
		{"network address with Insecure", &net.TCPAddr{IP: net.IPv4(192, 0, 2, 9), Port: 5}, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := &AuthRequest{Conn: addrConn{a, tc.remote}, User: "alice", Term: "t"}
			id, err := Trust{Insecure: tc.insecure}.Authenticate(context.Background(), req)
			if tc.ok != (err == nil) {
				t.Fatalf("Authenticate = %+v, %v; want ok=%v", id, err, tc.ok)
			}
			if !tc.ok && (!errors.Is(err, sessionproto.ErrAuthFailed) || !errors.Is(err, ErrNotLoopback)) {
				t.Fatalf("error %v does not wrap sessionproto.ErrAuthFailed and ErrNotLoopback", err)
			}
		})
	}
}

// Serve warns that Trust believes claimed names.
func TestTrustWarnsAtStart(t *testing.T) {
	t.Parallel()
	var logs syncbuf.Buffer
	e := newEnv(t, Trust{}, func(c *Config) { c.Logger = slog.New(slog.NewTextHandler(&logs, nil)) })
	e.signIn("alice", "t")
	if !strings.Contains(logs.String(), "level=WARN msg=\"session: trust authentication") {
		t.Fatalf("no warning about trust authentication:\n%s", logs.String())
	}
}

// Issue 18, "Any local user is 16 million sources ... The same trick
// bypasses the failed-sign-in throttle": one local user failing sign-ins
// from many loopback addresses is throttled as one source, and another
// local user (nobody, run as a child process) is not.
func TestFailedSignInsCountPerLocalUser(t *testing.T) {
	t.Parallel()
	probe, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, err = sockowner.SocketUID("tcp", probe.Addr().(*net.TCPAddr).AddrPort(), netip.MustParseAddrPort("127.0.0.1:1"))
	probe.Close()
	if errors.Is(err, sockowner.ErrUnsupported) {
		t.Skipf("no NETLINK_SOCK_DIAG here: %v", err)
	}
	owners := sockowner.New(sockowner.Config{})
	t.Cleanup(func() { owners.Close() })
	sec, err := secrets.Parse(strings.NewReader("alice s3cret\n"))
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, NewSecretAuth(sec), func(c *Config) {
		c.FailedSignInRate = 0.001
		c.FailedSignInBurst = 3
		c.Identify = func(network string, local, remote netip.AddrPort) msp.Peer {
			return msp.Peer(owners.Lookup(network, local, remote))
		}
	})
	signInFrom := func(src, secret string) error {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
		nc, err := d.Dial("tcp", e.addr)
		if err != nil {
			t.Fatal(err)
		}
		c := sessionclient.NewClient(nc)
		defer c.Close()
		_, err = c.SignIn(ctxT(t), "alice", "t", principal.Online, sessionclient.WithSecret(secret))
		return err
	}
	for i := range 3 {
		if err := signInFrom(fmt.Sprintf("127.0.0.%d", 20+i), "guess"); !sessionproto.IsCode(err, sessionproto.CodeAuthFailed) || strings.Contains(err.Error(), "too many") {
			t.Fatalf("guess %d: %v, want a plain 911", i, err)
		}
	}
	// A fresh loopback address buys no fresh allowance.
	if err := signInFrom("127.0.0.30", "s3cret"); err == nil || !strings.Contains(err.Error(), "too many failed sign-ins") {
		t.Fatalf("the same user from a new loopback address: %v, want throttled", err)
	}
	// Another local user still gets her chance (the server answers USR
	// with a challenge, not a refusal).
	uid, gid := asuser.Nobody()
	out, err := asuser.Send(t, uid, gid, "tcp", "127.0.0.31:0", e.addr, []byte("VER 1 MSPS1\r\nUSR 2 alice t\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	if s := string(out); strings.Contains(s, "too many") || !strings.Contains(s, "CHL 2 ") {
		t.Fatalf("another local user got %q, want a challenge", s)
	}
}
