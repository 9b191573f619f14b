package main

import (
	"bytes"
	"strings"
	"testing"
)

// Rule: usage errors exit 2 before anything starts, and say what is wrong.
func TestUsageErrorsExit2(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"unknown flag", []string{"--nope"}, "flag provided but not defined: -nope"},
		{"stray argument", []string{"extra"}, `unexpected argument "extra"`},
		{"unknown scenario", []string{"--scenarios", "local,bogus"}, `unknown scenario "bogus"`},
		{"bad cluster sizes", []string{"--presence-nodes", "10,x"}, "--presence-nodes"},
		{"bad cross mode", []string{"--cross-modes", "smtp"}, `cross mode "smtp"`},
		{"zero rounds", []string{"--quick", "--rounds", "0"}, "rounds 0"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := run(tc.args, &stdout, &stderr); code != 2 {
				t.Fatalf("exit %d, want 2; stderr: %s", code, stderr.String())
			}
			if !strings.Contains(stderr.String(), tc.want) {
				t.Fatalf("stderr %q lacks %q", stderr.String(), tc.want)
			}
			if stdout.Len() != 0 {
				t.Fatalf("stdout not empty: %q", stdout.String())
			}
		})
	}
}
