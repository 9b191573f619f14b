// Package asuser lets a test send from a socket owned by another local
// account: it runs the test binary itself as that account (root may set any
// credentials on a child), in a helper mode that dials, sends one payload,
// waits for one answer and prints it. Tests that check what the kernel says
// about a socket's owner need a second owner; a mock would prove nothing.
//
// A test package that uses it calls [Main] first thing in its TestMain.
package asuser

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// envHelper carries the helper's job: network, local address, remote
// address, base64 payload and options, separated by spaces.
const envHelper = "MSPRELAY_ASUSER_HELPER"

// answerWait bounds the helper's wait for the first octets of an answer
// (UDP may get none); moreWait, the wait for more once some came.
const (
	answerWait = 3 * time.Second
	moreWait   = 300 * time.Millisecond
)

// Main runs the helper and exits when this process was started as one;
// otherwise it returns at once.
func Main() {
	job, ok := os.LookupEnv(envHelper)
	if !ok {
		return
	}
	if err := helper(job, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "asuser helper:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

func helper(job string, out io.Writer) error {
	f := strings.Fields(job)
	if len(f) < 4 {
		return fmt.Errorf("bad job %q", job)
	}
	payload, err := base64.StdEncoding.DecodeString(f[3])
	if err != nil {
		return err
	}
	var local net.Addr
	switch f[0] {
	case "tcp", "tcp4", "tcp6":
		if local, err = net.ResolveTCPAddr(f[0], f[1]); err != nil {
			return err
		}
	default:
		if local, err = net.ResolveUDPAddr(f[0], f[1]); err != nil {
			return err
		}
	}
	d := net.Dialer{LocalAddr: local, Timeout: answerWait}
	if slices.Contains(f[4:], string(ReuseAddr)) {
		d.Control = func(_, _ string, rc syscall.RawConn) error {
			var serr error
			err := rc.Control(func(fd uintptr) {
				serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1)
			})
			return errors.Join(err, serr)
		}
	}
	c, err := d.Dial(f[0], f[2])
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := c.Write(payload); err != nil {
		return err
	}
	// Everything that comes until the peer closes or goes quiet; no answer
	// is an answer too (the output is empty).
	var got []byte
	buf := make([]byte, 4096)
	for wait := answerWait; len(got) < 64<<10; wait = moreWait {
		c.SetReadDeadline(time.Now().Add(wait))
		n, err := c.Read(buf)
		got = append(got, buf[:n]...)
		if err != nil || strings.HasPrefix(f[0], "udp") {
			break
		}
	}
	_, err = out.Write(got)
	return err
}

// Option changes how the helper's socket is made.
type Option string

// ReuseAddr sets SO_REUSEADDR on the helper's socket before it binds, so
// that it may share a UDP port with a socket of another account.
const ReuseAddr Option = "reuseaddr"

// Nobody is the uid and gid of the account "nobody" (65534 if the system
// has no such account).
func Nobody() (uid, gid int) {
	u, err := user.Lookup("nobody")
	if err != nil {
		return 65534, 65534
	}
	uid, _ = strconv.Atoi(u.Uid)
	gid, _ = strconv.Atoi(u.Gid)
	return uid, gid
}

// Send runs this test binary as uid/gid to send payload from laddr to
// raddr over network, and returns the answer it got: over TCP all that
// came until the peer closed or was quiet for a moment, over UDP one
// datagram; empty if nothing came within a few seconds. It skips the test unless it runs as root.
func Send(t testing.TB, uid, gid int, network, laddr, raddr string, payload []byte, opts ...Option) ([]byte, error) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("asuser: running a process as another user needs root")
	}
	exe := executable(t)
	job := []string{network, laddr, raddr, base64.StdEncoding.EncodeToString(payload)}
	for _, o := range opts {
		job = append(job, string(o))
	}
	var stdout, stderr bytes.Buffer
	if err := runHelper(exe, job, uid, gid, &stdout, &stderr); err != nil {
		if errors.Is(err, fs.ErrPermission) {
			// A temporary directory mounted noexec, or a sandbox that
			// forbids changing credentials: the second owner cannot be had.
			t.Skipf("asuser: cannot run a process as uid %d here: %v", uid, err)
		}
		return nil, fmt.Errorf("asuser: helper as uid %d: %w: %s", uid, err, stderr.String())
	}
	return stdout.Bytes(), nil
}

// runHelper runs exe as uid/gid with job in its environment. While this
// or another test of the process writes its copy of the binary, a fork
// made by a parallel test holds that copy open for writing until the
// child execs, and an exec of the copy in that window fails with
// ETXTBSY; the go tool retries test binaries for the same reason. So
// does this, for at most ten seconds.
func runHelper(exe string, job []string, uid, gid int, stdout, stderr *bytes.Buffer) error {
	deadline := time.Now().Add(10 * time.Second)
	for backoff := 10 * time.Millisecond; ; backoff = min(2*backoff, 500*time.Millisecond) {
		stdout.Reset()
		stderr.Reset()
		cmd := exec.Command(exe, "-test.run=^$")
		cmd.Env = append(os.Environ(), envHelper+"="+strings.Join(job, " "))
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
		cmd.Dir = filepath.Dir(exe)
		cmd.Stdout, cmd.Stderr = stdout, stderr
		err := cmd.Run()
		if !errors.Is(err, syscall.ETXTBSY) || time.Now().After(deadline) {
			return err
		}
		time.Sleep(backoff)
	}
}

// executable is a copy of the test binary that any account may run (the
// go tool builds it in a directory only root may enter); removed when the
// test ends.
func executable(t testing.TB) string {
	self, err := os.Executable()
	if err != nil {
		t.Fatalf("asuser: %v", err)
	}
	dir, err := os.MkdirTemp("", "asuser")
	if err != nil {
		t.Fatalf("asuser: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatalf("asuser: %v", err)
	}
	src, err := os.Open(self)
	if err != nil {
		t.Fatalf("asuser: %v", err)
	}
	defer src.Close()
	exe := filepath.Join(dir, filepath.Base(self))
	dst, err := os.OpenFile(exe, os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o755)
	if err != nil {
		t.Fatalf("asuser: %v", err)
	}
	_, err = io.Copy(dst, src)
	if cerr := dst.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatalf("asuser: copying test binary: %v", err)
	}
	return exe
}
