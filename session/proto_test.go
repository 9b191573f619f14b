package session

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/msprelay/msprelay/sessionproto"
	"github.com/msprelay/msprelay/switchboard"
)

// payload reads a frame line "<prefix> <len>" and then len octets.
func (r *raw) payload(prefix string) string {
	r.t.Helper()
	l := r.line()
	rest, ok := strings.CutPrefix(l, prefix+" ")
	if !ok {
		r.t.Fatalf("got line %q, want %q <len>", l, prefix)
	}
	n, err := strconv.Atoi(rest)
	if err != nil {
		r.t.Fatalf("bad length in %q", l)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r.br, b); err != nil {
		r.t.Fatal(err)
	}
	return string(b)
}

// TestTranscript speaks the protocol by hand and checks every byte the
// server sends; docs/SESSION.md shows the same exchange.
func TestTranscript(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Trust{}, nil)
	r := e.raw(t)
	r.send("VER 1 MSPS1\r\n")
	r.expect("VER 1 MSPS1")
	r.send("USR 2 Alice pts/1\r\n")
	r.expect("USR 2 OK alice pts/1 NLN n1 trust")
	r.send("ADD 3 FL alice\r\n")
	r.expect("ILN 3 NLN alice n1 pts/1")
	r.expect("ADD 3 FL alice")
	r.send("PNG\r\n")
	r.expect("QNG 90")
	r.send("CHG 4 away\r\n")
	// The push comes from the watch dispatcher, so it may overtake the reply.
	if got := []string{r.line(), r.line()}; !slices.Contains(got, "CHG 4 AWY") || !slices.Contains(got, "NLN AWY alice n1 pts/1") {
		t.Fatalf("after CHG got %q, want the CHG reply and the NLN push", got)
	}
	r.send("SND 5 alice - 11\r\nhello\nworld")
	p := r.payload("MSG")
	m, err := sessionproto.ParseMessage([]byte(p))
	if err != nil {
		t.Fatal(err)
	}
	want := "Id: " + m.ID + "\r\nSender: alice\r\nSender-Term: pts/1\r\nRecipient: alice\r\nRecip-Term: \r\n" +
		"Origin-Node: n1\r\nOrigin-Addr: session\r\nTransport: session\r\nVerified: no\r\nSender-Method: trust\r\n" +
		"Time: " + m.Time.UTC().Format(time.RFC3339Nano) + "\r\nCookie: " + m.Cookie + "\r\nSignature: \r\n\r\nhello\r\nworld"
	if p != want {
		t.Fatalf("MSG payload\n got %q\nwant %q", p, want)
	}
	r.expect("ACK 5 delivered to alice at pts/1 on n1")
	r.send("LST 6 FL\r\n")
	if p := r.payload("LST 6 FL"); p != "alice\r\n" {
		t.Fatalf("LST payload %q", p)
	}
	r.send("NAM 7 ADD helpdesk\r\n")
	r.expect("NAM 7 ADD helpdesk")
	r.send("WHO 8 helpdesk\r\n")
	p = r.payload("WHO 8 1")
	if f := strings.Fields(p); len(f) != 7 || strings.Join(f[:4], " ") != "alice n1 pts/1 AWY" || f[6] != "helpdesk" {
		t.Fatalf("WHO payload %q", p)
	}
	r.send("WHO 9 nobody\r\n")
	if p := r.payload("WHO 9 0"); p != "" {
		t.Fatalf("WHO for an absent user: %q", p)
	}
	r.send("OUT\r\n")
	r.expect("OUT")
	r.closed()
}

