package cliflags

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/msprelay/msprelay/internal/waitfor"

	"github.com/msprelay/msprelay/internal/syncbuf"
)

// SIGHUP "reloads the log level": a level file is read at start and again
// by Reload; a bad file keeps the old level.
func TestLevelFileReload(t *testing.T) {
	t.Parallel()
	f := filepath.Join(t.TempDir(), "level")
	if err := os.WriteFile(f, []byte("warn\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	l, err := NewLogging(&buf, "info", "text", f)
	if err != nil {
		t.Fatal(err)
	}
	if l.Logger.Enabled(context.Background(), 0) {
		t.Fatal("info enabled with warn in the level file")
	}
	os.WriteFile(f, []byte("trace"), 0o600)
	if changed, err := l.Reload(); err != nil || !changed || l.Level.Level() != LevelTrace {
		t.Fatalf("reload: changed=%v err=%v level=%v", changed, err, l.Level.Level())
	}
	os.WriteFile(f, []byte("loud"), 0o600)
	if _, err := l.Reload(); err == nil || l.Level.Level() != LevelTrace {
		t.Fatalf("bad file: err=%v level=%v, want an error and trace kept", err, l.Level.Level())
	}
}

// "Nothing dies on SIGHUP": a child process running RunUntilSignal gets
// SIGHUP (the reload runs) and keeps running until SIGTERM.
func TestRunUntilSignalSurvivesSIGHUP(t *testing.T) {
	if os.Getenv("CLIFLAGS_CHILD") == "1" {
		l, _ := NewLogging(os.Stderr, "info", "text", "")
		code := RunUntilSignal(l.Logger, "child", func(ctx context.Context) error {
			l.Logger.Info("child running") // the signal handlers are in place
			<-ctx.Done()
			return nil
		}, func() { l.Logger.Info("reload ran") })
		os.Exit(code)
	}
	t.Parallel()
	cmd := exec.Command(os.Args[0], "-test.run=^TestRunUntilSignalSurvivesSIGHUP$")
	cmd.Env = append(os.Environ(), "CLIFLAGS_CHILD=1")
	var out syncbuf.Buffer
	cmd.Stderr = &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	waitFor := func(what string) {
		t.Helper()
		waitfor.True(t, 10*time.Second, fmt.Sprintf("%q in the output", what), func() bool { return strings.Contains(out.String(), what) })
	}
	waitFor("child running")
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor("reload ran")
	select {
	case err := <-done:
		t.Fatalf("child exited after SIGHUP: %v\n%s", err, out.String())
	case <-time.After(200 * time.Millisecond):
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, out.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("child did not exit on SIGTERM")
	}
}
