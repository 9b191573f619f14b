package session

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/msprelay/msprelay/sessionclient"
	"github.com/msprelay/msprelay/sessionsock"
)

// ListenUnix refuses a directory another user controls, as the pre-created
// /tmp/msprelay-<uid> of the finding.
func TestListenUnixRefusesForeignDir(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("needs root to make a directory of another user")
	}
	d := filepath.Join(t.TempDir(), "msprelay-1000")
	if err := os.Mkdir(d, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(d, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	if l, err := ListenUnix(filepath.Join(d, "session.sock")); !errors.Is(err, sessionsock.ErrUnsafeDir) {
		if l != nil {
			l.Close()
		}
		t.Fatalf("ListenUnix in another user's directory = %v, want sessionsock.ErrUnsafeDir", err)
	}
}

// A stale socket is replaced only if it is ours: another user's socket (or
// anything not a socket) stays.
func TestListenUnixReplacesOnlyOurStaleSocket(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("needs root to make a socket of another user")
	}
	sock := filepath.Join(t.TempDir(), "s.sock")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(false)
	l.Close()
	if err := os.Lchown(sock, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	if ln, err := ListenUnix(sock); err == nil || !strings.Contains(err.Error(), "belongs to uid 65534") {
		if ln != nil {
			ln.Close()
		}
		t.Fatalf("ListenUnix over another user's stale socket = %v", err)
	}
}

// The socket appears at its path already 0666, no bind directory is left,
// and Close removes only the socket it made.
func TestListenUnixBindsInPlace(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	sock := filepath.Join(dir, "run", "s.sock")
	ln, err := ListenUnix(sock)
	if err != nil {
		t.Fatal(err)
	}
	if ln.Addr().String() != sock {
		t.Fatalf("Addr %s, want %s", ln.Addr(), sock)
	}
	fi, err := os.Lstat(sock)
	if err != nil || fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o666 {
		t.Fatalf("socket %v %v, want a 0666 socket", fi.Mode(), err)
	}
	if fi, err := os.Stat(filepath.Dir(sock)); err != nil || fi.Mode().Perm()&0o022 != 0 {
		t.Fatalf("socket directory mode %v %v", fi.Mode().Perm(), err)
	}
	ents, _ := os.ReadDir(filepath.Dir(sock))
	if len(ents) != 1 {
		t.Fatalf("directory holds %d entries, want the socket alone", len(ents))
	}
	go func() {
		if c, err := ln.Accept(); err == nil {
			c.Close()
		}
	}()
	c, err := sessionclient.Dial(ctxT(t), sock)
	if err != nil {
		t.Fatalf("Dial our own socket: %v", err)
	}
	c.Close()
	// Someone else's file now sits at the path: Close must leave it.
	if err := os.Remove(sock); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(sock, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	ln.Close()
	if _, err := os.Stat(sock); err != nil {
		t.Fatalf("Close removed a file that was not its socket: %v", err)
	}
}

const untrustedHelperEnv = "SESSION_UNTRUSTED_SERVER_HELPER"

// Issue 12: "the other user can replace the socket (clients then show
// forged 'verified' messages)": a client refuses a socket served by a user
// who is neither root nor itself. A helper process serves the socket as
// uid 65534; this (root) process must refuse it.
func TestDialRefusesSocketOfAnotherUser(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("needs root: the test runs a helper process as uid 65534")
	}
	dir, err := os.MkdirTemp("", "session-untrusted-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	run := filepath.Join(dir, "run")
	if err := os.Mkdir(run, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(run, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(run, "s.sock")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := nobodyCommand(t, ctx, dir, "TestUntrustedServerHelper", untrustedHelperEnv+"="+sock)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		stdin.Close()
		cmd.Wait()
	}()
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "listening") {
				ready <- sc.Text()
				return
			}
		}
		close(ready)
	}()
	select {
	case l, ok := <-ready:
		if !ok {
			t.Fatal("helper ended before listening")
		}
		_ = l
	case <-time.After(20 * time.Second):
		t.Fatal("helper not listening within 20 s")
	}
	c, err := sessionclient.Dial(ctx, sock)
	if err == nil {
		c.Close()
		t.Fatal("Dial accepted a socket served by uid 65534")
	}
	if !errors.Is(err, sessionsock.ErrUntrustedSocket) {
		t.Fatalf("Dial = %v, want sessionsock.ErrUntrustedSocket", err)
	}
}

// TestUntrustedServerHelper is the uid 65534 half of
// TestDialRefusesSocketOfAnotherUser; it does nothing unless run by it. It
// serves until its stdin closes.
func TestUntrustedServerHelper(t *testing.T) {
	sock := os.Getenv(untrustedHelperEnv)
	if sock == "" {
		t.Skip("run by TestDialRefusesSocketOfAnotherUser")
	}
	ln, err := ListenUnix(sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	fmt.Println("listening")
	bufio.NewReader(os.Stdin).ReadString('\n') // returns at EOF, when the parent is done
}
