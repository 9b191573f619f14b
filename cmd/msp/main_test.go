package main

import (
	"context"
	"encoding/json"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/msprelay/msprelay/internal/syncbuf"

	"github.com/msprelay/msprelay/internal/testcluster"
	"github.com/msprelay/msprelay/msp"
	"github.com/msprelay/msprelay/principal"
)

type result struct {
	code           int
	stdout, stderr string
}

func runCLI(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	var out, errb syncbuf.Buffer
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
	c.SignIn(0, "alice", "pts/1", principal.Online)
	c.SignIn(0, "bob", "pts/2", principal.Busy)
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
		{"network error: exit 2, saying where it looked", "", []string{"send", "--server", closed, "alice", "hi"}, 2, "", "no MSP server answers at " + closed + " (--server)"},
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
	out, _, stop := startListen(t, "--session", sess, "--user", "alice", "--term", "pts/4", "--state", "AWY", "--json", "--watch", "bob")
	c.WaitPresent("alice", "pts/4", "n1", true)

	who := runCLI(t, "", "who", "--session", sess, "--user", "carol", "--json", "alice")
	var entries []map[string]any
	if err := json.Unmarshal([]byte(who.stdout), &entries); who.code != 0 || err != nil {
		t.Fatalf("who: exit %d, %v\n%s%s", who.code, err, who.stdout, who.stderr)
	}
	if len(entries) != 1 || entries[0]["user"] != "alice" || entries[0]["node"] != "n1" || entries[0]["term"] != "pts/4" || entries[0]["state"] != "away" {
		t.Fatalf("who --json = %v", entries)
	}

	bob := c.SignIn(0, "bob", "tty1", principal.Online)
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
	// bob signed in after alice's sign-in but perhaps before her watch
	// list reached the node: then he comes as an "initial" line.
	if o := out.String(); !strings.Contains(o, `"type":"presence","event":"online","user":"bob"`) &&
		!strings.Contains(o, `"type":"presence","event":"initial","user":"bob","node":"n1","term":"tty1","state":"online"`) {
		t.Errorf("no presence line for watched bob in:\n%s", o)
	}
	stop()
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
// seen (like finger)", and an unknown name shows an empty list and exits 1
// (an unknown user, as `msp send` says).
func TestWhoLastSeen(t *testing.T) {
	t.Parallel()
	c := testcluster.Start(t, 1, testcluster.Options{})
	alice := c.SignIn(0, "alice", "pts/5", principal.Online)
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
	if r.code != 1 || strings.TrimSpace(r.stdout) != "[]" {
		t.Fatalf("who --json nobody: exit %d %q", r.code, r.stdout)
	}
}

// startListen runs `msp listen` in-process; stop interrupts it and checks
// that it signed out and exited 0 (the test's cleanup calls stop too).
func startListen(t *testing.T, args ...string) (out, errb *syncbuf.Buffer, stop func()) {
	t.Helper()
	out, errb = &syncbuf.Buffer{}, &syncbuf.Buffer{}
	e := env{stdin: strings.NewReader(""), stdout: out, stderr: errb, getenv: func(string) string { return "" }}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() { done <- run(ctx, append([]string{"listen"}, args...), e) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case code := <-done:
				if code != 0 {
					t.Errorf("listen exit %d after interrupt: %s", code, errb.String())
				}
			case <-time.After(10 * time.Second):
				t.Error("listen did not stop after interrupt")
			}
		})
	}
	t.Cleanup(stop)
	return out, errb, stop
}

