package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/msprelay/msprelay/broker"
	"github.com/msprelay/msprelay/internal/testcluster"
	"github.com/nats-io/nats.go"
)

func env(kv ...string) func(string) (string, bool) {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestParseArgs(t *testing.T) {
	t.Parallel()
	host, _ := os.Hostname()
	for _, tc := range []struct {
		name  string
		args  []string
		env   func(string) (string, bool)
		check func(t *testing.T, c broker.Config)
	}{
		{"defaults: hostname, :4222, no JetStream", nil, env(), func(t *testing.T, c broker.Config) {
			if want := broker.SanitizeName(host, "relay"); c.Name != want {
				t.Errorf("Name = %q, want %q", c.Name, want)
			}
			if c.Listen != ":4222" || c.JetStream || c.DataDir != "" {
				t.Errorf("Listen %q JetStream %v DataDir %q, want :4222 false \"\"", c.Listen, c.JetStream, c.DataDir)
			}
		}},
		{"--data turns JetStream on", []string{"--data", "/var/lib/r"}, env(), func(t *testing.T, c broker.Config) {
			if !c.JetStream || c.DataDir != "/var/lib/r" {
				t.Errorf("JetStream %v DataDir %q, want true /var/lib/r", c.JetStream, c.DataDir)
			}
		}},
		{"env sets a flag", nil, env("MSPRELAY_RELAY_CLUSTER_NAME", "east", "MSPRELAY_RELAY_PASSWORD", "pw"), func(t *testing.T, c broker.Config) {
			if c.ClusterName != "east" || c.Password != "pw" {
				t.Errorf("ClusterName %q Password %q, want east pw", c.ClusterName, c.Password)
			}
		}},
		{"command line beats env", []string{"--name", "flag"}, env("MSPRELAY_RELAY_NAME", "env"), func(t *testing.T, c broker.Config) {
			if c.Name != "flag" {
				t.Errorf("Name = %q, want flag", c.Name)
			}
		}},
		{"lists split on commas", []string{"--routes", "nats-route://a:6222, nats-route://b:6222,", "--leaf-remotes", "nats-leaf://h:7422"}, env(), func(t *testing.T, c broker.Config) {
			if want := []string{"nats-route://a:6222", "nats-route://b:6222"}; !reflect.DeepEqual(c.Routes, want) {
				t.Errorf("Routes = %q, want %q", c.Routes, want)
			}
			if want := []string{"nats-leaf://h:7422"}; !reflect.DeepEqual(c.LeafRemotes, want) {
				t.Errorf("LeafRemotes = %q, want %q", c.LeafRemotes, want)
			}
		}},
		{"--gateways repeated and ;-separated", []string{"--gateways", "east=nats://e1:7222,nats://e2:7222;west=nats://w1:7222", "--gateways", "east=nats://e3:7222"}, env(), func(t *testing.T, c broker.Config) {
			want := map[string][]string{"east": {"nats://e1:7222", "nats://e2:7222", "nats://e3:7222"}, "west": {"nats://w1:7222"}}
			if !reflect.DeepEqual(c.Gateways, want) {
				t.Errorf("Gateways = %v, want %v", c.Gateways, want)
			}
		}},
		{"--config keeps the file's listen address", []string{"--config", "r.conf"}, env(), func(t *testing.T, c broker.Config) {
			if c.Listen != "" || c.ConfigFile != "r.conf" {
				t.Errorf("Listen %q ConfigFile %q, want \"\" r.conf", c.Listen, c.ConfigFile)
			}
		}},
		{"--config with --listen overrides the file", []string{"--config", "r.conf", "--listen", ":5222"}, env(), func(t *testing.T, c broker.Config) {
			if c.Listen != ":5222" {
				t.Errorf("Listen %q, want :5222", c.Listen)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, err := parseArgs(tc.args, tc.env, io.Discard)
			if err != nil {
				t.Fatalf("parseArgs(%q): %v", tc.args, err)
			}
			tc.check(t, s.Config)
		})
	}
}

// Bad flags and settings exit 2 with a message naming the problem.
func TestRunUsageErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		args    []string
		env     func(string) (string, bool)
		wantOut string
	}{
		{"unknown flag", []string{"--bogus"}, env(), "flag provided but not defined: -bogus"},
		{"bad gateways syntax", []string{"--gateways", "east"}, env(), `invalid value "east" for flag -gateways`},
		{"bad env value", nil, env("MSPRELAY_RELAY_GATEWAYS", "x"), `MSPRELAY_RELAY_GATEWAYS="x"`},
		{"positional argument", []string{"extra"}, env(), `unexpected argument "extra"`},
		{"bad log level", []string{"--log-level", "loud"}, env(), `--log-level "loud"`},
		{"bad listen address", []string{"--listen", "4222"}, env(), `listen address "4222"`},
		{"bad name", []string{"--name", "a.b"}, env(), `server name "a.b"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var out bytes.Buffer
			if code := run(tc.args, tc.env, &out, &out); code != 2 {
				t.Errorf("exit %d, want 2", code)
			}
			if !strings.Contains(out.String(), tc.wantOut) {
				t.Errorf("output %q does not contain %q", out.String(), tc.wantOut)
			}
		})
	}
	var out bytes.Buffer
	if code := run([]string{"--help"}, env(), &out, &out); code != 0 || !strings.Contains(out.String(), "MSPRELAY_RELAY_<FLAG>") {
		t.Errorf("--help: exit %d output %q, want 0 and the usage", code, out.String())
	}
}

// syncBuffer collects a process's output while it runs.
type syncBuffer struct {
	mu  sync.Mutex // guards buf
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// relayProc is one relay process; the test kills it on cleanup if it is
// still running.
type relayProc struct {
	cmd    *exec.Cmd
	out    *syncBuffer
	exited chan error // receives Wait's result once
}

func startRelay(t *testing.T, bin string, environ []string, args ...string) *relayProc {
	t.Helper()
	p := &relayProc{cmd: exec.Command(bin, args...), out: &syncBuffer{}, exited: make(chan error, 1)}
	p.cmd.Env = append(os.Environ(), environ...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.exited <- p.cmd.Wait() }()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			p.cmd.Process.Kill()
			select {
			case <-p.exited:
			case <-time.After(10 * time.Second):
				t.Errorf("relay pid %d still running 10s after SIGKILL", p.cmd.Process.Pid)
			}
		}
	})
	return p
}

// exitCode waits (bounded) for the process to end.
func (p *relayProc) exitCode(t *testing.T, limit time.Duration) int {
	t.Helper()
	select {
	case err := <-p.exited:
		p.exited <- err // let cleanup see it too
		if err == nil {
			return 0
		}
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode()
		}
		t.Fatalf("wait: %v", err)
	case <-time.After(limit):
		t.Fatalf("relay still running after %s; output:\n%s", limit, p.out.String())
	}
	return -1
}

// TestBinary builds the relay once and runs it as a real process.
func TestBinary(t *testing.T) {
	t.Parallel()
	bin := filepath.Join(t.TempDir(), "relay")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	readyLine := regexp.MustCompile(`msg="nats-server ready" .*client=(\S+) .*monitor=(\S+)`)

	for _, tc := range []struct {
		name string
		sig  syscall.Signal
	}{
		{"serves clients, SIGTERM exits 0", syscall.SIGTERM},
		{"serves clients, SIGINT exits 0", syscall.SIGINT},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := startRelay(t, bin, []string{"MSPRELAY_RELAY_NAME=relay-from-env"},
				"--listen", "127.0.0.1:0", "--monitor", "127.0.0.1:0", "--data", t.TempDir())
			var m []string
			testcluster.WaitFor(t, 15*time.Second, "the ready line", func() bool {
				m = readyLine.FindStringSubmatch(p.out.String())
				return m != nil
			})
			nc, err := nats.Connect(m[1], nats.Timeout(2*time.Second), nats.NoReconnect())
			if err != nil {
				t.Fatalf("connect %s: %v", m[1], err)
			}
			defer nc.Close()
			if got := nc.ConnectedServerName(); got != "relay-from-env" {
				t.Errorf("server name %q, want relay-from-env", got)
			}
			sub, err := nc.Subscribe("msp.node.x.deliver", func(msg *nats.Msg) { msg.Respond([]byte("ok " + string(msg.Data))) })
			if err != nil {
				t.Fatal(err)
			}
			defer sub.Unsubscribe()
			if reply, err := nc.Request("msp.node.x.deliver", []byte("ping"), 2*time.Second); err != nil || string(reply.Data) != "ok ping" {
				t.Fatalf("request: %v %v, want \"ok ping\"", reply, err)
			}
			resp, err := http.Get("http://" + m[2] + "/healthz")
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"status":"ok"`) {
				t.Errorf("/healthz: %d %s, want 200 ok", resp.StatusCode, body)
			}
			nc.Close()

			if err := p.cmd.Process.Signal(tc.sig); err != nil {
				t.Fatal(err)
			}
			if code := p.exitCode(t, 5*time.Second); code != 0 {
				t.Errorf("exit %d after %s, want 0; output:\n%s", code, tc.sig, p.out.String())
			}
			if !strings.Contains(p.out.String(), `msg="nats-server stopped"`) {
				t.Errorf("no \"relay stopped\" line in:\n%s", p.out.String())
			}
		})
	}

	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { busy.Close() })
	for _, tc := range []struct {
		name     string
		args     []string
		wantCode int
		wantOut  string
	}{
		{"port in use exits 1", []string{"--listen", busy.Addr().String()}, 1, "address already in use"},
		{"bad flag exits 2", []string{"--bogus"}, 2, "flag provided but not defined: -bogus"},
		{"bad setting exits 2", []string{"--routes", "nats-route://h:6222"}, 2, "Routes need a Cluster listen address"},
		{"--version exits 0", []string{"--version"}, 0, "msprelay relay dev (nats-server 2.15.2)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := startRelay(t, bin, nil, tc.args...)
			if code := p.exitCode(t, 10*time.Second); code != tc.wantCode {
				t.Errorf("exit %d, want %d", code, tc.wantCode)
			}
			if !strings.Contains(p.out.String(), tc.wantOut) {
				t.Errorf("output %q does not contain %q", p.out.String(), tc.wantOut)
			}
		})
	}
}
