package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/msprelay/msprelay/internal/waitfor"
)

// Process-level tests: the real cmd/node and cmd/msp binaries, built once
// per test binary run into a temporary directory.

// builtBinaries builds ../node and . once; later callers share the result.
type builtBinaries struct {
	once      sync.Once
	dir       string
	node, msp string
	err       error
}

var binaries builtBinaries // written once by build (sync.Once), read-only afterwards

func (b *builtBinaries) build(t *testing.T) (node, mspBin string) {
	t.Helper()
	b.once.Do(func() {
		b.dir, b.err = os.MkdirTemp("", "msp-proc-test-")
		if b.err != nil {
			return
		}
		b.node, b.msp = filepath.Join(b.dir, "node"), filepath.Join(b.dir, "msp")
		for _, x := range []struct{ out, pkg string }{{b.node, "../node"}, {b.msp, "."}} {
			if out, err := exec.Command("go", "build", "-o", x.out, x.pkg).CombinedOutput(); err != nil {
				b.err = fmt.Errorf("go build %s: %v\n%s", x.pkg, err, out)
				return
			}
		}
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.node, b.msp
}

// TestMain removes the binaries' directory after the tests.
func TestMain(m *testing.M) {
	code := m.Run()
	if binaries.dir != "" {
		os.RemoveAll(binaries.dir)
	}
	os.Exit(code)
}

// lines collects the lines a process writes to one stream; mu guards b.
type lines struct {
	mu sync.Mutex
	b  []string
}

func (l *lines) add(s string) {
	l.mu.Lock()
	l.b = append(l.b, s)
	l.mu.Unlock()
}

func (l *lines) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.b, "\n")
}

// count is how many lines contain s.
func (l *lines) count(s string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, x := range l.b {
		if strings.Contains(x, s) {
			n++
		}
	}
	return n
}

// proc is a started binary with its output collected line by line. The
// test owns it; t's cleanup kills it if it still runs.
type proc struct {
	cmd      *exec.Cmd
	out, err lines
	readers  sync.WaitGroup // the two pipe readers; Wait runs after them
	exited   chan struct{}
	state    *os.ProcessState
}

func startProc(t *testing.T, env []string, bin string, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(bin, args...), exited: make(chan struct{})}
	p.cmd.Env = append(os.Environ(), env...)
	so, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	se, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	for _, x := range []struct {
		r interface{ Read([]byte) (int, error) }
		l *lines
	}{{so, &p.out}, {se, &p.err}} {
		p.readers.Add(1)
		go func() {
			defer p.readers.Done()
			sc := bufio.NewScanner(x.r)
			sc.Buffer(make([]byte, 64<<10), 1<<20)
			for sc.Scan() {
				x.l.add(sc.Text())
			}
		}()
	}
	go func() {
		p.readers.Wait()
		_ = p.cmd.Wait()
		p.state = p.cmd.ProcessState
		close(p.exited)
	}()
	t.Cleanup(func() { p.stop(t, syscall.SIGKILL) })
	return p
}

// stop signals the process and waits (bounded) for it to exit.
func (p *proc) stop(t *testing.T, sig syscall.Signal) {
	select {
	case <-p.exited:
		return
	default:
	}
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.exited:
	case <-time.After(20 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
		t.Errorf("%s did not exit within 20s of %v", p.cmd.Path, sig)
	}
}

// testNode runs a real node with its session socket and data in dir.
type testNode struct {
	t    *testing.T
	bin  string
	dir  string
	sock string
	p    *proc
	msp  string // MSP address of the running process
}

var readyRE = regexp.MustCompile(`"msg":"node ready".*"msp":"([^"]+)"`)

func newTestNode(t *testing.T, bin string) *testNode {
	dir := t.TempDir()
	n := &testNode{t: t, bin: bin, dir: dir, sock: filepath.Join(dir, "s.sock")}
	n.start()
	return n
}

