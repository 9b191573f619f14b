//go:build linux

package terminal

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/msprelay/msprelay/internal/ptytest"
	"github.com/msprelay/msprelay/switchboard"
)

// Rule: a TTY's failures fall in the switchboard's classes (mesg n is a
// refusal, a stuck terminal is slow, anything else is gone), and the reason
// a remote sender reads gives away no path or uid.
func TestTTYDeliverClassifiesFailures(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		setup  func(t *testing.T, pt *ptytest.PTY)
		class  error
		reason string
	}{
		{"mesg n refuses", func(t *testing.T, pt *ptytest.PTY) { pt.Chmod(t, 0o600) }, switchboard.ErrBusy, "not accepting messages (mesg n)"},
		{"stuck terminal is slow", func(t *testing.T, pt *ptytest.PTY) { pt.Stop(t) }, switchboard.ErrTerminalSlow, "terminal not reading (write timed out)"},
		{"foreign device is gone", func(t *testing.T, pt *ptytest.PTY) { pt.Chown(t, nobody) }, switchboard.ErrTerminalGone, "terminal not available"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			pt := ptytest.Open(t, os.Getuid(), 0o620)
			tty := NewTTY(newTestWriter(t, loginOn(t, "root", pt), 200*time.Millisecond), "root", pt.Line, nil)
			d := &switchboard.Delivery{Sender: "a", Text: strings.Repeat("x", 300), Origin: switchboard.Origin{Node: "n1"}, Time: time.Now()}
			if err := tty.Deliver(context.Background(), d); err != nil {
				t.Fatalf("Deliver before %s: %v", tt.name, err)
			}
			pt.ReadUntil(t, "EOF\r\n", 5*time.Second)
			tt.setup(t, pt)
			err := tty.Deliver(context.Background(), d)
			if !errors.Is(err, tt.class) || err.Error() != tt.reason {
				t.Fatalf("Deliver = %v, want %q matching %v", err, tt.reason, tt.class)
			}
		})
	}
}
