package switchboard_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/msprelay/msprelay/internal/testcluster"
	"github.com/msprelay/msprelay/presence"
	"github.com/msprelay/msprelay/principal"
	"github.com/msprelay/msprelay/switchboard"
)

// inbox is a Terminal that records what it is handed. It stands in for a
// session at the switchboard's interface boundary; the session package's own
// tests cover real sessions end to end.
type inbox struct {
	name   string
	refuse error
	mu     sync.Mutex
	got    []string
	kicked string
}

func (t *inbox) Deliver(_ context.Context, d *switchboard.Delivery) error {
	if t.refuse != nil {
		return t.refuse
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.got = append(t.got, d.Text)
	return nil
}

func (t *inbox) Kick(reason string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.kicked = reason
}

func (t *inbox) texts() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return slices.Clone(t.got)
}

// board is a single-node switchboard whose clock the test steps.
type board struct {
	*switchboard.Switchboard
	dir   *presence.Directory
	clock *testcluster.Clock
}

func newBoard(t *testing.T, node string) *board {
	t.Helper()
	clock := testcluster.NewClock()
	dir, err := presence.New(presence.Config{Name: node, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	sb, err := switchboard.New(switchboard.Config{Directory: dir, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sb.Close(); dir.Close() })
	return &board{Switchboard: sb, dir: dir, clock: clock}
}

type signin struct {
	user, term string
	state      principal.State
	refuse     error
	aliases    []string
}

// setup signs lines in one at a time with increasing activity, so the last
// one listed is the most recently active.
func setup(t *testing.T, sb *board, ins []signin) map[string]*inbox {
	t.Helper()
	boxes := map[string]*inbox{}
	for _, in := range ins {
		box := &inbox{name: in.user + "/" + in.term, refuse: in.refuse}
		st := in.state
		if st == principal.Offline {
			st = principal.Online
		}
		l, err := sb.SignIn(in.user, in.term, st, box)
		if err != nil {
			t.Fatalf("sign in %s/%s: %v", in.user, in.term, err)
		}
		if len(in.aliases) > 0 {
			if err := l.SetAliases(in.aliases); err != nil {
				t.Fatal(err)
			}
		}
		boxes[box.name] = box
		sb.clock.Step(time.Second) // the next line is more recently active
	}
	return boxes
}

func TestAddressingRules(t *testing.T) {
	t.Parallel()
	std := []signin{
		{user: "alice", term: "pts/1"},
		{user: "alice", term: "pts/2"},
		{user: "bob", term: "tty1"},
		{user: "root", term: "console"},
	}
	cases := []struct {
		name       string // the rule
		ins        []signin
		recip      string
		term       string
		wantOK     bool
		wantGot    []string // boxes that received the message
		wantInText string   // part of the summary
	}{
		{"RECIP-TERM names a terminal: that terminal", std, "alice", "pts/1", true, []string{"alice/pts/1"}, "delivered to alice at pts/1"},
		{"comparisons of parts are case-insensitive", std, "ALICE", "PTS/1", true, []string{"alice/pts/1"}, "delivered"},
		{"RECIP-TERM * means all terminals of the user", std, "alice", "*", true, []string{"alice/pts/1", "alice/pts/2"}, "2 of 2"},
		{"empty RECIP-TERM means the right terminal: most recently active", std, "alice", "", true, []string{"alice/pts/2"}, "pts/2"},
		{"empty RECIPIENT with a terminal: any user on that terminal", std, "", "tty1", true, []string{"bob/tty1"}, "delivered"},
		{"empty RECIPIENT and * means all terminals of the system", std, "", "*", true, []string{"alice/pts/1", "alice/pts/2", "bob/tty1", "root/console"}, "4 of 4"},
		{"both empty: the console", std, "", "", true, []string{"root/console"}, "console"},
		{"no console session refuses", std[:3], "", "", false, nil, "no console"},
		{"user not present refuses", std, "carol", "", false, nil, "carol: not signed in"},
		{"named terminal not present refuses", std, "alice", "pts/9", false, nil, "no such terminal"},
		{"issue 14: empty RECIPIENT and an absent terminal: the reply names the terminal", std, "", "tty9", false, nil, "tty9: no such terminal"},
		{"user@node pins this node", std, "alice@n1", "pts/1", true, []string{"alice/pts/1"}, "delivered"},
		{"user@node on another node finds nothing", std, "alice@n2", "pts/1", false, nil, "not signed in"},
		{"bad node name in address refused", std, "alice@a.b", "", false, nil, "bad address"},
		{"busy terminal refuses", []signin{{user: "alice", term: "pts/1", state: principal.Busy}}, "alice", "pts/1", false, nil, "busy"},
		{"busy most recent terminal is skipped for the right terminal", []signin{{user: "alice", term: "pts/1"}, {user: "alice", term: "pts/2", state: principal.Busy}}, "alice", "", true, []string{"alice/pts/1"}, "pts/1"},
		{"all busy: the most recent refuses", []signin{{user: "alice", term: "pts/1", state: principal.Busy}, {user: "alice", term: "pts/2", state: principal.Busy}}, "alice", "", false, nil, "pts/2 on n1: busy"},
		{"blocked sender refused", []signin{{user: "alice", term: "pts/1", refuse: fmt.Errorf("%w: bob", switchboard.ErrBlocked)}}, "alice", "pts/1", false, nil, "blocked"},
		{"alias name reaches the session holding it", []signin{{user: "alice", term: "pts/1", aliases: []string{"helpdesk"}}}, "HelpDesk", "", true, []string{"alice/pts/1"}, "delivered to alice"},
		{"issue 12: hidden users are indistinguishable from offline ones (no mailbox: not signed in)", []signin{{user: "alice", term: "pts/1", state: principal.Hidden}}, "alice", "", false, nil, "alice: not signed in"},
		{"issue 12: a probe of a hidden user's terminal answers as for an offline user", []signin{{user: "alice", term: "pts/1", state: principal.Hidden}}, "alice", "pts/9", false, nil, "alice: not signed in"},
		{"issue 12: * summaries do not list hidden terminals", []signin{{user: "alice", term: "pts/1"}, {user: "alice", term: "pts/2", state: principal.Hidden}}, "alice", "*", true, []string{"alice/pts/1"}, "delivered to alice at pts/1 on n1"},
		{"issue 12: empty RECIPIENT and * leaves hidden terminals out", []signin{{user: "alice", term: "pts/1"}, {user: "bob", term: "tty1", state: principal.Hidden}}, "", "*", true, []string{"alice/pts/1"}, "delivered to alice at pts/1 on n1"},
		{"issue 12: an alias held only by a hidden user is routed as a released one", []signin{{user: "alice", term: "pts/1", state: principal.Hidden, aliases: []string{"helpdesk"}}}, "helpdesk", "", false, nil, "helpdesk: not signed in"},
		{"star with one busy terminal: partial delivery is still +", []signin{{user: "alice", term: "pts/1"}, {user: "alice", term: "pts/2", state: principal.Busy}}, "alice", "*", true, []string{"alice/pts/1"}, "not: pts/2@n1 busy"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			sb := newBoard(t, "n1")
			boxes := setup(t, sb, tc.ins)
			o := sb.Send(context.Background(), &switchboard.Delivery{Recipient: tc.recip, RecipTerm: tc.term, Sender: "bob", Text: "hi"})
			if o.Delivered() != tc.wantOK {
				t.Fatalf("Delivered() = %v, want %v (%s)", o.Delivered(), tc.wantOK, o.Summary())
			}
			if !strings.Contains(o.Summary(), tc.wantInText) {
				t.Errorf("Summary() = %q, want it to contain %q", o.Summary(), tc.wantInText)
			}
			var got []string
			for name, b := range boxes {
				if len(b.texts()) > 0 {
					got = append(got, name)
				}
			}
			slices.Sort(got)
			if !slices.Equal(got, tc.wantGot) {
				t.Errorf("received by %v, want %v", got, tc.wantGot)
			}
		})
	}
}

func TestSignInAgainKicksOldLine(t *testing.T) {
	t.Parallel()
	sb := newBoard(t, "n1")
	dir := sb.dir
	old := &inbox{}
	l1, err := sb.SignIn("alice", "pts/1", principal.Online, old)
	if err != nil {
		t.Fatal(err)
	}
	nw := &inbox{}
	if _, err := sb.SignIn("Alice", "pts/1", principal.Away, nw); err != nil {
		t.Fatal(err)
	}
	if old.kicked == "" {
		t.Fatal("old line not kicked")
	}
	l1.SignOut() // the old session closing must not remove the new line's presence
	es := dir.Lookup("alice")
	if len(es) != 1 || es[0].State != principal.Away {
		t.Fatalf("after old sign-out lookup = %+v, want one away entry", es)
	}
	o := sb.Send(context.Background(), &switchboard.Delivery{Recipient: "alice", RecipTerm: "pts/1", Text: "x"})
	if !o.Delivered() || len(nw.texts()) != 1 || len(old.texts()) != 0 {
		t.Fatalf("delivery went to wrong line: %s new=%v old=%v", o.Summary(), nw.texts(), old.texts())
	}
}

func TestSignOutEndsPresence(t *testing.T) {
	t.Parallel()
	sb := newBoard(t, "n1")
	dir := sb.dir
	l, err := sb.SignIn("alice", "pts/1", principal.Online, &inbox{})
	if err != nil {
		t.Fatal(err)
	}
	l.SignOut()
	l.SignOut() // idempotent
	if es := dir.Lookup("alice"); len(es) != 0 {
		t.Fatalf("lookup after sign-out = %+v", es)
	}
	if err := l.SetState(principal.Busy); !errors.Is(err, switchboard.ErrSignedOut) {
		t.Fatalf("SetState after sign-out = %v", err)
	}
}

func TestAliasTakenByAnotherUser(t *testing.T) {
	t.Parallel()
	sb := newBoard(t, "n1")
	if _, err := sb.SignIn("bob", "tty1", principal.Online, &inbox{}); err != nil {
		t.Fatal(err)
	}
	l, err := sb.SignIn("alice", "pts/1", principal.Online, &inbox{})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.SetAliases([]string{"BOB"}); !errors.Is(err, switchboard.ErrNameTaken) {
		t.Fatalf("alias of another user's name: err = %v, want ErrNameTaken", err)
	}
	if err := l.SetAliases([]string{"helpdesk"}); err != nil {
		t.Fatal(err)
	}
}

func TestMessageIDStableAcrossRetransmission(t *testing.T) {
	t.Parallel()
	a := switchboard.MessageID("Bob", "tty1", "C1", "127.0.0.1:5000")
	b := switchboard.MessageID("bob", "TTY1", "c1", "127.0.0.1:5000")
	c := switchboard.MessageID("bob", "tty1", "c2", "127.0.0.1:5000")
	if a != b || a == c || len(a) != 24 {
		t.Fatalf("ids: %q %q %q", a, b, c)
	}
}

// A node delivers one message id to a user once: a repeat is answered from
// memory. RFC 1312's COOKIE is what tells messages apart; when a sender
// leaves it empty, the text and address must, or the second of two
// messages on one connection would be taken for a repeat.
func TestRepeatsDeliveredOnce(t *testing.T) {
	t.Parallel()
	sb := newBoard(t, "n1")
	box := setup(t, sb, []signin{{user: "alice", term: "pts/1"}})["alice/pts/1"]
	mk := func(cookie, text string) *switchboard.Delivery {
		return &switchboard.Delivery{Recipient: "alice", Sender: "bob", SenderTerm: "tty1", Cookie: cookie, Text: text,
			Origin: switchboard.Origin{Addr: "192.0.2.1:9"}}
	}
	for _, tc := range []struct {
		d    *switchboard.Delivery
		want string
	}{
		{mk("c1", "hello"), "delivered to alice at pts/1 on n1"},
		{mk("c1", "hello"), "delivered to alice at pts/1 on n1 (already delivered)"},
		{mk("", "one"), "delivered to alice at pts/1 on n1"},
		{mk("", "two"), "delivered to alice at pts/1 on n1"},
		{mk("", "two"), "delivered to alice at pts/1 on n1 (already delivered)"},
	} {
		o := sb.Send(context.Background(), tc.d)
		if !o.Delivered() || o.Summary() != tc.want {
			t.Fatalf("cookie %q text %q: %v %q, want %q", tc.d.Cookie, tc.d.Text, o.Delivered(), o.Summary(), tc.want)
		}
	}
	if got := box.texts(); !slices.Equal(got, []string{"hello", "one", "two"}) {
		t.Fatalf("delivered %q, want each message once", got)
	}
}

// "All comparisons of parts ... are case-insensitive" over ISO 8859-1
// octets: distinct 8-bit names stay distinct, Latin-1 capitals fold.
func TestLatin1PartsCompareOctetByOctet(t *testing.T) {
	t.Parallel()
	if a, b := switchboard.MessageID("Ren\xe9", "", "c1", "h"), switchboard.MessageID("Ren\xea", "", "c1", "h"); a == b {
		t.Errorf("senders Ren\\xe9 and Ren\\xea share message id %s: one would be dropped as a repeat", a)
	}
	if a, b := switchboard.MessageID("REN\xc9", "", "c1", "h"), switchboard.MessageID("ren\xe9", "", "c1", "h"); a != b {
		t.Errorf("RENÉ and rené differ: %s %s", a, b)
	}
	sb := newBoard(t, "n1")
	boxes := setup(t, sb, []signin{{user: "alice", term: "tty\xe0"}, {user: "alice", term: "tty\xe1"}})
	o := sb.Send(context.Background(), &switchboard.Delivery{Recipient: "alice", RecipTerm: "TTY\xc1", Text: "x"})
	if !o.Delivered() || len(boxes["alice/tty\xe1"].texts()) != 1 || len(boxes["alice/tty\xe0"].texts()) != 0 {
		t.Fatalf("RECIP-TERM TTY\\xc1 reached the wrong terminal(s): %s", o.Summary())
	}
}

// silent is an AckTerminal whose client says it acknowledges messages and
// never does.
type silent struct{ inbox }

func (s *silent) DeliverAcked(ctx context.Context, d *switchboard.Delivery, _ chan<- error) (bool, error) {
	return true, s.Deliver(ctx, d)
}

// "delivered" means acknowledged: a client that promises acknowledgements
// and stays silent has AckTimeout, then the message counts as not taken
// (without a mailbox to go back to, it failed). The test only waits on
// time, so it runs in a synctest bubble: an hour of AckTimeout passes at
// once, and exactly.
func TestSilentClientTimesOutAfterAckTimeout(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		dir, err := presence.New(presence.Config{Name: "n1", Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		defer dir.Close()
		const ackTimeout = time.Hour
		sb, err := switchboard.New(switchboard.Config{Directory: dir, AckTimeout: ackTimeout, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		defer sb.Close()
		box := &silent{}
		if _, err := sb.SignIn("alice", "pts/1", principal.Online, box); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		o := sb.Send(context.Background(), &switchboard.Delivery{ID: "m1", Recipient: "alice", Text: "hello?"})
		if waited := time.Since(start); waited != ackTimeout {
			t.Errorf("waited %v for the acknowledgement, want AckTimeout %v", waited, ackTimeout)
		}
		if o.Delivered() || len(o.Results) != 1 || !errors.Is(o.Results[0].Err, switchboard.ErrNotAcked) {
			t.Fatalf("outcome %q (%+v), want not delivered: not acknowledged", o.Summary(), o.Results)
		}
		if got := box.texts(); !slices.Equal(got, []string{"hello?"}) {
			t.Fatalf("the terminal got %q, want the message pushed once", got)
		}
	})
}