// TestGarbageBeforeSignIn: before sign-in every error is answered with a
// numeric line and the connection is closed.
func TestGarbageBeforeSignIn(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Trust{}, nil)
	tests := []struct {
		name, send, want string
	}{
		{"not a command", "hello\r\n", `200 0 "hello" is not a command`},
		{"HTTP request", "GET / HTTP/1.1\r\n", `200 0 bad transaction id "/"`},
		{"empty line", "\r\n", `200 0 "" is not a command`},
		{"LF without CR", "USR 1 alice pts/1\n", "200 0 line must end with CR LF"},
		{"overlong line", strings.Repeat("A", 2000) + "\r\n", "203 0 line longer than 1024 octets"},
		{"control octet", "USR 1 al\x01ice t\r\n", "200 0 octet 0x01 at offset 8 is not allowed in a line"},
		{"C1 octet", "USR 1 al\x85ice t\r\n", "200 0 octet 0x85 at offset 8 is not allowed in a line"},
		{"double space", "USR 1 alice  t\r\n", "200 0 empty argument (double or trailing space)"},
		{"unknown command", "XYZ 5\r\n", "202 5 unknown command XYZ"},
		{"command before sign-in", "CHG 3 busy\r\n", "913 3 sign in first (USR)"},
		{"QRY without challenge", "QRY 4 abc\r\n", "715 4 QRY without a challenge"},
		{"payload too large", "SND 4 bob - 99999\r\n", "203 0 payload of 99999 octets, limit 4096"},
		{"bad payload length", "SND 4 bob - x\r\n", `200 0 bad payload length "x"`},
		{"unsupported version", "VER 1 MSNP8\r\n", "720 1 this server speaks MSPS1 only"},
		{"USR missing term", "USR 1 alice\r\n", "200 1 USR takes 2 to 3 arguments, got 1"},
		{"bad escape", "USR 1 bad%zz pts/1\r\n", "201 1 argument 1: bad %-escape at offset 3"},
		{"bad user", "USR 1 a*b pts/1\r\n", `205 1 principal: invalid user name "a*b"`},
		{"bad terminal", "USR 1 alice a%20b\r\n", `206 1 principal: invalid terminal name "a b"`},
		{"closed inside a line", "USR 1 al", "200 0 connection closed inside a line"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := e.raw(t)
			r.send(tc.send)
			if !strings.HasSuffix(tc.send, "\n") {
				r.c.(*net.TCPConn).CloseWrite()
			}
			r.expectPrefix(tc.want)
			r.closed()
		})
	}
}

// TestErrorsAfterSignIn: after sign-in a bad command gets an error and the
// session goes on, unless the framing is broken.
func TestErrorsAfterSignIn(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Trust{}, nil)
	tests := []struct {
		name, send, want string
		fatal            bool
	}{
		{"unknown command", "XYZ 5\r\n", "202 5 unknown command XYZ", false},
		{"bad TrID", "CHG x busy\r\n", `200 0 bad transaction id "x"`, false},
		{"bad state", "CHG 6 sleepy\r\n", `201 6 principal: unknown state "sleepy"`, false},
		{"second USR", "USR 7 bob t\r\n", "207 7 already signed in as alice", false},
		{"SND arguments with payload skipped", "SND 8 alice 5\r\nhello", "200 8 SND takes 2 arguments, got 1", false},
		{"unknown list", "ADD 9 AL bob\r\n", `201 9 unknown list "AL" (want FL or BL)`, false},
		{"garbage", "hello\r\n", `200 0 "hello" is not a command`, true},
		{"overlong", strings.Repeat("x", 1100), "203 0 line longer than 1024 octets", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := e.raw(t)
			term := strings.ReplaceAll(tc.name, " ", "_")
			r.send("USR 1 alice " + term + "\r\n")
			r.expect("USR 1 OK alice " + term + " NLN n1 trust")
			r.send(tc.send)
			r.expectPrefix(tc.want)
			if tc.fatal {
				r.closed()
				return
			}
			r.send("PNG\r\n")
			r.expect("QNG 90")
		})
	}
}

// TestTokenEscapes: "-" stands for the empty string and %XX escapes a
// literal "-", '%', ',' and spaces.
func TestTokenEscapes(t *testing.T) {
	tests := []struct{ in, token string }{
		{"", "-"},
		{"-", "%2D"},
		{"a-b", "a-b"},
		{"50%", "50%25"},
		{"a,b", "a%2Cb"},
		{"a b", "a%20b"},
		{"caf\xe9", "caf\xe9"},
		{"\xa0", "%A0"},
	}
	for _, tc := range tests {
		if got := sessionproto.EncodeToken(tc.in); got != tc.token {
			t.Errorf("sessionproto.EncodeToken(%q) = %q, want %q", tc.in, got, tc.token)
		}
		if got, err := sessionproto.DecodeToken(tc.token); err != nil || got != tc.in {
			t.Errorf("sessionproto.DecodeToken(%q) = %q %v, want %q", tc.token, got, err, tc.in)
		}
	}
	for _, bad := range []string{"%", "%4", "%zz", "a%g0"} {
		if _, err := sessionproto.DecodeToken(bad); err == nil {
			t.Errorf("sessionproto.DecodeToken(%q) succeeded", bad)
		}
	}
}

