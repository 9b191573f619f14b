package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/msprelay/msprelay/internal/cliflags"
)

// "Bad input gets a clear message and exit code 2 in the CLI", for the tty
// flags of issue 9.
func TestBadTerminalFlagsExitTwo(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"terminals neither on nor off", []string{"--terminals=maybe"}, "want on or off"},
		{"unknown tty charset", []string{"--tty-charset", "EBCDIC"}, "--tty-charset"},
		{"empty utmp path", []string{"--utmp", ""}, "--utmp"},
		{"negative tty idle", []string{"--tty-idle", "-1m"}, "--tty-idle"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var stderr bytes.Buffer
			if code := run(append([]string{"--data", t.TempDir()}, tc.args...), &stderr); code != 2 {
				t.Fatalf("exit %d, want 2 (stderr %q)", code, stderr.String())
			}
			if !strings.Contains(stderr.String(), tc.want) {
				t.Fatalf("stderr %q does not mention %q", stderr.String(), tc.want)
			}
		})
	}
}

func TestTerminalsFlagSpellings(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]bool{"on": true, "off": false, "true": true, "false": false} {
		var b bool
		if err := cliflags.OnOff(&b).Set(in); err != nil || b != want {
			t.Errorf("Set(%q) = %v, %v; want %v", in, b, err, want)
		}
	}
	var off bool
	if s := cliflags.OnOff(&off).String(); s != "off" {
		t.Errorf("zero String = %q", s)
	}
}
