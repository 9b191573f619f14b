package session

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/msprelay/msprelay/principal"
	"github.com/msprelay/msprelay/secrets"
	"github.com/msprelay/msprelay/sessionclient"
	"github.com/msprelay/msprelay/sessionproto"
)

// TestSecretAuth: challenge-response over shared secrets; the secret never
// crosses the wire, and such sessions send Verified messages.
func TestSecretAuth(t *testing.T) {
	t.Parallel()
	sec, err := secrets.Parse(strings.NewReader("alice s3cret\nbob hunter2\n"))
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, NewSecretAuth(sec), nil)
	ctx := ctxT(t)
	alice := e.dial()
	si, err := alice.SignIn(ctx, "Alice", "pts/1", principal.Online, sessionclient.WithSecret("s3cret"))
	if err != nil || si.Method != "secret" || si.User != "alice" {
		t.Fatalf("SignIn = %+v %v", si, err)
	}
	bob := e.dial()
	if _, err := bob.SignIn(ctx, "bob", "pts/2", principal.Online, sessionclient.WithSecret("hunter2")); err != nil {
		t.Fatal(err)
	}
	mustSend(t, bob, "alice", "", "signed, bob")
	if m := nextMessage(t, alice); !m.Verified || m.Sender != "bob" || m.SenderMethod != "secret" || m.SenderUser != "bob" {
		t.Fatalf("message %+v: want Verified from bob by his secret", m)
	}

	refused := []struct {
		name, user, secret string
	}{
		{"wrong secret", "alice", "guess"},
		{"unknown user", "mallory", "s3cret"},
		{"another user's secret", "alice", "hunter2"},
	}
	for _, tc := range refused {
		t.Run(tc.name, func(t *testing.T) {
			c, err := sessionclient.Dial(ctx, e.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := c.SignIn(ctx, tc.user, "t", principal.Online, sessionclient.WithSecret(tc.secret)); !sessionproto.IsCode(err, sessionproto.CodeAuthFailed) {
				t.Fatalf("SignIn = %v, want %d", err, sessionproto.CodeAuthFailed)
			}
			waitDone(t, c)
		})
	}
	noSecret := e.dial()
	if _, err := noSecret.SignIn(ctx, "alice", "t", principal.Online); !errors.Is(err, sessionproto.ErrAuthFailed) {
		t.Fatalf("SignIn without secret = %v, want sessionproto.ErrAuthFailed", err)
	}
}

// TestSecretAuthWire checks the challenge exchange byte by byte.
func TestSecretAuthWire(t *testing.T) {
	t.Parallel()
	sec, err := secrets.Parse(strings.NewReader("alice s3cret\n"))
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, NewSecretAuth(sec), nil)

	r := e.raw(t)
	r.send("USR 1 alice pts/1 away\r\n")
	l := r.line()
	nonce, ok := strings.CutPrefix(l, "CHL 1 ")
	if !ok || len(nonce) != 64 {
		t.Fatalf("challenge line %q, want CHL 1 <64 hex digits>", l)
	}
	// The answer is the hex HMAC-SHA256 of nonce|user|term; upper case is fine.
	r.send("QRY 2 " + strings.ToUpper(sessionproto.ChallengeResponse("s3cret", nonce, "alice", "pts/1")) + "\r\n")
	r.expect("USR 2 OK alice pts/1 AWY n1 secret")

	r = e.raw(t)
	r.send("USR 1 alice pts/2\r\n")
	r.expectPrefix("CHL 1 ")
	r.send("CHG 2 busy\r\n")
	r.expect("715 2 expected QRY after CHL")
	r.closed()

	r = e.raw(t)
	r.send("USR 1 alice pts/2\r\n")
	r.expectPrefix("CHL 1 ")
	r.send("QRY 3 00\r\n")
	r.expect("911 3 authentication failed")
	r.closed()
}

// TestPeerCredOverTCP: peer credentials exist only on Unix sockets.
func TestPeerCredOverTCP(t *testing.T) {
	t.Parallel()
	e := newEnv(t, PeerCred{}, nil)
	r := e.raw(t)
	r.send("USR 1 root t\r\n")
	r.expect("911 1 authentication failed")
	r.closed()
}

