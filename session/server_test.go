package session

import (
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/msprelay/msprelay/presence"
	"github.com/msprelay/msprelay/principal"
	"github.com/msprelay/msprelay/sessionclient"
	"github.com/msprelay/msprelay/sessionproto"
	"github.com/msprelay/msprelay/switchboard"
)

// TestDeliveryByRecipTerm checks the RFC 1312 RECIP-TERM rules end to end
// through sessions: "If the RECIP-TERM part is empty, the message may be
// delivered to the user's 'right' terminal ... if it is '*', to all
// terminals", otherwise to that terminal.
func TestDeliveryByRecipTerm(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Trust{}, nil)
	a1 := e.signIn("alice", "pts/1")
	a2 := e.signIn("alice", "pts/2")
	bob := e.signIn("bob", "pts/9")
	ctx := ctxT(t)
	// pts/1 becomes the most recently active terminal.
	if err := a1.SetState(ctx, principal.Online); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name      string
		recipTerm string
		want1     bool
		want2     bool
		summary   string
	}{
		{"named terminal reaches only it", "pts/2", false, true, "delivered to alice at pts/2 on n1"},
		{"named terminal is case-insensitive", "PTS/2", false, true, "delivered to alice at pts/2 on n1"},
		{"empty reaches the most recently active terminal", "", true, false, "delivered to alice at pts/1 on n1"},
		{"star reaches every terminal", "*", true, true, "delivered to alice at 2 of 2 terminals: pts/1@n1 pts/2@n1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ok, summary, err := bob.Send(ctx, "alice", tc.recipTerm, "hi "+tc.name)
			if err != nil || !ok || summary != tc.summary {
				t.Fatalf("Send = %v %q %v, want true %q", ok, summary, err, tc.summary)
			}
			for i, c := range []*sessionclient.Client{a1, a2} {
				if want := []bool{tc.want1, tc.want2}[i]; want {
					if m := nextMessage(t, c); m.Text != "hi "+tc.name {
						t.Fatalf("pts/%d got %q", i+1, m.Text)
					}
				} else {
					noMessage(t, c, fmt.Sprintf("pts/%d", i+1))
				}
			}
		})
	}
}

// TestMessageHeaders checks the MSG payload a session receives: sender,
// addressing as sent, origin, and LF-only text delivered as CR LF (RFC 1312:
// "New lines should be represented using the usual Netascii CR + LF").
func TestMessageHeaders(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Trust{}, nil)
	alice := e.signIn("alice", "pts/1")
	bob := e.signIn("Bob", "tty7")
	before := time.Now().Add(-time.Second)
	ok, _, err := bob.Send(ctxT(t), "ALICE", "pts/1", "line one\nline two\n")
	if err != nil || !ok {
		t.Fatalf("Send = %v %v", ok, err)
	}
	m := nextMessage(t, alice)
	want := sessionproto.Message{
		ID: m.ID, Sender: "bob", SenderTerm: "tty7", Recipient: "ALICE", RecipTerm: "pts/1",
		OriginNode: "n1", OriginAddr: "session", Transport: "session", Verified: false, SenderMethod: "trust",
		Time: m.Time, Cookie: m.Cookie, Text: "line one\r\nline two\r\n",
	}
	if *m != want {
		t.Fatalf("message\n got %+v\nwant %+v", *m, want)
	}
	if len(m.ID) != 24 || len(m.Cookie) != 16 {
		t.Fatalf("ID %q / Cookie %q: want 24 and 16 hex digits", m.ID, m.Cookie)
	}
	if m.Time.Before(before) || m.Time.After(time.Now()) {
		t.Fatalf("Time %v is not now", m.Time)
	}
}

// TestBusyRefuses: "busy refuses messages" (mesg n); the sender gets NAK.
func TestBusyRefuses(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Trust{}, nil)
	alice := e.signIn("alice", "pts/1")
	bob := e.signIn("bob", "pts/2")
	ctx := ctxT(t)
	if err := alice.SetState(ctx, principal.Busy); err != nil {
		t.Fatal(err)
	}
	ok, summary, err := bob.Send(ctx, "alice", "", "knock knock")
	if err != nil || ok || summary != "alice at pts/1 on n1: busy, not accepting messages" {
		t.Fatalf("Send = %v %q %v, want NAK busy", ok, summary, err)
	}
	noMessage(t, alice, "busy alice")
	if err := alice.SetState(ctx, principal.Online); err != nil {
		t.Fatal(err)
	}
	if ok, summary, err := bob.Send(ctx, "alice", "", "again"); err != nil || !ok {
		t.Fatalf("Send after online = %v %q %v", ok, summary, err)
	}
	if m := nextMessage(t, alice); m.Text != "again" {
		t.Fatalf("got %q", m.Text)
	}
}

