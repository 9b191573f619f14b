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
func rawTerminal() func() {
	var old syscall.Termios
	if ioctl(os.Stdin.Fd(), syscall.TCGETS, &old) != nil {
		return nil
	}
	var out syscall.Termios
	if ioctl(os.Stdout.Fd(), syscall.TCGETS, &out) != nil {
		return nil
	}
	raw := old
	raw.Lflag &^= syscall.ICANON | syscall.ECHO
	raw.Cc[syscall.VMIN], raw.Cc[syscall.VTIME] = 1, 0
	if ioctl(os.Stdin.Fd(), syscall.TCSETS, &raw) != nil {
		return nil
	}
	return func() { _ = ioctl(os.Stdin.Fd(), syscall.TCSETS, &old) }
}

func ioctl(fd uintptr, req uint, t *syscall.Termios) error {
	if _, _, errno := syscall.Syscall(syscall.SYS_IOCTL, fd, uintptr(req), uintptr(unsafe.Pointer(t))); errno != 0 {
		return errno
	}
	return nil
}
