//go:build linux

package terminal

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/msprelay/msprelay/internal/ptytest"
)

// nobody is a uid that owns no test terminal.
const nobody = 65534

// loginOn writes a utmp file in a temp dir listing user on each pty.
func loginOn(t *testing.T, user string, ptys ...*ptytest.PTY) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "utmp")
	var rs []Record
	for i, pt := range ptys {
		rs = append(rs, Record{Type: UserProcess, PID: int32(1000 + i), Line: pt.Line, User: user, Time: time.Now()})
	}
	if err := WriteUtmp(p, rs); err != nil {
		t.Fatal(err)
	}
	return p
}

func newTestWriter(t *testing.T, utmp string, timeout time.Duration) *Writer {
	t.Helper()
	w, err := NewWriter(WriterConfig{Utmp: utmp, Timeout: timeout})
	if err != nil {
		t.Fatal(err)
	}
	return w
}

var testMsg = Message{Sender: "alice", Node: "hosta", SenderTerm: "pts/9", Time: time.Now(), Verified: true,
	Text: "hi bob\r\n\x1b[2J\x1b]0;pwned\x07\x9b31m\xe2\x80\xae caf\xe9"}

// Rule (issue 9): the node "writes a banner and the message" to the
// terminal, every hostile octet shown safely, and "EOF".
func TestWriterWritesToRealPTY(t *testing.T) {
	t.Parallel()
	pt := ptytest.Open(t, os.Getuid(), 0o620)
	w := newTestWriter(t, loginOn(t, "root", pt), time.Second)
	if err := w.Write("root", pt.Line, testMsg); err != nil {
		t.Fatalf("Write: %v", err)
	}
	got := pt.ReadUntil(t, "EOF\r\n", 5*time.Second)
	want := "\r\nMessage from alice@hosta on pts/9 at " + testMsg.Time.Format("15:04") + " ...\r\n" +
		"hi bob\r\n^[[2J^[]0;pwned^G\\x9b31mâ\\x80® café\r\nEOF\r\n"
	if got != want {
		t.Fatalf("terminal read %q, want %q", got, want)
	}
}

// Rule (issue 9): the node "checks that it is a character device that
// really belongs to that login (owner uid matches the user, it is listed in
// utmp), honours mesg n (the group write bit)", and never follows a link.
func TestWriterRefuses(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		setup func(t *testing.T, pt *ptytest.PTY) (user, line, devDir string)
		want  error
	}{
		{"mesg n: group write bit clear", func(t *testing.T, pt *ptytest.PTY) (string, string, string) {
			pt.Chmod(t, 0o600)
			return "root", pt.Line, "/dev"
		}, ErrMesgN},
		{"device owned by another uid", func(t *testing.T, pt *ptytest.PTY) (string, string, string) {
			pt.Chown(t, nobody)
			return "root", pt.Line, "/dev"
		}, ErrWrongOwner},
		{"login not listed in utmp", func(t *testing.T, pt *ptytest.PTY) (string, string, string) {
			return "daemon", pt.Line, "/dev"
		}, ErrNotLoggedIn},
		{"symbolic link to the terminal", func(t *testing.T, pt *ptytest.PTY) (string, string, string) {
			dir := t.TempDir()
			if err := os.Mkdir(filepath.Join(dir, "pts"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(pt.Path, filepath.Join(dir, pt.Line)); err != nil {
				t.Fatal(err)
			}
			return "root", pt.Line, dir
		}, ErrNotTerminal},
		{"symbolic link in a directory", func(t *testing.T, pt *ptytest.PTY) (string, string, string) {
			dir := t.TempDir()
			if err := os.Symlink("/dev/pts", filepath.Join(dir, "pts")); err != nil {
				t.Fatal(err)
			}
			return "root", pt.Line, dir
		}, ErrNotTerminal},
		{"regular file", func(t *testing.T, pt *ptytest.PTY) (string, string, string) {
			dir := t.TempDir()
			if err := os.Mkdir(filepath.Join(dir, "pts"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, pt.Line), nil, 0o620); err != nil {
				t.Fatal(err)
			}
			return "root", pt.Line, dir
		}, ErrNotTerminal},
		{"line escaping the device directory", func(t *testing.T, pt *ptytest.PTY) (string, string, string) {
			return "root", "../etc/passwd", "/dev"
		}, ErrBadLine},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			pt := ptytest.Open(t, os.Getuid(), 0o620)
			user, line, devDir := tt.setup(t, pt)
			utmp := loginOn(t, "root", pt)
			w, err := NewWriter(WriterConfig{Utmp: utmp, DevDir: devDir, Timeout: time.Second})
			if err != nil {
				t.Fatal(err)
			}
			if err := w.Write(user, line, testMsg); !errors.Is(err, tt.want) {
				t.Fatalf("Write = %v, want %v", err, tt.want)
			}
			pt.ReadNothing(t, 100*time.Millisecond)
		})
	}
}

// Rule (issue 9): "Writes use a deadline so a stuck terminal cannot block
// delivery": output stopped by ^S times the write out.
func TestWriterStuckTerminalTimesOut(t *testing.T) {
	t.Parallel()
	pt := ptytest.Open(t, os.Getuid(), 0o620)
	pt.Stop(t)
	w := newTestWriter(t, loginOn(t, "root", pt), 200*time.Millisecond)
	start := time.Now()
	err := w.Write("root", pt.Line, Message{Sender: "a", Node: "n1", Text: strings.Repeat("x", 400)})
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Write to a stopped terminal = %v, want a deadline error", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("Write took %v with a 200ms timeout", d)
	}
}
