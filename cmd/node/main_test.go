package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/msprelay/msprelay/internal/syncbuf"
	"github.com/msprelay/msprelay/principal"

	"github.com/msprelay/msprelay/internal/waitfor"
	"github.com/msprelay/msprelay/msp"
	"github.com/msprelay/msprelay/node"
	"github.com/msprelay/msprelay/session"
	"github.com/msprelay/msprelay/sessionclient"
)

// "Bad input gets a clear message and exit code 2 in the CLI."
func TestBadFlagsExitTwo(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		args []string
		env  []string
		want string
	}{
		{"unknown flag", []string{"--bogus"}, nil, "flag provided but not defined"},
		{"node name with a dot", []string{"--name", "a.b"}, nil, "invalid node name"},
		{"bad MSP address", []string{"--msp", "nonsense"}, nil, "--msp"},
		{"bad session auth", []string{"--session", "127.0.0.1:0", "--session-auth", "maybe"}, nil, "--session-auth"},
		{"secret auth needs a secrets file", []string{"--session", "127.0.0.1:0", "--session-auth", "secret"}, nil, "--session-secrets"},
		{"bad gossip profile", []string{"--gossip-profile", "moon"}, nil, "--gossip-profile"},
		{"bad log level", []string{"--log-level", "loud"}, nil, "--log-level"},
		{"stray argument", []string{"extra"}, nil, "unexpected argument"},
		{"issue 12: --join gossips on every interface, which needs a key", []string{"--join", "192.0.2.1:7946", "--data", os.TempDir()}, nil, "--gossip-key"},
		{"--nats-auth without --nats-listen", []string{"--nats-auth", "auth.conf", "--nats-nkey", "n.nk", "--data", os.TempDir()}, nil, "--nats-listen"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var stderr bytes.Buffer
			if code := run(tc.args, &stderr); code != 2 {
				t.Fatalf("exit %d, want 2 (stderr %q)", code, stderr.String())
			}
			if !strings.Contains(stderr.String(), tc.want) {
				t.Fatalf("stderr %q does not mention %q", stderr.String(), tc.want)
			}
		})
	}
}

// A real node process: it serves MSP and sessions, and on SIGTERM it tells
// sessions OUT SSD, removes its socket and exits 0.
func TestNodeProcessServesAndShutsDownOnSIGTERM(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	bin := filepath.Join(dir, "node")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	sock := filepath.Join(dir, "s.sock")
	cmd := exec.Command(bin, "--name", "proc1", "--msp", "127.0.0.1:0", "--session-socket", sock,
		"--data", filepath.Join(dir, "data"), "--log-format", "json")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// The reader owns the pipe until it returns (readDone): os/exec says
	// Wait must not run before all reads from the pipe have completed.
	ready := make(chan string, 1)
	readDone := make(chan struct{})
	var logs syncbuf.Buffer
	go func() {
		defer close(readDone)
		re := regexp.MustCompile(`"msg":"node ready".*"msp":"([^"]+)"`)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			logs.WriteLine(sc.Text())
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				ready <- m[1]
			}
		}
	}()
	waitReader := func() {
		select {
		case <-readDone:
		case <-time.After(10 * time.Second):
			t.Errorf("stderr reader still running 10s after the node exited")
		}
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			waitReader()
			_ = cmd.Wait()
		}
	})
	var mspAddr string
	select {
	case a := <-ready:
		mspAddr = a
	case <-readDone:
		t.Fatalf("node exited before ready:\n%s", logs.String())
	case <-time.After(20 * time.Second):
		t.Fatal("node not ready within 20s")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cl, err := sessionclient.Dial(ctx, sock)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if _, err := cl.SignIn(ctx, "alice", "pts/1", principal.Online); err != nil {
		t.Fatal(err)
	}
	r, err := (&msp.Client{}).Send(ctx, mspAddr, &msp.Message{Recipient: "alice", Text: "before shutdown", Sender: "bob"})
	if err != nil || !r.OK {
		t.Fatalf("send: %+v %v", r, err)
	}
	select {
	case m := <-cl.Messages():
		if m == nil || m.Text != "before shutdown" {
			t.Fatalf("message %+v", m)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no message within 10s")
	}
	start := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-cl.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("session not closed after SIGTERM")
	}
	if !errors.Is(cl.Err(), sessionclient.ErrServerShutdown) {
		t.Fatalf("session ended with %v, want OUT SSD", cl.Err())
	}
	waitReader()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("node exit: %v\n%s", err, logs.String())
	}
	t.Logf("clean shutdown in %v", time.Since(start).Round(time.Millisecond))
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Fatalf("socket left behind: %v", err)
	}
}

