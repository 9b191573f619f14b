package main

import (
	"context"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/msprelay/msprelay/internal/syncbuf"

	"github.com/msprelay/msprelay/internal/testcluster"
	"github.com/msprelay/msprelay/internal/waitfor"
	"github.com/msprelay/msprelay/msp"
	"github.com/msprelay/msprelay/node"
	"github.com/msprelay/msprelay/principal"
	"github.com/msprelay/msprelay/sessionclient"
	"github.com/msprelay/msprelay/sessionproto"
)

// runCLIEnv is runCLI with an environment.
func runCLIEnv(t *testing.T, vars map[string]string, stdin string, args ...string) result {
	t.Helper()
	var out, errb syncbuf.Buffer
	e := env{stdin: strings.NewReader(stdin), stdout: &out, stderr: &errb, getenv: func(k string) string { return vars[k] }}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	code := run(ctx, args, e)
	return result{code, out.String(), errb.String()}
}

// startWithSocket starts a one-node cluster whose node also serves the
// session protocol on a Unix socket, and returns the socket's address.
func startWithSocket(t *testing.T) (*testcluster.Cluster, string) {
	sock := filepath.Join(t.TempDir(), "s.sock")
	c := testcluster.Start(t, 1, testcluster.Options{Configure: func(_ int, cfg *node.Config) { cfg.SessionSocket = sock }})
	return c, "unix:" + sock
}

// recv waits for the next message pushed to cl.
func recv(t *testing.T, cl *sessionclient.Client) *sessionproto.Message {
	t.Helper()
	m := waitfor.Recv(t, cl.Messages(), 10*time.Second, "a message")
	if m == nil {
		t.Fatalf("session ended: %v", cl.Err())
	}
	return m
}

