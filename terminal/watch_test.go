//go:build linux

package terminal

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/msprelay/msprelay/internal/ptytest"
)

// Rule (issue 9): the watcher reports "login, logout, mesg" and the idle
// time from the device's access time; records that are not logins on a
// terminal device are left out.
func TestWatcherReportsLoginsLogoutsMesgAndIdle(t *testing.T) {
	t.Parallel()
	pt := ptytest.Open(t, os.Getuid(), 0o620)
	pt.SetIdle(t, time.Hour)
	utmp := filepath.Join(t.TempDir(), "utmp")
	reports := make(chan []Login, 100)
	w, err := NewWatcher(WatcherConfig{Utmp: utmp, Poll: 20 * time.Millisecond, Report: func(ls []Login) {
		select {
		case reports <- slices.Clone(ls):
		default:
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	await := func(what string, ok func([]Login) bool) []Login {
		t.Helper()
		deadline := time.After(5 * time.Second)
		for {
			select {
			case ls := <-reports:
				if ok(ls) {
					return ls
				}
			case <-deadline:
				t.Fatalf("no report with %s within 5s", what)
			}
		}
	}
	await("no logins while utmp is missing", func(ls []Login) bool { return len(ls) == 0 })
	if err := WriteUtmp(utmp, []Record{
		{Type: UserProcess, PID: 10, Line: pt.Line, User: "root", Host: "192.0.2.1"},
		{Type: UserProcess, PID: 11, Line: ":0", User: "root"},         // X display: no device
		{Type: UserProcess, PID: 12, Line: "pts/99999", User: "root"},  // no such device
		{Type: DeadProcess, PID: 13, Line: pt.Line, User: "root"},      // ended
		{Type: UserProcess, PID: 14, Line: "../etc/passwd", User: "x"}, // hostile
	}); err != nil {
		t.Fatal(err)
	}
	ls := await("the login", func(ls []Login) bool { return len(ls) == 1 })
	l := ls[0]
	if l.User != "root" || l.Line != pt.Line || l.PID != 10 || l.Host != "192.0.2.1" || !l.Mesg || l.UID != uint32(os.Getuid()) {
		t.Fatalf("login = %+v", l)
	}
	if idle := l.Idle(time.Now()); idle < 59*time.Minute || idle > 61*time.Minute {
		t.Fatalf("idle = %v, want about an hour", idle)
	}
	pt.Chmod(t, 0o600)
	await("mesg n", func(ls []Login) bool { return len(ls) == 1 && !ls[0].Mesg })
	pt.SetIdle(t, 0)
	await("input just now", func(ls []Login) bool { return len(ls) == 1 && ls[0].Idle(time.Now()) < time.Minute })
	if err := WriteUtmp(utmp, []Record{{Type: DeadProcess, PID: 10, Line: pt.Line}}); err != nil {
		t.Fatal(err)
	}
	await("the logout", func(ls []Login) bool { return len(ls) == 0 })
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestValidLine(t *testing.T) {
	t.Parallel()
	for _, ok := range []string{"pts/0", "tty1", "ttyS0", "pts/12"} {
		if err := ValidLine(ok); err != nil {
			t.Errorf("ValidLine(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"", ":0", "../x", "pts/../../etc", "/dev/pts/0", "pts//0", "pts/0 ", "a\x1b"} {
		if err := ValidLine(bad); err == nil {
			t.Errorf("ValidLine(%q) = nil, want an error", bad)
		}
	}
}
