//go:build linux

// Package ptytest gives tests real pseudo-terminals: the master side to read
// what was written to a terminal, and the slave side held open the way a
// login shell holds its terminal. Linux only (posix_openpt through
// /dev/ptmx and golang.org/x/sys/unix).
package ptytest

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// PTY is one pseudo-terminal. The test owns both files; t's cleanup closes
// them.
type PTY struct {
	Master *os.File // read what was written to the terminal
	Slave  *os.File // held open, as a login shell would
	Path   string   // "/dev/pts/N"
	Line   string   // "pts/N", as utmp names it
}

// Open allocates a pseudo-terminal, unlocks it, opens its slave and puts the
// slave in raw output mode (no LF -> CR LF translation), so the master reads
// exactly the octets written to the slave. The slave is chowned to uid with
// mode (for example 0o620: mesg y).
func Open(t testing.TB, uid int, mode os.FileMode) *PTY {
	t.Helper()
	// O_NONBLOCK makes the master pollable, so reads take deadlines; the
	// ioctls go through SyscallConn, because Fd would make it blocking.
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		t.Fatalf("ptytest: open /dev/ptmx: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	rc, err := m.SyscallConn()
	if err != nil {
		t.Fatalf("ptytest: %v", err)
	}
	var n int
	var ioErr error
	if err := rc.Control(func(fd uintptr) {
		if ioErr = unix.IoctlSetPointerInt(int(fd), unix.TIOCSPTLCK, 0); ioErr == nil {
			n, ioErr = unix.IoctlGetInt(int(fd), unix.TIOCGPTN)
		}
	}); err != nil || ioErr != nil {
		t.Fatalf("ptytest: unlockpt/ptsname: %v %v", err, ioErr)
	}
	p := &PTY{Master: m, Path: fmt.Sprintf("/dev/pts/%d", n), Line: fmt.Sprintf("pts/%d", n)}
	s, err := os.OpenFile(p.Path, os.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("ptytest: open %s: %v", p.Path, err)
	}
	t.Cleanup(func() { s.Close() })
	p.Slave = s
	tio, err := unix.IoctlGetTermios(int(s.Fd()), unix.TCGETS)
	if err != nil {
		t.Fatalf("ptytest: tcgetattr: %v", err)
	}
	tio.Oflag &^= unix.OPOST
	tio.Lflag &^= unix.ECHO | unix.ICANON
	if err := unix.IoctlSetTermios(int(s.Fd()), unix.TCSETS, tio); err != nil {
		t.Fatalf("ptytest: tcsetattr: %v", err)
	}
	p.Chown(t, uid)
	p.Chmod(t, mode)
	return p
}

// Chown gives the slave device to uid.
func (p *PTY) Chown(t testing.TB, uid int) {
	t.Helper()
	if err := os.Chown(p.Path, uid, -1); err != nil {
		t.Fatalf("ptytest: chown %s: %v", p.Path, err)
	}
}

// Chmod sets the slave device's mode: 0o620 is mesg y, 0o600 mesg n.
func (p *PTY) Chmod(t testing.TB, mode os.FileMode) {
	t.Helper()
	if err := os.Chmod(p.Path, mode); err != nil {
		t.Fatalf("ptytest: chmod %s: %v", p.Path, err)
	}
}

// SetIdle sets the slave's access time (the user's last input) to d ago.
func (p *PTY) SetIdle(t testing.TB, d time.Duration) {
	t.Helper()
	at := time.Now().Add(-d)
	if err := os.Chtimes(p.Path, at, time.Time{}); err != nil {
		t.Fatalf("ptytest: chtimes %s: %v", p.Path, err)
	}
}

// Stop suspends the terminal's output as ^S does, so writes to it block.
func (p *PTY) Stop(t testing.TB) {
	t.Helper()
	if err := unix.IoctlSetInt(int(p.Slave.Fd()), unix.TCXONC, unix.TCOOFF); err != nil {
		t.Fatalf("ptytest: tcflow: %v", err)
	}
}

// ReadUntil reads from the master until what it read contains want or
// timeout passes, and returns everything read.
func (p *PTY) ReadUntil(t testing.TB, want string, timeout time.Duration) string {
	t.Helper()
	var got bytes.Buffer
	deadline := time.Now().Add(timeout)
	buf := make([]byte, 4096)
	for !strings.Contains(got.String(), want) {
		if err := p.Master.SetReadDeadline(deadline); err != nil {
			t.Fatalf("ptytest: deadline: %v", err)
		}
		n, err := p.Master.Read(buf)
		got.Write(buf[:n])
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("ptytest: %s: no %q within %v; read %q", p.Line, want, timeout, got.String())
			}
			t.Fatalf("ptytest: read %s: %v (read %q)", p.Line, err, got.String())
		}
	}
	return got.String()
}

// ReadNothing fails the test if anything arrives on the master within d.
func (p *PTY) ReadNothing(t testing.TB, d time.Duration) {
	t.Helper()
	if err := p.Master.SetReadDeadline(time.Now().Add(d)); err != nil {
		t.Fatalf("ptytest: deadline: %v", err)
	}
	buf := make([]byte, 4096)
	n, err := p.Master.Read(buf)
	if n > 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("ptytest: %s: want nothing, read %q (%v)", p.Line, buf[:n], err)
	}
}