// Issue 14: a second node on one host "fails with 'another node is
// listening on /run/msprelay/session.sock'": the error must say which flag
// to use.
func TestSecondNodeOnOneSocketIsToldWhichFlagToUse(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	sock := filepath.Join(dir, "s.sock")
	first, err := session.ListenUnix(sock)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	go func() { // answer like a live node: accept and hang up
		for {
			c, err := first.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	var stderr syncbuf.Buffer
	code := run([]string{"--name", "second", "--msp", "127.0.0.1:0", "--session-socket", sock,
		"--data", filepath.Join(dir, "data"), "--log-format", "json"}, writerFunc(stderr.WriteLine))
	if code == 0 {
		t.Fatalf("second node started on a socket in use:\n%s", stderr.String())
	}
	out := stderr.String()
	t.Logf("%s", out)
	if !strings.Contains(out, "--session-socket") || !strings.Contains(out, sock) {
		t.Fatalf("error does not name the socket and the flag to change it:\n%s", out)
	}
}

// writerFunc adapts a line sink to io.Writer (slog writes whole records).
type writerFunc func(string)

func (f writerFunc) Write(p []byte) (int, error) {
	f(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// Issue 20: "A second node started on the default --data directory beside
// a running one reported node ready" and corrupted the store. "A node
// never shares its store": the second is refused, exit 2, naming the
// holder's pid and the flag; the first keeps delivering.
func TestSecondNodeOnOneDataDirIsRefused(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	bin := filepath.Join(dir, "node")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	data := filepath.Join(dir, "data")
	sock := filepath.Join(dir, "first.sock")
	first := exec.Command(bin, "--name", "lock1", "--msp", "127.0.0.1:0", "--session-socket", sock,
		"--data", data, "--terminals", "off", "--log-format", "json")
	var firstLogs syncbuf.Buffer
	first.Stderr = writerFunc(firstLogs.WriteLine)
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = first.Process.Kill()
		_ = first.Wait()
	})
	mspRe := regexp.MustCompile(`"msg":"node ready".*"msp":"([^"]+)"`)
	var mspAddr string
	waitfor.True(t, 20*time.Second, "the first node ready", func() bool {
		m := mspRe.FindStringSubmatch(firstLogs.String())
		if m != nil {
			mspAddr = m[1]
		}
		return m != nil
	})

	// Bounded: a second node that is not refused would run on.
	ctx2, cancel2 := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel2()
	// The same name too: two nodes on one host that both took the host
	// name (issue 20) hear of it.
	second := exec.CommandContext(ctx2, bin, "--name", "lock1", "--msp", "127.0.0.1:0", "--session-socket", filepath.Join(dir, "second.sock"),
		"--data", data, "--terminals", "off")
	out, err := second.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 {
		t.Fatalf("second node on the same --data: %v, want exit 2\n%s", err, out)
	}
	pid := strconv.Itoa(first.Process.Pid)
	for _, want := range []string{"--data", data, "in use by another process", "pid " + pid, "another node on this host has the same name"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("second node's error does not say %q:\n%s", want, out)
		}
	}
	if strings.Contains(string(out), "node ready") || strings.Contains(string(out), "node stopped") {
		t.Errorf("a node that never started logged ready or stopped:\n%s", out)
	}

	// The first still works: a sign-in and a delivery through it.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cl, err := sessionclient.Dial(ctx, sock)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if _, err := cl.SignIn(ctx, "alice", "pts/1", principal.Online); err != nil {
		t.Fatal(err)
	}
	r, err := (&msp.Client{}).Send(ctx, mspAddr, &msp.Message{Recipient: "alice", Text: "still here", Sender: "bob"})
	if err != nil || !r.OK {
		t.Fatalf("send through the first node after the refusal: %+v %v\n%s", r, err, firstLogs.String())
	}
	if strings.Contains(firstLogs.String(), `"level":"ERROR"`) {
		t.Errorf("the first node logged an error:\n%s", firstLogs.String())
	}
}

// Issue 20: "node: node: bad config: ops: bad config: …" — errors for
// people say each prefix once and name the flag.
func TestConfigErrorsSayEachPrefixOnce(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"--http without a port", []string{"--http", "nope"}, "node: --http: "},
		// "--terminals off is refused (only --terminals=off)": here it is
		// taken, so the error is about the next flag, not a stray "off".
		{"--terminals off takes its value", []string{"--terminals", "off", "--http", "nope"}, "node: --http: "},
		{"-terminals on takes its value", []string{"-terminals", "on", "--http", "nope"}, "node: --http: "},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var stderr bytes.Buffer
			if code := run(append([]string{"--data", t.TempDir()}, tc.args...), &stderr); code != 2 {
				t.Fatalf("exit %d, want 2 (stderr %q)", code, stderr.String())
			}
			out := stderr.String()
			if !strings.HasPrefix(out, tc.want) {
				t.Errorf("stderr %q does not start with %q", out, tc.want)
			}
			for _, rep := range []string{"node: node:", "bad config", "ops:"} {
				if strings.Contains(out, rep) {
					t.Errorf("stderr %q says %q", out, rep)
				}
			}
		})
	}
}

// Issue 20: "the port-18 error for non-root advises about 'another
// node'": a refused bind names the capability and an unprivileged port; a
// data directory another node holds names that node's pid and --data.
func TestStartErrorsSayWhatToDo(t *testing.T) {
	t.Parallel()
	eacces := &net.OpError{Op: "listen", Net: "tcp", Err: os.NewSyscallError("bind", syscall.EACCES)}
	cases := []struct {
		name      string
		err       error
		want, not []string
	}{
		{"port 18 without privilege", &node.FieldError{Field: "MSPAddr", Err: eacces},
			[]string{"--msp", "CAP_NET_BIND_SERVICE", "--msp :1818"}, []string{"another node"}},
		{"data directory held", &node.FieldError{Field: "DataDir", Err: fmt.Errorf("/d: %w (pid 42)", node.ErrDataDirInUse)},
			[]string{"--data", "pid 42", "its own directory with --data"}, nil},
		{"data directory not creatable", &node.FieldError{Field: "DataDir", Err: os.ErrPermission},
			[]string{"--data"}, []string{"another node"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := inFlagTerms(tc.err).Error()
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("%q does not say %q", got, w)
				}
			}
			for _, w := range tc.not {
				if strings.Contains(got, w) {
					t.Errorf("%q says %q", got, w)
				}
			}
		})
	}
}
