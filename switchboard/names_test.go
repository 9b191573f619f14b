package switchboard_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/msprelay/msprelay/identity"
	"github.com/msprelay/msprelay/internal/testcluster"
	"github.com/msprelay/msprelay/presence"
	"github.com/msprelay/msprelay/principal"
	"github.com/msprelay/msprelay/switchboard"
)

// newBoardWith is newBoard with a configuration the test adjusts.
func newBoardWith(t *testing.T, node string, adjust func(*switchboard.Config)) *board {
	t.Helper()
	clock := testcluster.NewClock()
	dir, err := presence.New(presence.Config{Name: node, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	cfg := switchboard.Config{Directory: dir, Now: clock.Now}
	adjust(&cfg)
	sb, err := switchboard.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sb.Close(); dir.Close() })
	return &board{Switchboard: sb, dir: dir, clock: clock}
}

// TestAliasRules: issue 12, "an alias may not be a known user's name or a
// reserved name (root, postmaster, console, ... documented)", and the
// refusal of a hidden user's name reads exactly like an online one's,
// without saying who holds it.
func TestAliasRules(t *testing.T) {
	t.Parallel()
	sb := newBoard(t, "n1")
	setup(t, sb, []signin{
		{user: "bob", term: "tty1"},
		{user: "carol", term: "pts/9", state: principal.Hidden},
		{user: "dave", term: "pts/4", aliases: []string{"helpdesk"}},
		{user: "erin", term: "pts/5", state: principal.Hidden, aliases: []string{"printers"}},
	})
	l, err := sb.SignIn("alice", "pts/1", principal.Online, &inbox{})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		rule    string
		name    string
		want    error  // nil: allowed
		wantMsg string // the whole error text, when refused
	}{
		{"a reserved name is refused", "root", switchboard.ErrNameReserved, "root: name is reserved"},
		{"reserved names compare case-insensitively", "PostMaster", switchboard.ErrNameReserved, "postmaster: name is reserved"},
		{"the console is reserved", "console", switchboard.ErrNameReserved, "console: name is reserved"},
		{"an online user's name is refused", "BOB", switchboard.ErrNameTaken, "bob: name in use (a user's name)"},
		{"a hidden user's name is refused in the same words", "carol", switchboard.ErrNameTaken, "carol: name in use (a user's name)"},
		{"another user's alias is refused without naming her", "helpdesk", switchboard.ErrNameTaken, "helpdesk: name in use (another user's alias)"},
		{"a hidden user's alias is refused in the same words", "printers", switchboard.ErrNameTaken, "printers: name in use (another user's alias)"},
		{"a free name is allowed", "oncall", nil, ""},
		{"her own name is allowed", "alice", nil, ""},
	}
	for _, tc := range cases {
		err := l.SetAliases([]string{tc.name})
		switch {
		case tc.want == nil && err != nil:
			t.Errorf("%s: SetAliases(%s) = %v, want nil", tc.rule, tc.name, err)
		case tc.want != nil && (!errors.Is(err, tc.want) || err.Error() != tc.wantMsg):
			t.Errorf("%s: SetAliases(%s) = %v, want %q", tc.rule, tc.name, err, tc.wantMsg)
		}
	}
	for _, n := range switchboard.ReservedNames() {
		if err := l.SetAliases([]string{n}); !errors.Is(err, switchboard.ErrNameReserved) {
			t.Errorf("reserved %s: SetAliases = %v", n, err)
		}
	}
}

// TestUserNameWinsOverAlias: issue 12, "a user name always wins over an
// alias in routing": dave took "erin" as an alias before erin signed in;
// once she is here, a message to erin reaches her, not dave.
func TestUserNameWinsOverAlias(t *testing.T) {
	t.Parallel()
	sb := newBoard(t, "n1")
	boxes := setup(t, sb, []signin{{user: "dave", term: "pts/4", aliases: []string{"erin"}}})
	o := sb.Send(context.Background(), &switchboard.Delivery{Recipient: "erin", Sender: "bob", Text: "before"})
	if !o.Delivered() || len(boxes["dave/pts/4"].texts()) != 1 {
		t.Fatalf("alias before erin exists: %s", o.Summary())
	}
	erin := &inbox{}
	if _, err := sb.SignIn("erin", "pts/5", principal.Online, erin); err != nil {
		t.Fatal(err)
	}
	for _, term := range []string{"", "*"} {
		o = sb.Send(context.Background(), &switchboard.Delivery{Recipient: "erin", RecipTerm: term, Sender: "bob", Text: "after " + term})
		if !o.Delivered() || !strings.Contains(o.Summary(), "delivered to erin at pts/5") {
			t.Errorf("to erin %q: %s", term, o.Summary())
		}
	}
	if got := boxes["dave/pts/4"].texts(); len(got) != 1 {
		t.Errorf("dave's alias got erin's mail after she signed in: %q", got)
	}
	if got := erin.texts(); len(got) != 2 {
		t.Errorf("erin got %q, want two messages", got)
	}
}

// TestAliasesReleasedAtSignOut: "aliases are released when their holder
// signs out".
func TestAliasesReleasedAtSignOut(t *testing.T) {
	t.Parallel()
	sb := newBoard(t, "n1")
	l, err := sb.SignIn("dave", "pts/4", principal.Online, &inbox{})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.SetAliases([]string{"helpdesk"}); err != nil {
		t.Fatal(err)
	}
	l.SignOut()
	if es := sb.dir.Lookup("helpdesk"); len(es) != 0 {
		t.Fatalf("helpdesk after sign-out: %+v", es)
	}
	a, err := sb.SignIn("alice", "pts/1", principal.Online, &inbox{})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.SetAliases([]string{"helpdesk"}); err != nil {
		t.Fatalf("released alias not free: %v", err)
	}
}