// TestBlockList: "Users must be able to ... block senders."
func TestBlockList(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Trust{}, nil)
	alice := e.signIn("alice", "pts/1")
	bob := e.signIn("bob", "pts/2")
	carol := e.signIn("carol", "pts/3")
	ctx := ctxT(t)
	if err := alice.Block(ctx, "BOB"); err != nil {
		t.Fatal(err)
	}
	if err := alice.Block(ctx, "bob"); !sessionproto.IsCode(err, sessionproto.CodeInList) {
		t.Fatalf("second Block = %v, want %d", err, sessionproto.CodeInList)
	}
	if l, err := alice.Blocked(ctx); err != nil || !slices.Equal(l, []string{"bob"}) {
		t.Fatalf("Blocked = %v %v", l, err)
	}
	ok, summary, err := bob.Send(ctx, "alice", "", "let me in")
	if err != nil || ok || summary != "alice at pts/1 on n1: blocked by recipient" {
		t.Fatalf("blocked Send = %v %q %v", ok, summary, err)
	}
	mustSend(t, carol, "alice", "", "from carol")
	if m := nextMessage(t, alice); m.Sender != "carol" {
		t.Fatalf("got message from %q, want carol only", m.Sender)
	}
	if err := alice.Unblock(ctx, "bob"); err != nil {
		t.Fatal(err)
	}
	if err := alice.Unblock(ctx, "bob"); !sessionproto.IsCode(err, sessionproto.CodeNotInList) {
		t.Fatalf("second Unblock = %v, want %d", err, sessionproto.CodeNotInList)
	}
	mustSend(t, bob, "alice", "", "thanks")
	if m := nextMessage(t, alice); m.Sender != "bob" {
		t.Fatalf("got %q", m.Sender)
	}
}

// TestDroppedConnectionEndsPresence: "A dropped session ends its presence."
func TestDroppedConnectionEndsPresence(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Trust{}, nil)
	alice := e.signIn("alice", "pts/1")
	bob := e.signIn("bob", "pts/2")
	ctx := ctxT(t)
	if es, err := bob.Who(ctx, "alice"); err != nil || len(es) != 1 || es[0].Term != "pts/1" || es[0].Node != "n1" {
		t.Fatalf("Who before = %+v %v", es, err)
	}
	e.drop(alice) // no OUT: the connection just drops
	waitFor(t, "alice's presence to end", func() bool {
		es, err := bob.Who(ctx, "alice")
		return err == nil && len(es) == 0
	})
	ok, summary, err := bob.Send(ctx, "alice", "", "anyone?")
	if err != nil || ok || summary != "alice: not signed in" {
		t.Fatalf("Send to gone alice = %v %q %v", ok, summary, err)
	}
}

// TestKickedByNewerSignIn: the newest sign-in on a (user, terminal) wins and
// the older session is told OUT OTH.
func TestKickedByNewerSignIn(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Trust{}, nil)
	old := e.signIn("alice", "pts/1")
	neu := e.signIn("alice", "pts/1")
	if err := waitDone(t, old); !errors.Is(err, sessionclient.ErrKicked) {
		t.Fatalf("old session ended with %v, want sessionclient.ErrKicked", err)
	}
	bob := e.signIn("bob", "pts/2")
	ctx := ctxT(t)
	if es, err := bob.Who(ctx, "alice"); err != nil || len(es) != 1 {
		t.Fatalf("Who = %+v %v, want one terminal", es, err)
	}
	mustSend(t, bob, "alice", "pts/1", "to the new one")
	if m := nextMessage(t, neu); m.Text != "to the new one" {
		t.Fatalf("got %q", m.Text)
	}
}

