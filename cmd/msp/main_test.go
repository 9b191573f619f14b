package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/msprelay/msprelay/internal/testcluster"
	"github.com/msprelay/msprelay/presence"
)

// syncBuffer is a bytes.Buffer safe for a command writing in one goroutine
// while the test reads in another.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type result struct {
	code           int
	stdout, stderr string
}

func runCLI(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	var out, errb syncBuffer
	e := env{stdin: strings.NewReader(stdin), stdout: &out, stderr: &errb, getenv: func(string) string { return "" }}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	code := run(ctx, args, e)
	return result{code, out.String(), errb.String()}
}

// The exit status is the contract scripts rely on: 0 on '+', 1 on '-' with
// the reason on stderr, 2 on usage or network errors.
func TestSendExitStatus(t *testing.T) {
	t.Parallel()
	c := testcluster.Start(t, 1, testcluster.Options{})
	c.SignIn(0, "alice", "pts/1", presence.Online)
	c.SignIn(0, "bob", "pts/2", presence.Busy)
	srv := c.MSPAddr(0)
	closed := func() string { // a port nothing listens on
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		return l.Addr().String()
	}()
	cases := []struct {
		name       string
		stdin      string
		args       []string
		code       int
		wantStdout string
		wantStderr string
	}{
		{"delivered: exit 0 and the explanation", "", []string{"send", "--server", srv, "alice", "hi"}, 0, "delivered to alice at pts/1 on n1", ""},
		{"message from stdin when absent", "from stdin\n", []string{"send", "--server", srv, "alice"}, 0, "delivered", ""},
		{"-q suppresses the explanation", "", []string{"send", "-q", "--server", srv, "alice", "hi"}, 0, "", ""},
		{"UDP delivered", "", []string{"send", "--udp", "--server", srv, "alice", "hi"}, 0, "delivered", ""},
		{"v1 over TCP owes no reply", "", []string{"send", "--v1", "--server", srv, "alice", "hi"}, 0, "", ""},
		{"Latin-1 text from UTF-8", "", []string{"send", "--server", srv, "alice", "grüße"}, 0, "delivered", ""},
		{"unknown user: exit 1, reason on stderr", "", []string{"send", "--server", srv, "carol", "hi"}, 1, "", "carol: unknown user"},
		{"busy: exit 1", "", []string{"send", "--server", srv, "bob", "hi"}, 1, "", "busy"},
		{"UDP, not delivered: no acknowledgement, exit 1", "", []string{"send", "--udp", "--timeout", "1500ms", "--server", srv, "carol", "hi"}, 1, "", "no acknowledgement"},
		{"no recipient: usage, exit 2", "", []string{"send", "--server", srv}, 2, "", "usage: msp send"},
		{"unknown flag: exit 2", "", []string{"send", "--bogus", "alice"}, 2, "", "flag provided but not defined"},
		{"text Latin-1 cannot hold: exit 2", "", []string{"send", "--server", srv, "alice", "price €5"}, 2, "", "ISO 8859-1"},
		{"control characters refused before sending: exit 2", "", []string{"send", "--server", srv, "alice", "bell\x07"}, 2, "", "illegal octet"},
		{"network error: exit 2", "", []string{"send", "--server", closed, "alice", "hi"}, 2, "", "connection refused"},
		{"unknown command: exit 2", "", []string{"frobnicate"}, 2, "", "unknown command"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := runCLI(t, tc.stdin, tc.args...)
			if r.code != tc.code {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", r.code, tc.code, r.stdout, r.stderr)
			}
			if tc.wantStdout == "" && tc.code == 0 && strings.Contains(tc.name, "suppresses") && r.stdout != "" {
				t.Errorf("stdout = %q, want nothing", r.stdout)
			}
			if !strings.Contains(r.stdout, tc.wantStdout) {
				t.Errorf("stdout = %q, want it to contain %q", r.stdout, tc.wantStdout)
			}
			if !strings.Contains(r.stderr, tc.wantStderr) {
				t.Errorf("stderr = %q, want it to contain %q", r.stderr, tc.wantStderr)
			}
		})
	}
}

