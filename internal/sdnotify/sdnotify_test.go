package sdnotify

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// listen opens a real notification socket like systemd's: AF_UNIX,
// SOCK_DGRAM, at name (a path or "@abstract").
func listen(t *testing.T, name string) *net.UnixConn {
	t.Helper()
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatalf("listen %s: %v", name, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// next reads one datagram, failing the test after a bounded wait.
func next(t *testing.T, c *net.UnixConn, within time.Duration) string {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(within))
	buf := make([]byte, 4096)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("no notification within %s: %v", within, err)
	}
	return string(buf[:n])
}

// "write READY=1 / STOPPING=1 / STATUS= to $NOTIFY_SOCKET datagram socket,
// abstract-namespace '@' handled".
func TestSendReachesTheSocket(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		socket func(t *testing.T) string
	}{
		{"a path in the file system", func(t *testing.T) string { return filepath.Join(t.TempDir(), "notify") }},
		{"an '@' name in the abstract namespace", func(t *testing.T) string {
			return fmt.Sprintf("@msprelay-sdnotify-test-%d-%d", os.Getpid(), time.Now().UnixNano())
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			name := tc.socket(t)
			srv := listen(t, name)
			n, err := New(name)
			if err != nil {
				t.Fatal(err)
			}
			if err := n.Send(Ready, Status("serving\non :18")); err != nil {
				t.Fatal(err)
			}
			if got, want := next(t, srv, 5*time.Second), "READY=1\nSTATUS=serving on :18\n"; got != want {
				t.Fatalf("datagram %q, want %q", got, want)
			}
		})
	}
}

// "The nil *Notifier, returned when no manager listens, accepts every call
// and sends nothing"; addresses it cannot reach and malformed states are
// errors, never silently dropped.
func TestNewAndSendRefuse(t *testing.T) {
	t.Parallel()
	n, err := New("")
	if err != nil || n != nil {
		t.Fatalf("New(\"\") = %v, %v; want nil, nil", n, err)
	}
	if err := n.Send(Ready); err != nil {
		t.Fatalf("nil notifier Send: %v", err)
	}
	if _, err := New("vsock:2:1234"); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("New(vsock) error %v, want ErrUnsupported", err)
	}
	n, err = New(filepath.Join(t.TempDir(), "notify"))
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"READY", "STATUS=a\nREADY=1"} {
		if err := n.Send(bad); err == nil {
			t.Errorf("Send(%q) accepted a state that is not one KEY=VALUE line", bad)
		}
	}
	if err := n.Send(Ready); err == nil {
		t.Error("Send to a socket nobody listens on reported success")
	}
}

// READY=1 only after start succeeded, STOPPING=1 as soon as the context is
// cancelled and before serve returns, nothing at all when start fails.
func TestRunOrder(t *testing.T) {
	t.Parallel()
	name := filepath.Join(t.TempDir(), "notify")
	srv := listen(t, name)
	n, err := New(name)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))

	errStart := errors.New("bind failed")
	err = n.Run(context.Background(), log, func(context.Context) (string, error) { return "", errStart }, func(context.Context) error {
		t.Error("serve ran after a failed start")
		return nil
	})
	if !errors.Is(err, errStart) {
		t.Fatalf("Run returned %v, want the start error", err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	stopping := make(chan string, 1)
	go func() {
		done <- n.Run(ctx, log, func(context.Context) (string, error) { return "up", nil }, func(ctx context.Context) error {
			<-ctx.Done()
			// Shutdown work happens here; STOPPING=1 must already be out.
			stopping <- next(t, srv, 5*time.Second)
			return nil
		})
	}()
	if got := next(t, srv, 5*time.Second); got != "READY=1\nSTATUS=up\n" {
		t.Fatalf("first datagram %q, want READY=1 and the status", got)
	}
	cancel()
	select {
	case got := <-stopping:
		if !strings.HasPrefix(got, "STOPPING=1\n") {
			t.Fatalf("datagram at shutdown %q, want STOPPING=1", got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not see the cancellation")
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return")
	}
}

// The real daemons, as systemd starts a Type=notify unit: $NOTIFY_SOCKET
// set, READY=1 once they serve, STOPPING=1 on SIGTERM, exit 0.
func TestDaemonsNotify(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the daemons")
	}
	t.Parallel()
	dir := t.TempDir()
	build := exec.Command("go", "build", "-o", dir+string(filepath.Separator), "../../cmd/node", "../../cmd/relay")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	cases := []struct {
		name string
		args []string
		want string // in the STATUS= text
	}{
		{"node", []string{"--name", "notify1", "--msp", "127.0.0.1:0", "--session-socket", filepath.Join(dir, "s.sock"),
			"--data", filepath.Join(dir, "data")}, "MSP on 127.0.0.1:"},
		{"relay", []string{"--listen", "127.0.0.1:0"}, "NATS clients on 127.0.0.1:"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			name := fmt.Sprintf("@msprelay-sdnotify-%s-%d-%d", tc.name, os.Getpid(), time.Now().UnixNano())
			srv := listen(t, name)
			cmd := exec.Command(filepath.Join(dir, tc.name), tc.args...)
			cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+name)
			var logs strings.Builder
			cmd.Stderr = &logs
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			var waitErr error
			exited := make(chan struct{}) // closed once waitErr is set
			go func() { waitErr = cmd.Wait(); close(exited) }()
			t.Cleanup(func() {
				_ = cmd.Process.Kill()
				<-exited
			})
			got := next(t, srv, 30*time.Second)
			if !strings.HasPrefix(got, "READY=1\nSTATUS=") || !strings.Contains(got, tc.want) {
				t.Fatalf("%s sent %q, want READY=1 and a status with %q\n%s", tc.name, got, tc.want, logs.String())
			}
			if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			if got := next(t, srv, 10*time.Second); !strings.HasPrefix(got, "STOPPING=1\n") {
				t.Fatalf("%s sent %q on SIGTERM, want STOPPING=1", tc.name, got)
			}
			select {
			case <-exited:
				if waitErr != nil {
					t.Fatalf("%s exited with %v after SIGTERM\n%s", tc.name, waitErr, logs.String())
				}
			case <-time.After(20 * time.Second):
				t.Fatalf("%s still running 20s after SIGTERM", tc.name)
			}
		})
	}
}