// Issue 14 item 9: "Every name a CLI takes (user, term, alias, watch list)
// must be converted like `msp send` converts text, and every MSP reply must be
// ISO 8859-1." A listener at tærminal_1 (UTF-8 on the command line) receives
// a message addressed to RECIP-TERM t\xe6rminal_1 (ISO 8859-1), and the '+'
// names the terminal in ISO 8859-1.
func TestNamesTravelAsLatin1(t *testing.T) {
	t.Parallel()
	c := testcluster.Start(t, 1, testcluster.Options{})
	sess := c.Node(0).Addrs().Session
	out, _, _ := startListen(t, "--session", sess, "--user", "jürgen", "--term", "tærminal_1", "--json")
	c.WaitPresent("j\xfcrgen", "t\xe6rminal_1", "n1", true)

	r, err := c.Send(0, "tcp", &msp.Message{Version: msp.Version2, Recipient: "j\xfcrgen", RecipTerm: "t\xe6rminal_1",
		Text: "raw", Sender: "bob", Cookie: msp.NewCookie()})
	if err != nil || !r.OK {
		t.Fatalf("raw MSP to t\\xe6rminal_1: %+v %v", r, err)
	}
	if !strings.Contains(r.Text, "t\xe6rminal_1") || !strings.Contains(r.Text, "j\xfcrgen") {
		t.Errorf("'+' reply %q does not name j\\xfcrgen at t\\xe6rminal_1 in ISO 8859-1", r.Text)
	}
	// The CLI converts every name it sends, and the reply it prints back.
	send := runCLI(t, "", "send", "--server", c.MSPAddr(0), "--from", "bob", "--from-term", "tty1", "--term", "tærminal_1", "jürgen", "cli")
	if send.code != 0 || !strings.Contains(send.stdout, "jürgen at tærminal_1") {
		t.Fatalf("send --term tærminal_1 jürgen: exit %d %q %q", send.code, send.stdout, send.stderr)
	}
	testcluster.WaitFor(t, 5*time.Second, "both messages on listen's stdout", func() bool {
		s := out.String()
		return strings.Contains(s, `"text":"raw"`) && strings.Contains(s, `"text":"cli"`)
	})
	if s := out.String(); !strings.Contains(s, `"recipient":"jürgen","recip_term":"tærminal_1"`) {
		t.Errorf("listen shows the recipient's names in UTF-8? got\n%s", s)
	}

	who := runCLI(t, "", "who", "--session", sess, "--user", "bob", "jürgen")
	if who.code != 0 || !strings.Contains(who.stdout, "jürgen") || !strings.Contains(who.stdout, "tærminal_1") {
		t.Errorf("who jürgen: exit %d %q %q", who.code, who.stdout, who.stderr)
	}
	watch, _, _ := startListen(t, "--session", sess, "--user", "bob", "--term", "w1", "--watch", "jürgen")
	testcluster.WaitFor(t, 5*time.Second, "watched jürgen's initial terminal", func() bool {
		return strings.Contains(watch.String(), "* jürgen at tærminal_1 on n1 is online")
	})
}

// Issue 14 item 9: a name ISO 8859-1 cannot hold is "refused clearly, exit
// 2", naming the argument, before anything is sent.
func TestNamesNotLatin1Refused(t *testing.T) {
	t.Parallel()
	cases := [][]string{
		{"listen", "--session", "127.0.0.1:1", "--user", "日本"},
		{"listen", "--session", "127.0.0.1:1", "--term", "日本"},
		{"listen", "--session", "127.0.0.1:1", "--watch", "bob,日本"},
		{"who", "--session", "127.0.0.1:1", "日本"},
		{"who", "--session", "127.0.0.1:1", "--user", "日本"},
		{"send", "--server", "127.0.0.1:1", "日本", "hi"},
		{"send", "--server", "127.0.0.1:1", "--term", "日本", "bob", "hi"},
		{"send", "--server", "127.0.0.1:1", "--from", "日本", "bob", "hi"},
		{"send", "--server", "127.0.0.1:1", "bob", "日本"},
	}
	for _, args := range cases {
		r := runCLI(t, "", args...)
		if r.code != 2 || !strings.Contains(r.stderr, `"日本": '日' is not representable in ISO 8859-1`) {
			t.Errorf("%q: exit %d stderr %q, want 2 and the refused character named", args, r.code, r.stderr)
		}
		if strings.Count(r.stderr, "msp: ") != 1 {
			t.Errorf("%q: stderr %q: want exactly one \"msp: \" prefix", args, r.stderr)
		}
	}
}

