//go:build !linux

package main

// rawTerminal is Linux-only; elsewhere msp chat reads stdin line by line.
func rawTerminal() func() { return nil }