// pipeListener hands out in-memory net.Pipe connections. A pipe has no
// buffer at all, so a client that stops reading stalls the server's writer
// on the next write: the slow-client rules can be tested without filling
// kernel socket buffers.
type pipeListener struct {
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func newPipeListener() *pipeListener {
	return &pipeListener{conns: make(chan net.Conn), done: make(chan struct{})}
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *pipeListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *pipeListener) Addr() net.Addr { return pipeAddr{} }

type pipeAddr struct{}

func (pipeAddr) Network() string { return "pipe" }
func (pipeAddr) String() string  { return "pipe" }

// serveOn serves an extra listener on e's server until the test ends.
func (e *env) serveOn(l net.Listener, auth Authenticator) {
	done := make(chan error, 1)
	go func() { done <- e.srv.Serve(l, auth) }()
	e.t.Cleanup(func() {
		e.srv.Close()
		<-done
	})
}

// dialPipe connects through l and wraps the client end as a raw conn.
func (e *env) dialPipe(t *testing.T, l *pipeListener) *raw {
	a, b := net.Pipe()
	select {
	case l.conns <- a:
	case <-time.After(5 * time.Second):
		t.Fatal("pipe listener not accepting")
	}
	t.Cleanup(func() { b.Close() })
	b.SetDeadline(time.Now().Add(10 * time.Second))
	return &raw{t: t, c: b, br: bufio.NewReader(b)}
}

// TestSlowClient: a client that stops reading gets no more messages (the
// sender is told "terminal not reading"), and when even a presence push
// cannot be queued the session is closed and its presence ends.
func TestSlowClient(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Trust{}, func(c *Config) { c.OutQueue = 4 })
	pl := newPipeListener()
	e.serveOn(pl, Trust{})
	r := e.dialPipe(t, pl)
	r.send("USR 1 alice pts/1\r\nADD 2 FL carol\r\n")
	r.expect("USR 1 OK alice pts/1 NLN n1 trust")
	r.expect("ADD 2 FL carol")
	// From here on alice reads nothing.
	bob := e.signIn("bob", "pts/2")
	ctx := ctxT(t)
	nak := -1
	for i := range 20 {
		ok, summary, err := bob.Send(ctx, "alice", "", fmt.Sprintf("message %d", i))
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			if summary != "alice at pts/1 on n1: "+switchboard.ErrTerminalSlow.Error() {
				t.Fatalf("NAK summary %q", summary)
			}
			nak = i
			break
		}
	}
	// One frame may sit in the writer (blocked on the pipe) plus OutQueue
	// queued; the next is refused.
	if nak < 4 || nak > 6 {
		t.Fatalf("first refusal at message %d, want 4..6 with OutQueue 4", nak)
	}
	if es, err := bob.Who(ctx, "alice"); err != nil || len(es) != 1 {
		t.Fatalf("slow alice should still be present: %+v %v", es, err)
	}
	e.signIn("carol", "pts/3") // a watch push alice cannot take
	waitFor(t, "slow watcher to be disconnected", func() bool {
		es, err := bob.Who(ctx, "alice")
		return err == nil && len(es) == 0
	})
}

// TestTrIDEcho: replies carry the client's TrID, including large ones.
func TestTrIDEcho(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Trust{}, nil)
	r := e.raw(t)
	r.send("USR 4294967295 alice t\r\n")
	r.expect("USR 4294967295 OK alice t NLN n1 trust")
	r.send("CHG 0007 busy\r\n")
	r.expect("CHG 7 BSY")
	r.send("CHG 4294967296 busy\r\n")
	r.expect(`200 0 bad transaction id "4294967296"`)
}

// TestBusyClientSlowsSendersInsteadOfRefusing: a client that is behind but
// reading is not refused: a delivery finding its queue full waits (up to
// QueueWait) for the writer to make room, so a burst to one busy client
// slows its senders instead of sending messages away to the mailbox.
func TestBusyClientSlowsSendersInsteadOfRefusing(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Trust{}, func(c *Config) { c.OutQueue = 4; c.QueueWait = time.Minute })
	pl := newPipeListener()
	e.serveOn(pl, Trust{})
	r := e.dialPipe(t, pl)
	r.send("USR 1 alice pts/1\r\n")
	r.expect("USR 1 OK alice pts/1 NLN n1 trust")
	// alice reads nothing until a delivery is waiting for room.
	bob := e.signIn("bob", "pts/2")
	const n = 8
	type result struct {
		ok      bool
		summary string
		err     error
	}
	results := make(chan result, n)
	go func() {
		for i := range n {
			ok, summary, err := bob.Send(ctxT(t), "alice", "", fmt.Sprintf("message %d", i))
			results <- result{ok, summary, err}
		}
	}()
	waitFor(t, "a delivery to wait for room in alice's queue", func() bool {
		e.srv.mu.Lock()
		defer e.srv.mu.Unlock()
		for s := range e.srv.sessions {
			if s.roomWaiters.Load() > 0 {
				return true
			}
		}
		return false
	})
	for i := range n {
		p := r.payload("MSG")
		if want := fmt.Sprintf("\r\n\r\nmessage %d", i); !strings.HasSuffix(p, want) {
			t.Fatalf("message %d: got %q", i, p)
		}
	}
	for range n {
		select {
		case res := <-results:
			if res.err != nil || !res.ok {
				t.Fatalf("a send to a busy but reading client: ok=%v %q %v", res.ok, res.summary, res.err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("sends did not finish")
		}
	}
}