// closedAddr is a TCP address nothing listens on.
func closedAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// Issue 20 item 3, "`msp send` like write(1)", and issue 18 item 2: "`msp
// send` uses the local session socket when a node is local (peer
// credentials, verified), plain MSP otherwise or with `--server`."
func TestSendLikeWrite(t *testing.T) {
	t.Parallel()
	c, sock := startWithSocket(t)
	alice := c.SignIn(0, "alice", "pts/1", principal.Online)
	me, _ := toLatin1("user", loginName(env{getenv: func(string) string { return "" }}))
	long := strings.Repeat("word ", 130) // 650 octets
	// What fits through the session socket: 511 less the other parts the
	// node will send (sender = the caller, a 16-octet cookie).
	max := usable(&msp.Message{Version: msp.Version2, Recipient: "alice", Sender: me, Cookie: strings.Repeat("0", sessionCookieLen)})

	t.Run("through the session socket the sender is verified", func(t *testing.T) {
		r := runCLI(t, "", "send", "--session", sock, "alice", "hello from the socket")
		if r.code != 0 || !strings.Contains(r.stdout, "delivered to alice") {
			t.Fatalf("exit %d\nstdout %s\nstderr %s", r.code, r.stdout, r.stderr)
		}
		m := recv(t, alice)
		if m.Text != "hello from the socket" || !m.Verified || m.Transport != "session" || m.Sender != principal.CanonicalUser(me) {
			t.Fatalf("message %+v: want verified, transport session, sender %s", m, me)
		}
	})
	t.Run("--server means plain MSP, port 18 when absent", func(t *testing.T) {
		r := runCLI(t, "", "send", "--session", sock, "--server", c.MSPAddr(0), "alice", "over MSP")
		if r.code != 0 {
			t.Fatalf("exit %d: %s", r.code, r.stderr)
		}
		if m := recv(t, alice); m.Transport != "tcp" || m.Text != "over MSP" {
			t.Fatalf("message %+v: want plain MSP over tcp", m)
		}
		for in, want := range map[string]string{"localhost": "localhost:18", "localhost:1818": "localhost:1818", "::1": "[::1]:18", "[::1]": "[::1]:18", "[::1]:99": "[::1]:99", "192.0.2.1": "192.0.2.1:18"} {
			if got := withDefaultPort(in); got != want {
				t.Errorf("withDefaultPort(%q) = %q, want %q", in, got, want)
			}
		}
	})
	t.Run("$MSPRELAY_SERVER when no session socket answers", func(t *testing.T) {
		r := runCLIEnv(t, map[string]string{"MSPRELAY_SERVER": c.MSPAddr(0)}, "", "send", "--session", "unix:"+filepath.Join(t.TempDir(), "none.sock"), "alice", "via env")
		if r.code != 0 {
			t.Fatalf("exit %d: %s", r.code, r.stderr)
		}
		if m := recv(t, alice); m.Text != "via env" || m.Transport != "tcp" {
			t.Fatalf("message %+v", m)
		}
	})
	t.Run("a #room recipient goes to the MSP bridge, not the session", func(t *testing.T) {
		r := runCLIEnv(t, map[string]string{"MSPRELAY_SERVER": c.MSPAddr(0)}, "", "send", "--session", sock, "#nope", "to the room")
		if r.code != 1 || !strings.Contains(r.stderr, "#nope: no such conversation") {
			t.Fatalf("exit %d, stderr %q; want 1 and the bridge's answer", r.code, r.stderr)
		}
	})
	t.Run("nothing answers: says where it looked", func(t *testing.T) {
		// The last place msp looks is localhost:18; a node may run there
		// on a developer's machine.
		if c, err := net.DialTimeout("tcp", defaultMSPServer, time.Second); err == nil {
			c.Close()
			t.Skipf("something answers on %s here, so the case cannot be made", defaultMSPServer)
		}
		none := filepath.Join(t.TempDir(), "none.sock")
		closed := closedAddr(t)
		r := runCLIEnv(t, map[string]string{"MSPRELAY_SERVER": closed}, "", "send", "--session", "unix:"+none, "alice", "hi")
		if r.code != 2 {
			t.Fatalf("exit %d, want 2: %s", r.code, r.stderr)
		}
		for _, want := range []string{"no node answers", none + " (session socket)", closed + " ($MSPRELAY_SERVER)", "--server"} {
			if !strings.Contains(r.stderr, want) {
				t.Errorf("stderr %q does not say %q", r.stderr, want)
			}
		}
		if strings.Count(r.stderr, "\n") != 1 || strings.Contains(r.stderr, "^J") {
			t.Errorf("want one line, got %q", r.stderr)
		}
	})
	t.Run("an empty message is refused, exit 2", func(t *testing.T) {
		for _, in := range []struct{ stdin, arg string }{{"\n\n", ""}, {"", "   "}, {"", ""}} {
			args := []string{"send", "--session", sock, "alice"}
			if in.arg != "" {
				args = append(args, in.arg)
			}
			r := runCLI(t, in.stdin, args...)
			if r.code != 2 || !strings.Contains(r.stderr, "empty message") {
				t.Errorf("stdin %q arg %q: exit %d, stderr %q; want 2 and 'empty message'", in.stdin, in.arg, r.code, r.stderr)
			}
		}
	})
	t.Run("over the limit: says the usable maximum", func(t *testing.T) {
		r := runCLI(t, "", "send", "--session", sock, "alice", long)
		if r.code != 2 || !strings.Contains(r.stderr, "at most "+strconv.Itoa(max)+" fit") || !strings.Contains(r.stderr, "--split") {
			t.Fatalf("exit %d, stderr %q; want 2, 'at most %d fit' and --split", r.code, r.stderr, max)
		}
	})
	t.Run("exactly the usable maximum is sent whole", func(t *testing.T) {
		r := runCLI(t, "", "send", "--session", sock, "alice", strings.Repeat("x", max))
		if r.code != 0 {
			t.Fatalf("exit %d: %s", r.code, r.stderr)
		}
		if m := recv(t, alice); len(m.Text) != max {
			t.Fatalf("received %d octets, want %d", len(m.Text), max)
		}
	})
	t.Run("--split sends numbered parts that fit", func(t *testing.T) {
		r := runCLI(t, "", "send", "--split", "--session", sock, "alice", long)
		if r.code != 0 {
			t.Fatalf("exit %d: %s", r.code, r.stderr)
		}
		var got []string
		for len(got) < 2 {
			got = append(got, recv(t, alice).Text)
		}
		if !strings.HasPrefix(got[0], "(1/2) ") || !strings.HasPrefix(got[1], "(2/2) ") {
			t.Fatalf("parts %q", got)
		}
		joined := strings.TrimPrefix(got[0], "(1/2) ") + " " + strings.TrimPrefix(got[1], "(2/2) ")
		if strings.Join(strings.Fields(joined), " ") != strings.TrimSpace(long) {
			t.Errorf("parts do not make up the text: %q", joined)
		}
	})
	t.Run("--translit writes the nearest Latin-1 instead of refusing", func(t *testing.T) {
		in := "price €5 – “ok” … Łódź, Erdős, ﬁne"
		if r := runCLI(t, "", "send", "--session", sock, "alice", in); r.code != 2 || !strings.Contains(r.stderr, "--translit") {
			t.Fatalf("without --translit: exit %d, stderr %q; want 2 naming --translit", r.code, r.stderr)
		}
		r := runCLI(t, "", "send", "--translit", "--session", sock, "alice", in)
		if r.code != 0 {
			t.Fatalf("exit %d: %s", r.code, r.stderr)
		}
		want := "price EUR5 - \"ok\" ... Lódz, Erdos, fine"
		if m := recv(t, alice); msp.Latin1ToUTF8(m.Text) != want {
			t.Fatalf("received %q, want %q", msp.Latin1ToUTF8(m.Text), want)
		}
	})
}