// TestWatchEvents: watch pushes ILN (initial), NLN (sign-in, state change)
// and FLN (sign-out), and a hidden terminal looks offline to others.
func TestWatchEvents(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Trust{}, nil)
	a1 := e.signIn("alice", "pts/1")
	carol := e.signIn("carol", "pts/3")
	ctx := ctxT(t)
	init, err := carol.Watch(ctx, "Alice")
	want := sessionclient.PresenceEvent{Initial: true, User: "alice", Node: "n1", Term: "pts/1", State: principal.Online}
	if err != nil || len(init) != 1 || init[0] != want {
		t.Fatalf("Watch = %+v %v, want [%+v]", init, err, want)
	}
	if ev := nextEvent(t, carol); ev != want {
		t.Fatalf("Events got %+v, want the ILN %+v", ev, want)
	}
	if _, err := carol.Watch(ctx, "alice"); !sessionproto.IsCode(err, sessionproto.CodeInList) {
		t.Fatalf("second Watch = %v, want %d", err, sessionproto.CodeInList)
	}
	a2 := e.signIn("alice", "pts/2")
	steps := []struct {
		name string
		do   func()
		want sessionclient.PresenceEvent
	}{
		{"sign-in on a new terminal is NLN", func() {},
			sessionclient.PresenceEvent{User: "alice", Node: "n1", Term: "pts/2", State: principal.Online}},
		{"state change is NLN", func() { mustNil(t, a1.SetState(ctx, principal.Away)) },
			sessionclient.PresenceEvent{User: "alice", Node: "n1", Term: "pts/1", State: principal.Away}},
		{"hidden is FLN to others", func() { mustNil(t, a2.SetState(ctx, principal.Hidden)) },
			sessionclient.PresenceEvent{User: "alice", Node: "n1", Term: "pts/2", State: principal.Offline}},
		{"visible again is NLN", func() { mustNil(t, a2.SetState(ctx, principal.Busy)) },
			sessionclient.PresenceEvent{User: "alice", Node: "n1", Term: "pts/2", State: principal.Busy}},
		{"dropped connection is FLN", func() { e.drop(a1) },
			sessionclient.PresenceEvent{User: "alice", Node: "n1", Term: "pts/1", State: principal.Offline}},
		{"sign-out is FLN", func() { mustNil(t, a2.SignOut(ctx)) },
			sessionclient.PresenceEvent{User: "alice", Node: "n1", Term: "pts/2", State: principal.Offline}},
	}
	for _, st := range steps {
		st.do()
		if ev := nextEvent(t, carol); ev != st.want {
			t.Fatalf("%s: got %+v, want %+v", st.name, ev, st.want)
		}
	}
	if err := carol.Unwatch(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	if err := carol.Unwatch(ctx, "alice"); !sessionproto.IsCode(err, sessionproto.CodeNotInList) {
		t.Fatalf("second Unwatch = %v, want %d", err, sessionproto.CodeNotInList)
	}
	e.signIn("alice", "pts/4")
	select {
	case ev := <-carol.Events():
		t.Fatalf("event after Unwatch: %+v", ev)
	case <-time.After(100 * time.Millisecond):
	}
}

func mustNil(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestHiddenVisibleToOwnUser: hidden terminals appear offline to everyone
// but their own user, in WHO and in watch reports.
func TestHiddenVisibleToOwnUser(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Trust{}, nil)
	e.signInState("alice", "pts/1", principal.Hidden)
	self := e.signIn("alice", "pts/2")
	bob := e.signIn("bob", "pts/3")
	ctx := ctxT(t)
	es, err := bob.Who(ctx, "alice")
	if err != nil || len(es) != 1 || es[0].Term != "pts/2" {
		t.Fatalf("bob's Who = %+v %v, want pts/2 only", es, err)
	}
	if all, err := bob.Who(ctx, ""); err != nil || len(all) != 2 {
		t.Fatalf("bob's Who all = %+v %v, want alice pts/2 and bob", all, err)
	}
	es, err = self.Who(ctx, "alice")
	if err != nil || len(es) != 2 {
		t.Fatalf("alice's Who = %+v %v, want both terminals", es, err)
	}
	states := map[string]principal.State{es[0].Term: es[0].State, es[1].Term: es[1].State}
	if states["pts/1"] != principal.Hidden || states["pts/2"] != principal.Online {
		t.Fatalf("alice's Who states = %v", states)
	}
	if init, err := bob.Watch(ctx, "alice"); err != nil || len(init) != 1 || init[0].Term != "pts/2" {
		t.Fatalf("bob's Watch = %+v %v", init, err)
	}
	if init, err := self.Watch(ctx, "alice"); err != nil || len(init) != 2 {
		t.Fatalf("alice's own Watch = %+v %v, want both terminals", init, err)
	}
	// Issue 12: "hidden users are indistinguishable from offline ones in
	// every reply": her hidden terminal answers like one she does not have.
	ok, hidden, err := bob.Send(ctx, "alice", "pts/1", "psst")
	_, absent, err2 := bob.Send(ctx, "alice", "pts/7", "psst")
	if err != nil || err2 != nil || ok || hidden != strings.Replace(absent, "pts/7", "pts/1", 1) {
		t.Fatalf("Send to hidden pts/1 = %v %q %v; to absent pts/7 = %q %v", ok, hidden, err, absent, err2)
	}
}