// Issue 14 item 10: "`msp listen --json --watch U` prints every `initial`
// presence event twice." Each initial terminal is printed exactly once.
func TestWatchInitialOnce(t *testing.T) {
	t.Parallel()
	c := testcluster.Start(t, 1, testcluster.Options{})
	c.SignIn(0, "bob", "tty1", principal.Online)
	c.SignIn(0, "bob", "tty2", principal.Busy)
	c.WaitPresent("bob", "tty2", "n1", true)
	sess := c.Node(0).Addrs().Session
	for i, mode := range []string{"--json", "--json=false"} {
		user := []string{"alice", "dave"}[i]
		out, _, _ := startListen(t, "--session", sess, "--user", user, "--term", "w1", mode, "--watch", "bob")
		c.WaitPresent(user, "w1", "n1", true)
		want := func(term string) string {
			if mode == "--json" {
				return `"event":"initial","user":"bob","node":"n1","term":"` + term + `"`
			}
			return "* bob at " + term + " on n1 is"
		}
		// Signing in comes before the watch list reaches the node, so
		// wait for the initial lines first; a message sent after them is
		// printed after any late duplicate would have been.
		testcluster.WaitFor(t, 5*time.Second, "the initial lines", func() bool {
			return strings.Contains(out.String(), want("tty1")) && strings.Contains(out.String(), want("tty2"))
		})
		send := runCLI(t, "", "send", "--server", c.MSPAddr(0), "--from", "carol", user, "marker")
		if send.code != 0 {
			t.Fatalf("send: %d %s", send.code, send.stderr)
		}
		testcluster.WaitFor(t, 5*time.Second, "the marker message", func() bool { return strings.Contains(out.String(), "marker") })
		s := out.String()
		for _, term := range []string{"tty1", "tty2"} {
			if n := strings.Count(s, want(term)); n != 1 {
				t.Errorf("%s: %q printed %d times, want once:\n%s", mode, want(term), n, s)
			}
		}
	}
}

// Issue 14 item 11: `msp who` and `msp send` agree: a name never seen is an
// "unknown user" (exit 1, like send's '-'), and an empty listing says that
// nobody is signed in.
func TestWhoAgreesWithSend(t *testing.T) {
	t.Parallel()
	c := testcluster.Start(t, 1, testcluster.Options{})
	sess := c.Node(0).Addrs().Session
	r := runCLI(t, "", "who", "--session", sess, "--user", "bob")
	if r.code != 0 || r.stdout != "nobody is signed in\n" {
		t.Errorf("who with nobody signed in: exit %d %q %q", r.code, r.stdout, r.stderr)
	}
	send := runCLI(t, "", "send", "--server", c.MSPAddr(0), "nobody", "hi")
	who := runCLI(t, "", "who", "--session", sess, "--user", "bob", "nobody")
	if send.code != 1 || !strings.Contains(send.stderr, "nobody: unknown user") {
		t.Errorf("send nobody: exit %d %q", send.code, send.stderr)
	}
	if who.code != send.code || who.stderr != send.stderr || who.stdout != "" {
		t.Errorf("who nobody: exit %d stdout %q stderr %q; want what send says: exit %d %q", who.code, who.stdout, who.stderr, send.code, send.stderr)
	}
}

// Issue 14 item 12: no doubled error prefixes: one "msp: " and one "dial".
func TestErrorsPrefixedOnce(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	l.Close()
	for _, args := range [][]string{
		{"send", "--server", closed, "bob", "hi"},
		{"listen", "--session", closed, "--timeout", "2s"},
		{"who", "--session", closed, "--timeout", "2s"},
		{"send", "--server", closed, "bob", "日本"},
	} {
		r := runCLI(t, "", args...)
		if r.code != 2 || strings.Count(r.stderr, "msp: ") != 1 || strings.Count(r.stderr, "dial ") > 1 {
			t.Errorf("%q: exit %d stderr %q, want exit 2 with one msp: prefix and at most one dial", args, r.code, r.stderr)
		}
	}
}
