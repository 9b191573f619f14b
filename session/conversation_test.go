package session

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/msprelay/msprelay/broker"
	"github.com/msprelay/msprelay/conversation"
	"github.com/msprelay/msprelay/sessionproto"
)

// newConvEnv is newEnv with conversations: a real nats-server with
// JetStream and a conversation manager for node n1.
func newConvEnv(t *testing.T) *env {
	t.Helper()
	b, err := broker.New(broker.Config{Name: "conv", Listen: "127.0.0.1:0", JetStream: true, DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	nc, err := nats.Connect(b.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	m, err := conversation.New(conversation.Config{Node: "n1", NATS: nc, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := m.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return newEnv(t, Trust{}, func(c *Config) { c.Conversations = m })
}

// convPush reads "MSG name user node term <len>" and its payload.
func (r *raw) convPush(head string) string {
	r.t.Helper()
	return r.payload("MSG " + head)
}

// header returns the value of one header of a payload.
func header(p, name string) string {
	for _, l := range strings.Split(p, "\r\n") {
		if v, ok := strings.CutPrefix(l, name+": "); ok {
			return v
		}
	}
	return ""
}

// TestConversationTranscript speaks the conversation commands by hand and
// checks every byte the server sends; docs/SESSION.md shows the same
// exchange.
func TestConversationTranscript(t *testing.T) {
	t.Parallel()
	e := newConvEnv(t)
	a, b := e.raw(t), e.raw(t)
	a.send("VER 1 MSPS1\r\n")
	a.expect("VER 1 MSPS1")
	a.send("USR 2 alice pts/1\r\n")
	a.expect("USR 2 OK alice pts/1 NLN n1 trust")
	b.send("USR 1 bob pts/2\r\n")
	b.expect("USR 1 OK bob pts/2 NLN n1 trust")

	// Create #ops and ring bob.
	a.send("XFR 3 SB ops\r\n")
	a.expect("XFR 3 SB ops")
	a.send("CAL 4 ops bob\r\n")
	a.expect("CAL 4 RINGING ops bob 1") // issue 20: the reply counts the terminals rung
	b.expect("RNG ops alice n1 pts/1")

	// bob answers: the roster, then the reply; alice sees him join.
	b.send("ANS 2 ops\r\n")
	b.expect("IRO 2 1 1 ops alice n1 pts/1")
	b.expect("ANS 2 OK ops")
	a.expect("JOI ops bob n1 pts/2")

	// Ack mode A: the sender gets ACK with the message id.
	a.send("MSG 5 ops A 11\r\nhello\nworld")
	ack := a.line()
	id, ok := strings.CutPrefix(ack, "ACK 5 ")
	if !ok || len(id) != 24 {
		t.Fatalf("got %q, want ACK 5 <24 hex digits>", ack)
	}
	p := b.convPush("ops alice n1 pts/1")
	want := "Id: " + id + "\r\nTime: " + header(p, "Time") + "\r\nVerified: no\r\nSender-Method: trust\r\nContent-Type: text/plain; charset=ISO-8859-1\r\n\r\nhello\r\nworld"
	if p != want {
		t.Fatalf("MSG push\n got %q\nwant %q", p, want)
	}
	if _, err := time.Parse(time.RFC3339Nano, header(p, "Time")); err != nil {
		t.Fatalf("Time header: %v", err)
	}

	// A typing notice is a control payload; mode U gets no reply.
	b.send("MSG 3 ops U 38\r\nContent-Type: text/x-msmsgscontrol\r\n\r\n")
	if p := a.convPush("ops bob n1 pts/2"); p != "Content-Type: text/x-msmsgscontrol\r\nTypingUser: bob\r\n\r\n" {
		t.Fatalf("typing push %q", p)
	}
	// Mode N: no reply when it works.
	b.send("MSG 4 ops N 3\r\nhi!")
	if p := a.convPush("ops bob n1 pts/2"); !strings.HasSuffix(p, "\r\n\r\nhi!") {
		t.Fatalf("push %q", p)
	}
	b.send("WHO 5 #ops\r\n")
	p = b.payload("WHO 5 2")
	lines := strings.Split(strings.TrimSuffix(p, "\r\n"), "\r\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "alice n1 pts/1 NLN ") || !strings.HasPrefix(lines[1], "bob n1 pts/2 NLN ") {
		t.Fatalf("WHO #ops payload %q", p)
	}

	// Bad input: a numeric error with the TrID, and the session goes on.
	a.send("XFR 6 SB abcdefghijabcdefghijabcdefghijabc\r\n")
	a.expect("230 6 conversation: invalid conversation name: 33 octets, at most 32")
	a.send("XFR 7 SB a.b\r\n")
	a.expect("230 7 conversation: invalid conversation name: octet 0x2E at offset 1 (letters, digits, '-' and '_' only)")
	a.send("MSG 8 lobby A 2\r\nhi")
	a.expect("232 8 not in lobby")
	a.send("ANS 9 nope\r\n")
	a.expect("231 9 conversation: no such conversation: nope")
	a.send("XFR 10 SB ops\r\n")
	a.expect("215 10 already in ops")

	// bob leaves; alice is told.
	b.send("BYE 6 ops\r\n")
	b.expect("BYE 6 ops")
	a.expect("BYE ops bob n1 pts/2 left")
	b.send("MSG 7 ops A 2\r\nhi")
	b.expect("232 7 not in ops")
	a.send("PNG\r\n")
	a.expect("QNG 90")
	a.send("OUT\r\n")
	a.expect("OUT")
	a.closed()
}

// "joining a conversation one is blocked from ... gets a numeric error and
// the session goes on"; the history reaches a late joiner.
func TestConversationBlockedAndHistory(t *testing.T) {
	t.Parallel()
	e := newConvEnv(t)
	a, m := e.raw(t), e.raw(t)
	a.send("USR 1 alice pts/1\r\n")
	a.expect("USR 1 OK alice pts/1 NLN n1 trust")
	a.send("ADD 2 BL mallory\r\n")
	a.expect("ADD 2 BL mallory")
	a.send("XFR 3 SB ops\r\n")
	a.expect("XFR 3 SB ops")
	a.send("MSG 4 ops A 5\r\nfirst")
	a.expectPrefix("ACK 4 ")
	m.send("USR 1 mallory tty1\r\n")
	m.expect("USR 1 OK mallory tty1 NLN n1 trust")
	m.send("ANS 2 ops\r\n")
	m.expect("233 2 conversation: blocked: a member of ops blocks mallory")
	// alice cannot ring someone who blocks her either (217, like MSN's
	// "not online": it does not reveal the block).
	m.send("ADD 3 BL alice\r\n")
	m.expect("ADD 3 BL alice")
	a.send("CAL 5 ops mallory\r\n")
	a.expect("217 5 conversation: user not signed in: mallory")

	c := e.signIn("carol", "pts/3")
	evs := c.Conversations()
	name, roster, err := c.Answer(ctxT(t), "OPS")
	if err != nil || name != "ops" || len(roster) != 1 || roster[0].User != "alice" {
		t.Fatalf("Answer = %q %v %v", name, roster, err)
	}
	select {
	case ev := <-evs:
		if ev.Type != "message" || !ev.History || ev.Text != "first" || ev.User != "alice" || ev.Verified || ev.SenderMethod != "trust" {
			t.Fatalf("history event %+v", ev)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no history")
	}
	a.expect("JOI ops carol n1 pts/3")
	if _, err := c.SendConv(ctxT(t), "ops", "from carol"); err != nil {
		t.Fatal(err)
	}
	if p := a.convPush("ops carol n1 pts/3"); !strings.HasSuffix(p, "\r\n\r\nfrom carol") {
		t.Fatalf("push %q", p)
	}
	// A session that ends leaves its conversations.
	c.Close()
	a.expect("BYE ops carol n1 pts/3 left")
}

// A typing notice has no reply; an error for one (the conversation was
// left) must not end the client's session.
func TestTypingErrorIsNotFatal(t *testing.T) {
	t.Parallel()
	e := newConvEnv(t)
	c := e.signIn("alice", "pts/1")
	if err := c.Typing(ctxT(t), "ops"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Join(ctxT(t), "ops"); err != nil {
		t.Fatalf("after a refused typing notice: %v", err)
	}
	if err := c.Leave(ctxT(t), "ops"); err != nil {
		t.Fatal(err)
	}
	if err := c.Leave(ctxT(t), "ops"); !sessionproto.IsCode(err, sessionproto.CodeNotMember) {
		t.Fatalf("second leave: %v, want 232", err)
	}
}

// Rule (issue 18): "Private (invite-only) rooms, and history only for
// members"; "per-user caps: ... member slots one user holds in one room";
// each refusal is a numeric error (235, 236, 237) and the session goes on.
func TestConversationPrivateAndCaps(t *testing.T) {
	t.Parallel()
	e := newConvEnv(t)
	a, b := e.raw(t), e.raw(t)
	a.send("USR 1 alice pts/1\r\n")
	a.expect("USR 1 OK alice pts/1 NLN n1 trust")
	b.send("USR 1 bob pts/2\r\n")
	b.expect("USR 1 OK bob pts/2 NLN n1 trust")
	a.send("XFR 2 SB secret PRIVATE\r\n")
	a.expect("XFR 2 SB secret")
	a.send("MSG 3 secret A 8\r\nthe plan")
	a.expectPrefix("ACK 3 ")
	b.send("ANS 2 secret\r\n")
	b.expect("236 2 conversation: private, not invited: secret is private")
	b.send("XFR 3 SB secret\r\n")
	b.expect("236 3 conversation: private, not invited: secret is private")
	b.send("WHO 4 #secret\r\n")
	b.expect("236 4 conversation: private, not invited: secret")
	a.send("XFR 4 SB other NOTPRIVATE\r\n")
	a.expect(`201 4 XFR "NOTPRIVATE": only PRIVATE`)
	a.send("CAL 5 secret bob\r\n")
	a.expect("CAL 5 RINGING secret bob 1")
	b.expect("RNG secret alice n1 pts/1")
	b.send("ANS 5 secret\r\n")
	b.expect("IRO 5 1 1 secret alice n1 pts/1")
	if p := b.convPush("secret alice n1 pts/1"); !strings.HasSuffix(p, "\r\n\r\nthe plan") || header(p, "History") != "yes" {
		t.Fatalf("history push %q", p)
	}
	b.expect("ANS 5 OK secret")
	b.send("CAL 6 secret carol\r\n")
	b.expect("237 6 conversation: only the owner may do that: secret is private to alice")

	// One user holds at most DefaultMaxSlotsPerUser places in one room.
	for i := range conversation.DefaultMaxSlotsPerUser + 1 {
		m := e.raw(t)
		m.send(fmt.Sprintf("USR 1 mallory pts/%d\r\n", i))
		m.expectPrefix("USR 1 OK mallory")
		m.send("XFR 2 SB secret2\r\n")
		if i < conversation.DefaultMaxSlotsPerUser {
			for range i { // the places already held
				if l := m.line(); !strings.HasPrefix(l, "IRO 2 ") {
					t.Fatalf("got %q, want IRO", l)
				}
			}
			m.expect("XFR 2 SB secret2")
			continue
		}
		m.expect(fmt.Sprintf("235 2 conversation: too many for one user: mallory is in secret2 %d times already", i))
		m.send("PNG\r\n")
		m.expect("QNG 90")
	}
}

// Rule (issue 18, "One user fills the rooms"): "258 sessions created 4096
// rooms in 9 s: every user then got 234 ... full"; "64 sessions of one
// user took every member slot of #ops". Each of mallory's 258 sessions
// tries to create a room and to join #ops: she gets her caps' worth and
// 235 for the rest, and alice still creates rooms and joins #ops.
func TestOneUsersSessionsCannotFillTheRooms(t *testing.T) {
	t.Parallel()
	e := newConvEnv(t)
	alice := e.signIn("alice", "pts/1")
	if _, _, err := alice.Join(ctxT(t), "ops"); err != nil {
		t.Fatal(err)
	}
	created, held := 0, 0
	for i := range 258 {
		m := e.signIn("mallory", fmt.Sprintf("pts/%d", i))
		if _, _, err := m.Join(ctxT(t), fmt.Sprintf("spam%d", i)); err == nil {
			created++
			if err := m.Leave(ctxT(t), fmt.Sprintf("spam%d", i)); err != nil {
				t.Fatal(err)
			}
		} else if !sessionproto.IsCode(err, sessionproto.CodeConvTooMany) {
			t.Fatalf("session %d creates a room: %v, want 235", i, err)
		}
		if _, _, err := m.Answer(ctxT(t), "ops"); err == nil {
			held++
		} else if !sessionproto.IsCode(err, sessionproto.CodeConvTooMany) {
			t.Fatalf("session %d joins ops: %v, want 235", i, err)
		}
	}
	if created != conversation.DefaultMaxOpenPerUser || held != conversation.DefaultMaxSlotsPerUser {
		t.Fatalf("mallory created %d rooms and holds %d places in ops, want %d and %d",
			created, held, conversation.DefaultMaxOpenPerUser, conversation.DefaultMaxSlotsPerUser)
	}
	bob := e.signIn("bob", "pts/2")
	if _, _, err := bob.Join(ctxT(t), "lunch"); err != nil {
		t.Fatalf("bob creates a room after mallory's flood: %v", err)
	}
	if _, _, err := bob.Answer(ctxT(t), "ops"); err != nil {
		t.Fatalf("bob joins ops after mallory's flood: %v", err)
	}
}