// TestWhoEntry checks every field of a WHO line.
func TestWhoEntry(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Trust{}, nil)
	before := time.Now().Add(-time.Second)
	alice := e.signInState("alice", "pts/1", principal.Away)
	ctx := ctxT(t)
	mustNil(t, alice.AddName(ctx, "helpdesk"))
	es, err := alice.Who(ctx, "helpdesk")
	if err != nil || len(es) != 1 {
		t.Fatalf("Who(helpdesk) = %+v %v", es, err)
	}
	w := es[0]
	if w.User != "alice" || w.Node != "n1" || w.Term != "pts/1" || w.State != principal.Away ||
		!slices.Equal(w.Aliases, []string{"helpdesk"}) {
		t.Fatalf("entry = %+v", w)
	}
	if w.Since.Before(before) || w.LastActive.Before(before) || w.Since.After(time.Now()) {
		t.Fatalf("times since=%v last=%v not around now", w.Since, w.LastActive)
	}
	if es, err := alice.Who(ctx, "alice@n1"); err != nil || len(es) != 1 {
		t.Fatalf("Who(alice@n1) = %+v %v", es, err)
	}
	if es, err := alice.Who(ctx, "alice@n2"); err != nil || len(es) != 0 {
		t.Fatalf("Who(alice@n2) = %+v %v, want none", es, err)
	}
	if es, err := alice.Who(ctx, "nobody-here"); err != nil || len(es) != 0 {
		t.Fatalf("Who(absent) = %+v %v, want an empty list", es, err)
	}
	if _, err := alice.Who(ctx, "bad name"); !sessionproto.IsCode(err, sessionproto.CodeBadUser) {
		t.Fatalf("Who(bad name) = %v, want %d", err, sessionproto.CodeBadUser)
	}
}

// TestAliases: "a session may claim extra names; messages to a name reach
// the sessions holding it" (name add/delete/enumerate).
func TestAliases(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Trust{}, func(c *Config) { c.MaxNames = 2 })
	alice := e.signIn("alice", "pts/1")
	bob := e.signIn("bob", "pts/2")
	ctx := ctxT(t)
	mustNil(t, alice.AddName(ctx, "HelpDesk"))
	if err := alice.AddName(ctx, "helpdesk"); !sessionproto.IsCode(err, sessionproto.CodeInList) {
		t.Fatalf("AddName twice = %v, want %d", err, sessionproto.CodeInList)
	}
	if err := alice.AddName(ctx, "alice"); !sessionproto.IsCode(err, sessionproto.CodeInList) {
		t.Fatalf("AddName(own name) = %v, want %d", err, sessionproto.CodeInList)
	}
	if err := bob.AddName(ctx, "helpdesk"); !sessionproto.IsCode(err, sessionproto.CodeNameTaken) {
		t.Fatalf("bob AddName(helpdesk) = %v, want %d", err, sessionproto.CodeNameTaken)
	}
	if err := bob.AddName(ctx, "alice"); !sessionproto.IsCode(err, sessionproto.CodeNameTaken) {
		t.Fatalf("bob AddName(alice) = %v, want %d", err, sessionproto.CodeNameTaken)
	}
	mustNil(t, alice.AddName(ctx, "ops"))
	if err := alice.AddName(ctx, "third"); !sessionproto.IsCode(err, sessionproto.CodeListFull) {
		t.Fatalf("third AddName = %v, want %d", err, sessionproto.CodeListFull)
	}
	if n, err := alice.Names(ctx); err != nil || !slices.Equal(n, []string{"helpdesk", "ops"}) {
		t.Fatalf("Names = %v %v", n, err)
	}
	ok, summary, err := bob.Send(ctx, "helpdesk", "", "printer on fire")
	if err != nil || !ok || summary != "delivered to alice at pts/1 on n1" {
		t.Fatalf("Send(helpdesk) = %v %q %v", ok, summary, err)
	}
	if m := nextMessage(t, alice); m.Recipient != "helpdesk" || m.Text != "printer on fire" {
		t.Fatalf("got %+v", m)
	}
	mustNil(t, alice.DelName(ctx, "helpdesk"))
	if err := alice.DelName(ctx, "helpdesk"); !sessionproto.IsCode(err, sessionproto.CodeNotInList) {
		t.Fatalf("DelName twice = %v, want %d", err, sessionproto.CodeNotInList)
	}
	if ok, summary, _ := bob.Send(ctx, "helpdesk", "", "still there?"); ok || summary != "helpdesk: not signed in" {
		t.Fatalf("Send after DelName = %v %q", ok, summary)
	}
}