const peerCredHelperEnv = "SESSION_PEERCRED_HELPER_SOCKET"

// TestPeerCred: over the Unix socket, uid 0 may claim any name and any other
// uid only its own login name. The non-root half runs this test binary again
// as uid/gid 65534 (TestPeerCredHelper).
func TestPeerCred(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root: the test runs a helper process as uid 65534")
	}
	nobody, err := user.LookupId("65534")
	if err != nil {
		t.Skipf("no user with uid 65534: %v", err)
	}
	dir, err := os.MkdirTemp("", "session-peercred-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "session.sock")
	ln, err := ListenUnix(sock)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(sock); err != nil || fi.Mode().Perm() != 0o666 {
		t.Fatalf("socket mode %v %v, want 0666", fi.Mode().Perm(), err)
	}
	if _, err := ListenUnix(sock); err == nil || !strings.Contains(err.Error(), "another server is listening") {
		t.Fatalf("second ListenUnix = %v, want in-use error", err)
	}
	e := newEnv(t, Trust{}, nil)
	e.serveOn(ln, PeerCred{})
	ctx := ctxT(t)

	// Root may claim any name, and is verified.
	root, err := sessionclient.Dial(ctx, "unix:"+sock)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	si, err := root.SignIn(ctx, "alice", "pts/1", principal.Online)
	if err != nil || si.Method != "peercred" {
		t.Fatalf("root SignIn(alice) = %+v %v", si, err)
	}
	mustSend(t, root, "alice", "pts/1", "to myself")
	if m := nextMessage(t, root); !m.Verified || m.SenderMethod != "peercred" || m.SenderUser != "alice" {
		t.Fatalf("message from a peercred session not Verified by peer credentials: %+v", m)
	}

	hctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := nobodyCommand(t, hctx, dir, "TestPeerCredHelper", peerCredHelperEnv+"="+sock)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("helper failed: %v\n%s", err, out)
	}
	want := []string{
		"claim alice: session: 911 authentication failed",
		"claim " + nobody.Username + ": ok peercred",
	}
	for _, w := range want {
		if !strings.Contains(string(out), w+"\n") {
			t.Fatalf("helper output lacks %q:\n%s", w, out)
		}
	}
}

// TestPeerCredHelper is the non-root half of TestPeerCred; it does nothing
// unless run by it.
func TestPeerCredHelper(t *testing.T) {
	sock := os.Getenv(peerCredHelperEnv)
	if sock == "" {
		t.Skip("run by TestPeerCred")
	}
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, name := range []string{"alice", me.Username} {
		c, err := sessionclient.Dial(ctx, sock)
		if err != nil {
			t.Fatal(err)
		}
		si, err := c.SignIn(ctx, name, "helper", principal.Online)
		if err != nil {
			fmt.Printf("claim %s: %v\n", name, err)
		} else {
			fmt.Printf("claim %s: ok %s\n", name, si.Method)
		}
		c.Close()
	}
}

// nobodyCommand runs the test helper named run from a copy of this test
// binary in dir (which uid 65534 must be able to read) as uid and gid 65534,
// with env added to the environment.
func nobodyCommand(t *testing.T, ctx context.Context, dir, run, env string) *exec.Cmd {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "session.test")
	if err := copyFile(self, bin, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, bin, "-test.run=^"+run+"$", "-test.count=1")
	cmd.Env = append(os.Environ(), env)
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	return cmd
}

func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, bufio.NewReader(in)); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// TestListenUnixStale: a socket file left by a dead server is replaced.
func TestListenUnixStale(t *testing.T) {
	dir, err := os.MkdirTemp("", "session-stale-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "s.sock")
	// Leave a socket file behind without a listener.
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(false)
	l.Close()
	ln, err := ListenUnix(sock)
	if err != nil {
		t.Fatalf("ListenUnix over a stale socket: %v", err)
	}
	ln.Close()
	if _, err := os.Stat(sock); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("socket left after Close: %v", err)
	}
	if err := os.WriteFile(sock, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ListenUnix(sock); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("ListenUnix over a plain file = %v", err)
	}
}