// `msp listen --json` prints one object per line with the documented fields,
// and `msp who --json` lists the listener with its node, terminal and state.
func TestListenAndWhoJSON(t *testing.T) {
	t.Parallel()
	c := testcluster.Start(t, 1, testcluster.Options{})
	sess := c.Node(0).Addrs().Session
	var out, errb syncBuffer
	e := env{stdin: strings.NewReader(""), stdout: &out, stderr: &errb, getenv: func(string) string { return "" }}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"listen", "--session", sess, "--user", "alice", "--term", "pts/4", "--state", "AWY", "--json", "--watch", "bob"}, e)
	}()
	c.WaitPresent("alice", "pts/4", "n1", true)

	who := runCLI(t, "", "who", "--session", sess, "--user", "carol", "--json", "alice")
	var entries []map[string]any
	if err := json.Unmarshal([]byte(who.stdout), &entries); who.code != 0 || err != nil {
		t.Fatalf("who: exit %d, %v\n%s%s", who.code, err, who.stdout, who.stderr)
	}
	if len(entries) != 1 || entries[0]["user"] != "alice" || entries[0]["node"] != "n1" || entries[0]["term"] != "pts/4" || entries[0]["state"] != "away" {
		t.Fatalf("who --json = %v", entries)
	}

	bob := c.SignIn(0, "bob", "tty1", presence.Online)
	_ = bob
	send := runCLI(t, "", "send", "--server", c.MSPAddr(0), "--from", "bob", "--from-term", "tty1", "alice", "grüße\nline two")
	if send.code != 0 {
		t.Fatalf("send: exit %d %s", send.code, send.stderr)
	}
	var msg map[string]any
	testcluster.WaitFor(t, 5*time.Second, "a message line on listen's stdout", func() bool {
		for _, line := range strings.Split(out.String(), "\n") {
			var m map[string]any
			if json.Unmarshal([]byte(line), &m) == nil && m["type"] == "message" {
				msg = m
				return true
			}
		}
		return false
	})
	want := map[string]any{"type": "message", "sender": "bob", "sender_term": "tty1", "recipient": "alice", "recip_term": "", "text": "grüße\nline two", "origin_node": "n1", "transport": "tcp", "verified": false}
	for k, v := range want {
		if msg[k] != v {
			t.Errorf("message field %s = %#v, want %#v", k, msg[k], v)
		}
	}
	if !strings.Contains(out.String(), `"type":"presence","event":"online","user":"bob"`) {
		t.Errorf("no presence line for watched bob in:\n%s", out.String())
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("listen exit %d after interrupt: %s", code, errb.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("listen did not stop after interrupt")
	}
	c.WaitPresent("alice", "pts/4", "n1", false)
}

func TestListenUsage(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"listen", "--state", "sleepy"},
		{"listen", "extra"},
		{"who", "a", "b"},
		{"listen", "--session", "127.0.0.1:1", "--timeout", "1s"},
	} {
		if r := runCLI(t, "", args...); r.code != 2 || r.stderr == "" {
			t.Errorf("%v: exit %d stderr %q, want 2 with a message", args, r.code, r.stderr)
		}
	}
}

// "msp who alice for an absent known user says when and where she was last
// seen (like finger)", and an unknown name shows nothing.
func TestWhoLastSeen(t *testing.T) {
	t.Parallel()
	c := testcluster.Start(t, 1, testcluster.Options{})
	alice := c.SignIn(0, "alice", "pts/5", presence.Online)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := alice.SignOut(ctx); err != nil {
		t.Fatal(err)
	}
	sess := c.Node(0).Addrs().Session
	var r result
	testcluster.WaitFor(t, 10*time.Second, "alice's sign-out recorded", func() bool {
		r = runCLI(t, "", "who", "--session", sess, "--user", "bob", "alice")
		return strings.Contains(r.stdout, "last seen")
	})
	if r.code != 0 || !strings.HasPrefix(r.stdout, "alice is not signed in; last seen on n1 at pts/5, ") {
		t.Fatalf("who alice: exit %d %q %q", r.code, r.stdout, r.stderr)
	}
	r = runCLI(t, "", "who", "--session", sess, "--user", "bob", "--json", "alice")
	var entries []map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &entries); err != nil || len(entries) != 1 {
		t.Fatalf("who --json alice: %v %q", err, r.stdout)
	}
	e := entries[0]
	if e["state"] != "offline" || e["node"] != "n1" || e["term"] != "pts/5" || e["last_seen"] == nil || e["since"] != nil {
		t.Fatalf("who --json alice = %v", e)
	}
	r = runCLI(t, "", "who", "--session", sess, "--user", "bob", "--json", "nobody")
	if r.code != 0 || strings.TrimSpace(r.stdout) != "[]" {
		t.Fatalf("who --json nobody: exit %d %q", r.code, r.stdout)
	}
}