// TestSendTextRules: the SND text obeys MSP's MESSAGE rules ("printable
// characters from the ISO 8859/1 set ... plus CR, LF and TAB") and the whole
// message must be "less than 512 octets".
func TestSendTextRules(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Trust{}, nil)
	alice := e.signIn("alice", "pts/1")
	ctx := ctxT(t)
	tests := []struct {
		name string
		text string
		code int // 0: accepted
	}{
		{"latin-1 and tab accepted", "caf\xe9\tna\xefve", 0},
		{"bell refused", "ding\x07", sessionproto.CodeBadText},
		{"escape refused", "\x1b[2J", sessionproto.CodeBadText},
		{"C1 CSI refused", "\x9b2J", sessionproto.CodeBadText},
		{"DEL refused", "a\x7fb", sessionproto.CodeBadText},
		{"fits under 512 octets", strings.Repeat("x", 511-1-6-2-1-5-6-17-1), 0},
		{"512 octets refused", strings.Repeat("x", 511-1-6-2-1-5-6-17-1+1), sessionproto.CodeBadText},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ok, _, err := alice.Send(ctx, "alice", "", tc.text)
			if tc.code == 0 {
				if err != nil || !ok {
					t.Fatalf("Send = %v %v, want ACK", ok, err)
				}
				if m := nextMessage(t, alice); m.Text != tc.text {
					t.Fatalf("delivered %q", m.Text)
				}
				return
			}
			if !sessionproto.IsCode(err, tc.code) {
				t.Fatalf("Send = %v %v, want error %d", ok, err, tc.code)
			}
		})
	}
}

// TestConsole: "If both RECIPIENT and RECIP-TERM are empty, the message
// should be displayed on the system console."
func TestConsole(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Trust{}, nil)
	bob := e.signIn("bob", "pts/2")
	ctx := ctxT(t)
	if ok, summary, _ := bob.Send(ctx, "", "", "hello console"); ok || summary != "console: no console session" {
		t.Fatalf("Send without console = %v %q", ok, summary)
	}
	root := e.signIn("root", "console")
	mustSend(t, bob, "", "", "hello console")
	if m := nextMessage(t, root); m.Recipient != "" || m.RecipTerm != "" || m.Text != "hello console" {
		t.Fatalf("got %+v", m)
	}
}

// TestNoTerminalSession: signing in with sessionproto.NoTerminal gives a session that can
// look up, watch and send but is not present and cannot change state.
func TestNoTerminalSession(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Trust{}, nil)
	alice := e.signIn("alice", "pts/1")
	c := e.dial()
	ctx := ctxT(t)
	si, err := c.SignIn(ctx, "bob", sessionproto.NoTerminal, principal.Offline)
	want := sessionclient.SignedIn{User: "bob", Term: "*", State: principal.Online, Node: "n1", Method: "trust"}
	if err != nil || *si != want {
		t.Fatalf("SignIn = %+v %v, want %+v", si, err, want)
	}
	if es, err := c.Who(ctx, ""); err != nil || len(es) != 1 || es[0].User != "alice" {
		t.Fatalf("Who = %+v %v, want alice only", es, err)
	}
	for name, err := range map[string]error{
		"CHG":     c.SetState(ctx, principal.Away),
		"NAM ADD": c.AddName(ctx, "x"),
		"ADD BL":  c.Block(ctx, "carol"),
	} {
		if !sessionproto.IsCode(err, sessionproto.CodeNotAllowed) {
			t.Errorf("%s = %v, want %d", name, err, sessionproto.CodeNotAllowed)
		}
	}
	mustSend(t, c, "alice", "", "from nowhere")
	if m := nextMessage(t, alice); m.Sender != "bob" || m.SenderTerm != "" {
		t.Fatalf("got %+v", m)
	}
}