// TestConsoleIsRoots: issue 12, "terminal console is root's (or a
// configured group's) only".
func TestConsoleIsRoots(t *testing.T) {
	t.Parallel()
	cases := []struct {
		rule    string
		allowed func(string) bool
		user    string
		term    string
		wantErr bool
	}{
		{"root may sign in at the console", nil, "root", "console", false},
		{"a user may not", nil, "mallory", "console", true},
		{"nor in another case", nil, "mallory", "Console", true},
		{"any user may use other terminals", nil, "mallory", "pts/1", false},
		{"a configured group's member may", func(u string) bool { return u == "op" }, "op", "console", false},
		{"a non-member still may not", func(u string) bool { return u == "op" }, "mallory", "console", true},
	}
	for _, tc := range cases {
		t.Run(tc.rule, func(t *testing.T) {
			t.Parallel()
			sb := newBoardWith(t, "n1", func(c *switchboard.Config) { c.ConsoleAllowed = tc.allowed })
			if _, err := sb.SignIn(tc.user, tc.term, principal.Online, &ttyBox{}); err != nil {
				t.Fatalf("host login %s at %s: %v (the host says where its logins are)", tc.user, tc.term, err)
			}
			_, err := sb.SignIn(tc.user, tc.term+"-session", principal.Online, &inbox{})
			if err != nil {
				t.Fatal(err)
			}
			_, err = sb.SignIn(tc.user, tc.term, principal.Online, &inbox{})
			if tc.wantErr != errors.Is(err, switchboard.ErrConsoleOnly) || (!tc.wantErr && err != nil) {
				t.Fatalf("SignIn(%s, %s) = %v, want refused: %v", tc.user, tc.term, err, tc.wantErr)
			}
			if es := sb.dir.Lookup(tc.user); tc.wantErr && (len(es) != 2 || es[0].Kind == es[1].Kind) {
				t.Fatalf("refused sign-in changed presence: %+v", es)
			}
		})
	}
}

// TestHiddenSelfSeesOwnTerminals: a hidden terminal is offline to others,
// but its own user, authenticated, still reaches it (she sees it in WHO).
func TestHiddenSelfSeesOwnTerminals(t *testing.T) {
	t.Parallel()
	sb := newBoard(t, "n1")
	boxes := setup(t, sb, []signin{{user: "alice", term: "pts/1", state: principal.Hidden}})
	forged := sb.Send(context.Background(), &switchboard.Delivery{Recipient: "alice", RecipTerm: "pts/1", Sender: "alice", Text: "forged"})
	if forged.Delivered() {
		t.Fatalf("unverified sender named alice reached her hidden terminal: %s", forged.Summary())
	}
	o := sb.Send(context.Background(), &switchboard.Delivery{Recipient: "alice", RecipTerm: "pts/1", Sender: "alice", Text: "note",
		Origin: switchboard.Origin{Sender: identity.Identity{User: "alice", Claimed: "alice", Method: identity.PeerCred, Node: "n1", Source: "session"}}})
	if !o.Delivered() || len(boxes["alice/pts/1"].texts()) != 1 {
		t.Fatalf("alice to her own hidden terminal: %s", o.Summary())
	}
}

// TestInboundRateNoMailbox: issue 12, "a per-session inbound rate ...":
// without a mailbox the excess is refused with a reason.
func TestInboundRateNoMailbox(t *testing.T) {
	t.Parallel()
	const burst = 3
	sb := newBoardWith(t, "n1", func(c *switchboard.Config) { c.InboundRate, c.InboundBurst = 0.001, burst })
	boxes := setup(t, sb, []signin{{user: "alice", term: "pts/1"}})
	for i := range burst + 2 {
		o := sb.Send(context.Background(), &switchboard.Delivery{Recipient: "alice", RecipTerm: "pts/1", Sender: "bob", Text: fmt.Sprint(i), Cookie: fmt.Sprint(i)})
		want := i < burst
		if o.Delivered() != want {
			t.Fatalf("message %d: %s, want delivered=%v", i, o.Summary(), want)
		}
		if !want && !strings.Contains(o.Summary(), "over the inbound rate") {
			t.Fatalf("message %d refused without the reason: %s", i, o.Summary())
		}
	}
	if got := boxes["alice/pts/1"].texts(); len(got) != burst {
		t.Fatalf("terminal got %d messages, want %d", len(got), burst)
	}
	off := newBoardWith(t, "n1", func(c *switchboard.Config) { c.InboundRate = -1 })
	setup(t, off, []signin{{user: "alice", term: "pts/1"}})
	for i := range 3 * switchboard.DefaultInboundBurst {
		if o := off.Send(context.Background(), &switchboard.Delivery{Recipient: "alice", RecipTerm: "pts/1", Text: fmt.Sprint(i), Cookie: fmt.Sprint(i)}); !o.Delivered() {
			t.Fatalf("no limit: message %d: %s", i, o.Summary())
		}
	}
}

// ttyBox is a host login's terminal (switchboard.LoginTerminal).
type ttyBox struct{ inbox }

func (*ttyBox) Kind() principal.Kind  { return principal.KindTTY }
func (*ttyBox) DeliveredNote() string { return "terminal" }
func (*ttyBox) BusyReason() string    { return "mesg n" }
