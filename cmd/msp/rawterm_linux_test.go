//go:build linux

package main

import (
	"fmt"
	"os"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// openPTY opens a real pseudo-terminal pair through /dev/ptmx.
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetUint32(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return m, s
}

// On a real terminal, chat's raw mode turns off line buffering and echo but
// keeps signals (Ctrl-C interrupts) and output processing, and restoring
// gives the old mode back; on anything else it does nothing.
func TestRawModeOnAPseudoTerminal(t *testing.T) {
	t.Parallel()
	_, slave := openPTY(t)
	before, err := unix.IoctlGetTermios(int(slave.Fd()), unix.TCGETS)
	if err != nil {
		t.Fatal(err)
	}
	restore := rawMode(slave, slave)
	if restore == nil {
		t.Fatal("rawMode refused a terminal")
	}
	raw, err := unix.IoctlGetTermios(int(slave.Fd()), unix.TCGETS)
	if err != nil {
		t.Fatal(err)
	}
	if raw.Lflag&(syscall.ICANON|syscall.ECHO) != 0 || raw.Lflag&syscall.ISIG == 0 || raw.Oflag != before.Oflag || raw.Cc[syscall.VMIN] != 1 {
		t.Fatalf("raw mode lflag %#x oflag %#x vmin %d (before lflag %#x)", raw.Lflag, raw.Oflag, raw.Cc[syscall.VMIN], before.Lflag)
	}
	restore()
	after, err := unix.IoctlGetTermios(int(slave.Fd()), unix.TCGETS)
	if err != nil {
		t.Fatal(err)
	}
	if after.Lflag != before.Lflag {
		t.Fatalf("restored lflag %#x, want %#x", after.Lflag, before.Lflag)
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	if rawMode(r, w) != nil {
		t.Fatal("rawMode took a pipe for a terminal")
	}
}
