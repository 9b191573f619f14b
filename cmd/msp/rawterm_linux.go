//go:build linux

package main

import (
	"os"
	"syscall"
	"unsafe"
)

// rawTerminal puts the terminal on stdin into character mode without echo
// (signals and output processing stay on, so Ctrl-C still interrupts and
// "\n" still moves to a new line) when stdin and stdout are both
// terminals. It returns the function that restores the old mode, or nil.
func rawTerminal() func() { return rawMode(os.Stdin, os.Stdout) }

// rawMode does rawTerminal's work on in and out.
func rawMode(in, out *os.File) func() {
	var old syscall.Termios
	if ioctl(in.Fd(), syscall.TCGETS, &old) != nil {
		return nil
	}
	var o syscall.Termios
	if ioctl(out.Fd(), syscall.TCGETS, &o) != nil {
		return nil
	}
	raw := old
	raw.Lflag &^= syscall.ICANON | syscall.ECHO
	raw.Cc[syscall.VMIN], raw.Cc[syscall.VTIME] = 1, 0
	if ioctl(in.Fd(), syscall.TCSETS, &raw) != nil {
		return nil
	}
	return func() { _ = ioctl(in.Fd(), syscall.TCSETS, &old) }
}

func ioctl(fd uintptr, req uint, t *syscall.Termios) error {
	if _, _, errno := syscall.Syscall(syscall.SYS_IOCTL, fd, uintptr(req), uintptr(unsafe.Pointer(t))); errno != 0 {
		return errno
	}
	return nil
}