func (n *testNode) start() {
	n.t.Helper()
	n.p = startProc(n.t, nil, n.bin, "--name", "proc1", "--msp", "127.0.0.1:0", "--session-socket", n.sock,
		"--data", filepath.Join(n.dir, "data"), "--log-format", "json")
	waitfor.True(n.t, 60*time.Second, "node ready", func() bool {
		select {
		case <-n.p.exited:
			n.t.Fatalf("node exited before ready:\n%s", n.p.err.String())
		default:
		}
		if m := readyRE.FindStringSubmatch(n.p.err.String()); m != nil {
			n.msp = m[1]
			return true
		}
		return false
	})
}

// runMSP runs the msp binary to its end and returns its exit code and
// output.
func runMSP(t *testing.T, bin string, env []string, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), env...)
	var so, se strings.Builder
	cmd.Stdout, cmd.Stderr = &so, &se
	err := cmd.Run()
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("msp %v: %v", args, err)
		}
		code = ee.ExitCode()
	}
	return code, so.String(), se.String()
}

// Issue 20, "Clients that stay": "`msp listen` and `msp chat` reconnect with
// backoff through node restarts and network loss, say so in one line, ...
// and never lose a message across the gap (the mailbox holds it)". Here the
// node is stopped (SIGTERM: OUT SSD; SIGKILL: the socket just closes) and
// started again on the same data; a message sent after the restart, before
// or after the listener is back, reaches the listener exactly once.
func TestListenReconnectsThroughNodeRestart(t *testing.T) {
	t.Parallel()
	nodeBin, mspBin := binaries.build(t)
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL} {
		t.Run(sig.String(), func(t *testing.T) {
			n := newTestNode(t, nodeBin)
			l := startProc(t, nil, mspBin, "listen", "--session", n.sock, "--user", "alice", "--term", "pts/77")
			waitfor.True(t, 20*time.Second, "listen signed in", func() bool { return l.err.count("listening as alice") == 1 })
			if code, _, se := runMSP(t, mspBin, nil, "send", "--server", n.msp, "--from", "bob", "alice", "before the restart"); code != 0 {
				t.Fatalf("send before: exit %d: %s", code, se)
			}
			waitfor.True(t, 10*time.Second, "first message shown", func() bool { return l.out.count("before the restart") == 1 })

			n.p.stop(t, sig)
			waitfor.True(t, 20*time.Second, "the listener says it lost the node", func() bool {
				return l.err.count("lost connection to node") == 1
			})
			select {
			case <-l.exited:
				t.Fatalf("listen exited when the node stopped:\n%s", l.err.String())
			default:
			}
			n.start()
			if code, _, se := runMSP(t, mspBin, nil, "send", "--server", n.msp, "--from", "bob", "alice", "during the gap"); code != 0 {
				t.Fatalf("send during the gap: exit %d: %s", code, se)
			}
			// "the listener is back within seconds": the backoff is at most
			// 10 s, so 15 s bounds it.
			waitfor.True(t, 15*time.Second, "the listener says it reconnected", func() bool {
				return l.err.count("reconnected to proc1 as alice at pts/77") == 1
			})
			waitfor.True(t, 15*time.Second, "the message from the gap shown", func() bool { return l.out.count("during the gap") >= 1 })
			if code, _, se := runMSP(t, mspBin, nil, "send", "--server", n.msp, "--from", "bob", "alice", "after the gap"); code != 0 {
				t.Fatalf("send after: exit %d: %s", code, se)
			}
			waitfor.True(t, 10*time.Second, "the message after the gap shown", func() bool { return l.out.count("after the gap") == 1 })
			if c := l.out.count("during the gap"); c != 1 {
				t.Errorf("the message from the gap shown %d times, want once:\n%s", c, l.out.String())
			}
			if c := l.out.count("before the restart"); c != 1 {
				t.Errorf("the message before the restart shown %d times, want once:\n%s", c, l.out.String())
			}
			l.stop(t, syscall.SIGINT)
			if code := l.state.ExitCode(); code != 0 {
				t.Errorf("listen exit %d after Ctrl-C, want 0:\n%s", code, l.err.String())
			}
		})
	}
}