// The transliteration rules, one by one.
func TestTransliterate(t *testing.T) {
	t.Parallel()
	cases := []struct{ in, want string }{
		{"plain ascii", "plain ascii"},
		{"Latin-1 stays: grüße, Ærø, ½", "Latin-1 stays: grüße, Ærø, ½"},
		{"e\u0301 composes to é", "é composes to é"},
		{"‘single’ “double” „low“", `'single' "double" "low"`},
		{"en–dash em—dash minus−", "en-dash em--dash minus-"},
		{"wait…", "wait..."},
		{"5 €", "5 EUR"},
		{"ǘ keeps what Latin-1 can: ü", "ü keeps what Latin-1 can: ü"},
		{"ő ű č ş", "o u c s"},
		{"ﬁ ligature", "fi ligature"},
		{"zero\u200bwidth", "zerowidth"},
		{"ł œ 中", "l oe ?"},
	}
	for _, tc := range cases {
		got, _ := transliterate(tc.in)
		if got != tc.want {
			t.Errorf("transliterate(%q) = %q, want %q", tc.in, got, tc.want)
		}
		if _, err := msp.UTF8ToLatin1(got); err != nil {
			t.Errorf("transliterate(%q) = %q: not Latin-1: %v", tc.in, got, err)
		}
	}
}

// Issue 20: "a literal `^J` in the no-node error": with no node, the
// session commands say in one line where they looked and what to do.
func TestNoNodeIsOneLine(t *testing.T) {
	t.Parallel()
	none := filepath.Join(t.TempDir(), "none.sock")
	for _, cmd := range []string{"listen", "who", "chat", "blocks"} {
		r := runCLI(t, "", cmd, "--session", "unix:"+none)
		if r.code != 2 {
			t.Errorf("%s: exit %d, want 2 (%s)", cmd, r.code, r.stderr)
		}
		want := "no node answers; looked at unix:" + none + " (no such socket). Start msprelay-node, or give --session ADDR\n"
		if !strings.HasSuffix(r.stderr, want) || strings.Count(r.stderr, "\n") != 1 || strings.Contains(r.stderr, "^J") {
			t.Errorf("%s: stderr %q, want one line ending %q", cmd, r.stderr, want)
		}
	}
}
