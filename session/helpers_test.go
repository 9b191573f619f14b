package session

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/msprelay/msprelay/internal/waitfor"
	"github.com/msprelay/msprelay/presence"
	"github.com/msprelay/msprelay/principal"
	"github.com/msprelay/msprelay/sessionclient"
	"github.com/msprelay/msprelay/sessionproto"
	"github.com/msprelay/msprelay/switchboard"
)

// env is one node's session stack: a real single-node presence directory,
// a real switchboard and a session server listening on 127.0.0.1:0.
type env struct {
	t     *testing.T
	dir   *presence.Directory
	sb    *switchboard.Switchboard
	srv   *Server
	addr  string
	serve chan error // Serve's result

	mu    sync.Mutex                         // guards conns
	conns map[*sessionclient.Client]net.Conn // each dialled client's connection, for drop
}

func quietLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// newEnv starts a stack; tweak may adjust the Config. The stack is closed
// when the test ends, and Serve must then have returned ErrServerClosed.
func newEnv(t *testing.T, auth Authenticator, tweak func(*Config)) *env {
	t.Helper()
	dir, err := presence.New(presence.Config{Name: "n1", Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	// No inbound rate: these tests push messages into one session as fast
	// as they can; switchboard and node tests cover the rate.
	sb, err := switchboard.New(switchboard.Config{Directory: dir, Logger: quietLogger(), InboundRate: -1})
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Switchboard: sb, Directory: dir, Logger: quietLogger()}
	if tweak != nil {
		tweak(&cfg)
	}
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, dir: dir, sb: sb, srv: srv, addr: ln.Addr().String(), serve: make(chan error, 1)}
	go func() { e.serve <- srv.Serve(ln, auth) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-e.serve; !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve returned %v, want ErrServerClosed", err)
		}
		sb.Close()
		dir.Close()
	})
	return e
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// dial connects a client; it is closed when the test ends.
func (e *env) dial() *sessionclient.Client {
	e.t.Helper()
	var d net.Dialer
	conn, err := d.DialContext(ctxT(e.t), "tcp", e.addr)
	if err != nil {
		e.t.Fatal(err)
	}
	c := sessionclient.NewClient(conn)
	e.mu.Lock()
	if e.conns == nil {
		e.conns = map[*sessionclient.Client]net.Conn{}
	}
	e.conns[c] = conn
	e.mu.Unlock()
	e.t.Cleanup(func() { c.Close() })
	return c
}

// drop closes c's connection without a word (no OUT), as a crashed client
// or a cut cable would.
func (e *env) drop(c *sessionclient.Client) {
	e.mu.Lock()
	conn := e.conns[c]
	e.mu.Unlock()
	conn.Close()
}

// signIn dials and signs in user at term, online.
func (e *env) signIn(user, term string) *sessionclient.Client {
	e.t.Helper()
	return e.signInState(user, term, principal.Online)
}

func (e *env) signInState(user, term string, st principal.State) *sessionclient.Client {
	e.t.Helper()
	c := e.dial()
	if _, err := c.SignIn(ctxT(e.t), user, term, st); err != nil {
		e.t.Fatalf("sign in %s/%s: %v", user, term, err)
	}
	return c
}

// waitFor polls cond every few milliseconds for up to 5 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	waitfor.True(t, 5*time.Second, what, cond)
}

// mustSend sends and requires an ACK.
func mustSend(t *testing.T, c *sessionclient.Client, recipient, recipTerm, text string) {
	t.Helper()
	if ok, summary, err := c.Send(ctxT(t), recipient, recipTerm, text); err != nil || !ok {
		t.Fatalf("Send(%q, %q) = %v %q %v, want ACK", recipient, recipTerm, ok, summary, err)
	}
}

// waitDone waits up to 5 s for c's connection to end and returns why.
func waitDone(t *testing.T, c *sessionclient.Client) error {
	t.Helper()
	select {
	case <-c.Done():
		return c.Err()
	case <-time.After(5 * time.Second):
		t.Fatal("connection not closed within 5 s")
	}
	return nil
}

// nextMessage waits up to 5 s for a pushed message.
func nextMessage(t *testing.T, c *sessionclient.Client) *sessionproto.Message {
	t.Helper()
	select {
	case m, ok := <-c.Messages():
		if !ok {
			t.Fatalf("connection ended (%v) while waiting for a message", c.Err())
		}
		return m
	case <-time.After(5 * time.Second):
		t.Fatal("no message within 5 s")
	}
	return nil
}

// noMessage checks that no message is pending for c. Deliveries are queued
// before SND is answered, so a short grace period suffices.
func noMessage(t *testing.T, c *sessionclient.Client, who string) {
	t.Helper()
	select {
	case m := <-c.Messages():
		t.Fatalf("%s got an unexpected message: %+v", who, m)
	case <-time.After(50 * time.Millisecond):
	}
}

// nextEvent waits up to 5 s for a presence event.
func nextEvent(t *testing.T, c *sessionclient.Client) sessionclient.PresenceEvent {
	t.Helper()
	select {
	case ev, ok := <-c.Events():
		if !ok {
			t.Fatalf("connection ended (%v) while waiting for an event", c.Err())
		}
		return ev
	case <-time.After(5 * time.Second):
		t.Fatal("no presence event within 5 s")
	}
	return sessionclient.PresenceEvent{}
}

// raw is a plain connection for speaking the protocol by hand.
type raw struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func (e *env) raw(t *testing.T) *raw {
	t.Helper()
	c, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return &raw{t: t, c: c, br: bufio.NewReader(c)}
}

func (r *raw) send(s string) {
	r.t.Helper()
	if _, err := io.WriteString(r.c, s); err != nil {
		r.t.Fatal(err)
	}
}

// line reads one line without its CR LF.
func (r *raw) line() string {
	r.t.Helper()
	l, err := r.br.ReadString('\n')
	if err != nil {
		r.t.Fatalf("reading a line: %v (got %q)", err, l)
	}
	return strings.TrimSuffix(l, "\r\n")
}

// expect reads one line and compares it.
func (r *raw) expect(want string) {
	r.t.Helper()
	if got := r.line(); got != want {
		r.t.Fatalf("got line %q, want %q", got, want)
	}
}

// expectPrefix reads one line and checks how it starts.
func (r *raw) expectPrefix(want string) {
	r.t.Helper()
	if got := r.line(); !strings.HasPrefix(got, want) {
		r.t.Fatalf("got line %q, want it to start with %q", got, want)
	}
}

// closed checks that the server closes the connection with nothing more.
func (r *raw) closed() {
	r.t.Helper()
	rest, err := io.ReadAll(r.br)
	if err != nil {
		r.t.Fatalf("want EOF, got %v", err)
	}
	if len(rest) > 0 {
		r.t.Fatalf("want EOF, got %q more", rest)
	}
}
