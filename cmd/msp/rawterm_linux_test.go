//go:build linux

package main

import (
	"fmt"
	"os"
	"syscall"
	"testing"
	"unsafe"
)

// openPTY opens a real pseudo-terminal pair through /dev/ptmx.
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	var unlock int32
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, m.Fd(), syscall.TIOCSPTLCK, uintptr(unsafe.Pointer(&unlock))); e != 0 {
		t.Fatal(e)
	}
	var n uint32
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, m.Fd(), syscall.TIOCGPTN, uintptr(unsafe.Pointer(&n))); e != 0 {
		t.Fatal(e)
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
	var before syscall.Termios
	if err := ioctl(slave.Fd(), syscall.TCGETS, &before); err != nil {
		t.Fatal(err)
	}
	restore := rawMode(slave, slave)
	if restore == nil {
		t.Fatal("rawMode refused a terminal")
	}
	var raw syscall.Termios
	if err := ioctl(slave.Fd(), syscall.TCGETS, &raw); err != nil {
		t.Fatal(err)
	}
	if raw.Lflag&(syscall.ICANON|syscall.ECHO) != 0 || raw.Lflag&syscall.ISIG == 0 || raw.Oflag != before.Oflag || raw.Cc[syscall.VMIN] != 1 {
		t.Fatalf("raw mode lflag %#x oflag %#x vmin %d (before lflag %#x)", raw.Lflag, raw.Oflag, raw.Cc[syscall.VMIN], before.Lflag)
	}
	restore()
	var after syscall.Termios
	if err := ioctl(slave.Fd(), syscall.TCGETS, &after); err != nil {
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