// TestListCaps checks the watch and block list caps.
func TestListCaps(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Trust{}, func(c *Config) { c.MaxList = 2 })
	c := e.signIn("alice", "pts/1")
	ctx := ctxT(t)
	for _, u := range []string{"b", "c"} {
		if _, err := c.Watch(ctx, u); err != nil {
			t.Fatal(err)
		}
		mustNil(t, c.Block(ctx, u))
	}
	if _, err := c.Watch(ctx, "d"); !sessionproto.IsCode(err, sessionproto.CodeListFull) {
		t.Fatalf("third Watch = %v, want %d", err, sessionproto.CodeListFull)
	}
	if err := c.Block(ctx, "d@n1"); !sessionproto.IsCode(err, sessionproto.CodeListFull) {
		t.Fatalf("third Block = %v, want %d", err, sessionproto.CodeListFull)
	}
	if l, err := c.Watched(ctx); err != nil || !slices.Equal(l, []string{"b", "c"}) {
		t.Fatalf("Watched = %v %v", l, err)
	}
	if err := c.Block(ctx, "x@bad.node"); !sessionproto.IsCode(err, sessionproto.CodeBadUser) {
		t.Fatalf("Block(x@bad.node) = %v, want %d", err, sessionproto.CodeBadUser)
	}
}

// TestIdleTimeout: a session that sends nothing for IdleTimeout is closed
// with OUT TMO and its presence ends; PNG keeps it alive.
func TestIdleTimeout(t *testing.T) {
	t.Parallel()
	// Margins that hold on a loaded machine: the pinger pings ten times per
	// IdleTimeout, so only a scheduling stall of most of a second could end
	// it; the silent session's idle time starts after its sign-in, so it
	// cannot end before IdleTimeout has passed since start.
	const idleTimeout = time.Second
	e := newEnv(t, Trust{}, func(c *Config) { c.IdleTimeout = idleTimeout })
	start := time.Now()
	idle := e.signIn("alice", "pts/1")
	pinger := e.signIn("bob", "pts/2")
	ctx := ctxT(t)
	tick := time.NewTicker(idleTimeout / 10)
	defer tick.Stop()
	deadline := time.After(idleTimeout + 10*time.Second)
	for done := false; !done; {
		select {
		case <-idle.Done():
			done = true
		case <-tick.C:
			d, err := pinger.Ping(ctx)
			if err != nil || d != time.Second {
				t.Fatalf("Ping = %v %v, want 1s", d, err)
			}
		case <-deadline:
			t.Fatalf("silent session still open %v after IdleTimeout", 10*time.Second)
		}
	}
	if d := time.Since(start); d < idleTimeout {
		t.Fatalf("silent session closed %v after its sign-in began, before IdleTimeout (%v)", d, idleTimeout)
	}
	if err := idle.Err(); !errors.Is(err, sessionclient.ErrIdleTimeout) {
		t.Fatalf("idle session ended with %v, want sessionclient.ErrIdleTimeout", err)
	}
	// The client sees its connection end as the server closes it; the
	// server signs the session out right after, so poll (bounded).
	waitFor(t, "the idle session's presence to end", func() bool {
		es, err := pinger.Who(ctx, "alice")
		return err == nil && len(es) == 0
	})
}

// TestShutdown: sessions are told OUT SSD, signed out, and Serve returns
// ErrServerClosed.
func TestShutdown(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Trust{}, nil)
	alice := e.signIn("alice", "pts/1")
	if _, err := alice.Watch(ctxT(t), "bob"); err != nil {
		t.Fatal(err)
	}
	pending := e.dial() // connected, never signed in
	if err := e.srv.Shutdown(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if err := waitDone(t, alice); !errors.Is(err, sessionclient.ErrServerShutdown) {
		t.Fatalf("alice ended with %v, want sessionclient.ErrServerShutdown", err)
	}
	waitDone(t, pending)
	if len(e.dir.All()) != 0 {
		t.Fatalf("presence after shutdown: %+v", e.dir.All())
	}
	if err := <-e.serve; !errors.Is(err, ErrServerClosed) {
		t.Fatalf("Serve = %v", err)
	}
	e.serve <- ErrServerClosed // for the cleanup check
	if e.srv.Sessions() != 0 {
		t.Fatalf("%d sessions left", e.srv.Sessions())
	}
}

