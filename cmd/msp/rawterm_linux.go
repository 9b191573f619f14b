//go:build linux

package main

import (
	"os"

	"golang.org/x/sys/unix"
)

// rawTerminal puts the terminal on stdin into character mode without echo
// (signals and output processing stay on, so Ctrl-C still interrupts and
// "\n" still moves to a new line) when stdin and stdout are both
// terminals. It returns the function that restores the old mode, or nil.
func rawTerminal() func() { return rawMode(os.Stdin, os.Stdout) }

// rawMode does rawTerminal's work on in and out. It is not x/term's
// MakeRaw: that also turns off signals and output processing, which would
// make Ctrl-C a key instead of an interrupt and "\n" a bare line feed.
func rawMode(in, out *os.File) func() {
	inFd, outFd := int(in.Fd()), int(out.Fd())
	old, err := unix.IoctlGetTermios(inFd, unix.TCGETS)
	if err != nil {
		return nil
	}
	if _, err := unix.IoctlGetTermios(outFd, unix.TCGETS); err != nil {
		return nil
	}
	raw := *old
	raw.Lflag &^= unix.ICANON | unix.ECHO
	raw.Cc[unix.VMIN], raw.Cc[unix.VTIME] = 1, 0
	if unix.IoctlSetTermios(inFd, unix.TCSETS, &raw) != nil {
		return nil
	}
	return func() { _ = unix.IoctlSetTermios(inFd, unix.TCSETS, old) }
}