// TestMaxSessions: past the cap a connection gets 600 and is closed.
func TestMaxSessions(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Trust{}, func(c *Config) { c.MaxSessions = 2 })
	e.signIn("a", "t1")
	e.signIn("b", "t2")
	r := e.raw(t)
	r.expect("600 0 too many sessions")
	r.closed()
}

// TestManySessionsNoLeak signs many sessions in and out and checks that the
// goroutine count returns to where it was.
func TestManySessionsNoLeak(t *testing.T) {
	e := newEnv(t, Trust{}, nil)
	watcher := e.signIn("w", "t")
	ctx := ctxT(t)
	for i := range 10 {
		if _, err := watcher.Watch(ctx, fmt.Sprintf("u%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	go func() { // drain the watcher's events
		for range watcher.Events() {
		}
	}()
	base := runtime.NumGoroutine()
	const n = 40
	for round := range 3 {
		cs := make([]*sessionclient.Client, n)
		for i := range cs {
			cs[i] = e.signIn(fmt.Sprintf("u%d", i%10), fmt.Sprintf("r%d-%d", round, i))
		}
		for i, c := range cs {
			if i%2 == 0 {
				mustNil(t, c.SignOut(ctx))
			} else {
				c.Close()
			}
		}
	}
	waitFor(t, "sessions to end", func() bool { return e.srv.Sessions() == 1 && len(e.dir.All()) == 1 })
	waitFor(t, fmt.Sprintf("goroutines back to %d", base), func() bool { return runtime.NumGoroutine() <= base })
}

// TestClientConcurrentUse: one sessionclient.Client used from many goroutines; replies
// are matched by TrID and every message arrives once.
func TestClientConcurrentUse(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Trust{}, nil)
	alice := e.signIn("alice", "pts/1")
	const workers, rounds = 8, 25
	got := make(chan string, workers*rounds)
	go func() {
		for m := range alice.Messages() {
			got <- m.Text
		}
	}()
	ctx := ctxT(t)
	errs := make(chan error, workers)
	for w := range workers {
		go func() {
			for i := range rounds {
				text := fmt.Sprintf("w%d-%d", w, i)
				if ok, summary, err := alice.Send(ctx, "alice", "pts/1", text); err != nil || !ok {
					errs <- fmt.Errorf("Send %s = %v %q %v", text, ok, summary, err)
					return
				}
				if es, err := alice.Who(ctx, "alice"); err != nil || len(es) != 1 {
					errs <- fmt.Errorf("Who = %v %v", es, err)
					return
				}
				if _, err := alice.Ping(ctx); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range workers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	seen := map[string]bool{}
	for range workers * rounds {
		select {
		case s := <-got:
			if seen[s] {
				t.Fatalf("%s delivered twice", s)
			}
			seen[s] = true
		case <-time.After(5 * time.Second):
			t.Fatalf("only %d of %d messages arrived", len(seen), workers*rounds)
		}
	}
}

// TestNewValidates checks the Config rules.
func TestNewValidates(t *testing.T) {
	dir, err := presence.New(presence.Config{Name: "n1", Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close()
	sb, err := switchboard.New(switchboard.Config{Directory: dir, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		cfg  Config
		err  string
	}{
		{"no switchboard", Config{Directory: dir}, "Config.Switchboard is required"},
		{"no directory", Config{Switchboard: sb}, "Config.Directory is required"},
		{"wrong node", Config{Switchboard: sb, Directory: dir, Node: "n2"}, `node "n2" does not match`},
		{"list cap too large", Config{Switchboard: sb, Directory: dir, MaxList: 513}, "MaxList 513 over the limit of 512"},
		{"valid", Config{Switchboard: sb, Directory: dir}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv, err := New(tc.cfg)
			if tc.err == "" {
				if err != nil {
					t.Fatal(err)
				}
				if srv.cfg.IdleTimeout != DefaultIdleTimeout || srv.cfg.OutQueue != DefaultOutQueue || srv.cfg.Node != "n1" {
					t.Fatalf("defaults not applied: %+v", srv.cfg)
				}
				mustNil(t, srv.Close())
				if err := srv.Serve(newPipeListener(), Trust{}); !errors.Is(err, ErrServerClosed) {
					t.Fatalf("Serve after Close = %v, want ErrServerClosed", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("New = %v, want %q", err, tc.err)
			}
		})
	}
}
