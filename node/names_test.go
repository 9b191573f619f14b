package node_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/msprelay/msprelay/internal/testcluster"
	"github.com/msprelay/msprelay/msp"
	"github.com/msprelay/msprelay/node"
	"github.com/msprelay/msprelay/principal"
	"github.com/msprelay/msprelay/sessionclient"
	"github.com/msprelay/msprelay/sessionproto"
)

// waitSignedOut signs cl out and waits until the cluster's known-users
// store records it.
func waitSignedOut(t *testing.T, c *testcluster.Cluster, cl *sessionclient.Client, user string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := cl.SignOut(ctx); err != nil {
		t.Fatal(err)
	}
	testcluster.WaitFor(t, 10*time.Second, user+"'s sign-out recorded", func() bool {
		s, err := c.Node(0).Switchboard().LastSeen(context.Background(), user)
		return err == nil && s.State == principal.Offline.String()
	})
}

// nextIs fails unless cl's next message has text want: what came before
// it would have been a message that must not have arrived.
func nextIs(t *testing.T, cl *sessionclient.Client, want string) {
	t.Helper()
	if m := testcluster.NextMessage(t, cl, 10*time.Second); m.Text != want {
		t.Fatalf("next message %q, want %q", m.Text, want)
	}
}

func sessionErr(err error) string {
	var se *sessionproto.Error
	if errors.As(err, &se) {
		return fmt.Sprintf("%d %s", se.Code, se.Text)
	}
	return fmt.Sprint(err)
}

// TestNamesBelongToPeople: issue 12, "Any local user can claim another
// known user's name (or root, postmaster) as an alias while she is offline
// and then receives her mail, even after she signs in." Aliases of known
// users (known from the mailbox's records, cluster-wide) and reserved
// names are refused; a user name always wins over an alias claimed before
// she was ever seen; aliases are released cluster-wide at sign-out.
func TestNamesBelongToPeople(t *testing.T) {
	t.Parallel()
	c := testcluster.Start(t, 2, testcluster.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	waitSignedOut(t, c, c.SignIn(1, "alice", "pts/1", principal.Online), "alice")
	mallory := c.SignIn(0, "mallory", "pts/6", principal.Online)

	if err := mallory.AddName(ctx, "alice"); !sessionproto.IsCode(err, sessionproto.CodeNameTaken) || sessionErr(err) != "209 alice: name in use (a user's name)" {
		t.Fatalf("alias of offline known alice: %v", sessionErr(err))
	}
	for _, n := range []string{"root", "postmaster", "Console"} {
		if err := mallory.AddName(ctx, n); !sessionproto.IsCode(err, sessionproto.CodeNameReserved) {
			t.Errorf("alias %s: %v, want %d", n, sessionErr(err), sessionproto.CodeNameReserved)
		}
	}
	// Erin was never seen: mallory may take her name, until erin arrives.
	if err := mallory.AddName(ctx, "erin"); err != nil {
		t.Fatal(err)
	}
	c.WaitPresent("mallory", "pts/6", "n1", true)
	erin := c.SignIn(1, "erin", "pts/2", principal.Online)
	c.WaitPresent("erin", "pts/2", "n2", true)
	for i, term := range []string{"", "*"} {
		r, err := c.Send(0, "tcp", &msp.Message{Version: msp.Version2, Recipient: "erin", RecipTerm: term, Sender: "bob", Cookie: fmt.Sprint("live", i), Text: "for erin " + term})
		if err != nil || !r.OK || r.Text != "delivered to erin at pts/2 on n2" {
			t.Fatalf("to erin %q: %+v %v", term, r, err)
		}
		nextIs(t, erin, "for erin "+term)
	}
	// Once she has been seen, her mail is hers while she is away too.
	waitSignedOut(t, c, erin, "erin")
	c.WaitPresent("erin", "pts/2", "n2", false)
	r, err := c.Send(0, "tcp", &msp.Message{Version: msp.Version2, Recipient: "erin", Sender: "bob", Cookie: "away", Text: "while away"})
	if err != nil || !r.OK || r.Text != "queued for erin" {
		t.Fatalf("to erin away: %+v %v", r, err)
	}
	r, err = c.Send(0, "tcp", &msp.Message{Version: msp.Version2, Recipient: "mallory", Sender: "bob", Cookie: "marker", Text: "marker"})
	if err != nil || !r.OK {
		t.Fatalf("marker: %+v %v", r, err)
	}
	nextIs(t, mallory, "marker") // none of erin's mail came first
	if es, err := mallory.Who(ctx, "erin"); err != nil || len(es) != 1 || es[0].User != "erin" || es[0].State != principal.Offline {
		t.Fatalf("who erin = %+v %v: want erin offline, not mallory's alias", es, err)
	}

	// Aliases end with the line, on every node.
	if err := mallory.AddName(ctx, "helpdesk"); err != nil {
		t.Fatal(err)
	}
	testcluster.WaitFor(t, 20*time.Second, "helpdesk known on n2", func() bool { return len(c.Node(1).Directory().Lookup("helpdesk")) == 1 })
	bob := c.SignIn(1, "bob", "tty1", principal.Online)
	if err := bob.AddName(ctx, "helpdesk"); !sessionproto.IsCode(err, sessionproto.CodeNameTaken) || strings.Contains(sessionErr(err), "mallory") {
		t.Fatalf("bob takes mallory's alias: %v", sessionErr(err))
	}
	if err := mallory.SignOut(ctx); err != nil {
		t.Fatal(err)
	}
	testcluster.WaitFor(t, 20*time.Second, "helpdesk released on every node", func() bool {
		return len(c.Node(0).Directory().Lookup("helpdesk")) == 0 && len(c.Node(1).Directory().Lookup("helpdesk")) == 0
	})
	if err := bob.AddName(ctx, "helpdesk"); err != nil {
		t.Fatalf("released alias: %v", err)
	}
}

// TestHiddenLooksOffline: issue 12, "hidden users must be indistinguishable
// from offline ones in every reply, error and summary", and nothing sent
// to a hidden user is lost: it waits in her mailbox, which hands it to
// her hidden terminal.
func TestHiddenLooksOffline(t *testing.T) {
	t.Parallel()
	c := testcluster.Start(t, 2, testcluster.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	waitSignedOut(t, c, c.SignIn(1, "dave", "pts/3", principal.Online), "dave")
	// carol was seen once (a hidden sign-in alone records no time:
	// issue 18, "Hidden looks offline in every field").
	waitSignedOut(t, c, c.SignIn(1, "carol", "pts/9", principal.Online), "carol")
	carol := c.SignIn(1, "carol", "pts/9", principal.Hidden)
	c.WaitPresent("carol", "pts/9", "n2", true)
	same := func(what, hidden, offline string) {
		t.Helper()
		if hidden != strings.ReplaceAll(offline, "dave", "carol") {
			t.Errorf("%s: hidden carol gets %q, offline dave %q", what, hidden, offline)
		}
	}
	send := func(to, term, text string) msp.Reply {
		t.Helper()
		r, err := c.Send(0, "tcp", &msp.Message{Version: msp.Version2, Recipient: to, RecipTerm: term, Sender: "bob", Cookie: to + text, Text: text})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	for i, term := range []string{"pts/1", "pts/9", "", "*"} {
		h, o := send("carol", term, fmt.Sprint("probe", i)), send("dave", term, fmt.Sprint("probe", i))
		if !h.OK || !o.OK {
			t.Errorf("probe %q: carol %+v, dave %+v: want both queued", term, h, o)
		}
		same("MSP probe "+term, h.Text, o.Text)
		nextIs(t, carol, fmt.Sprint("probe", i)) // from her mailbox, to her hidden terminal
	}

	mallory := c.SignIn(0, "mallory", "pts/6", principal.Online)
	same("NAM ADD", sessionErr(mallory.AddName(ctx, "carol")), sessionErr(mallory.AddName(ctx, "dave")))

	hw, err := mallory.Who(ctx, "carol")
	if err != nil {
		t.Fatal(err)
	}
	ow, err := mallory.Who(ctx, "dave")
	if err != nil || len(hw) != 1 || len(ow) != 1 || hw[0].State != principal.Offline || ow[0].State != principal.Offline {
		t.Fatalf("who: carol %+v, dave %+v %v: want one offline line each", hw, ow, err)
	}
	if all, err := mallory.Who(ctx, ""); err != nil || len(all) != 1 {
		t.Fatalf("who all = %+v %v: want mallory only", all, err)
	}

	// A * summary names only the terminals one may see.
	a1 := c.SignIn(0, "alice", "pts/1", principal.Online)
	c.SignIn(1, "alice", "pts/2", principal.Hidden)
	c.WaitPresent("alice", "pts/2", "n2", true)
	if r := send("alice", "*", "all"); !r.OK || r.Text != "delivered to alice at pts/1 on n1" {
		t.Fatalf("* to alice with a hidden terminal: %+v", r)
	}
	nextIs(t, a1, "all")
	if r := send("@n2", "*", "everyone on n2"); r.OK || r.Text != "@n2: not signed in" {
		t.Fatalf("* to all of n2 (only hidden terminals there): %+v", r)
	}
}

// TestInboundRateQueuesExcess: issue 12, "3000 messages in 0.3 s pushed
// into one live session" -> "a per-session inbound rate with the excess
// queued to the mailbox, not dropped".
func TestInboundRateQueuesExcess(t *testing.T) {
	t.Parallel()
	const rate, burst, total, senders = 10, 5, 40, 8
	c := testcluster.Start(t, 2, testcluster.Options{Configure: func(_ int, cfg *node.Config) {
		cfg.SessionInboundRate, cfg.SessionInboundBurst = rate, burst
	}})
	alice := c.SignIn(1, "alice", "pts/1", principal.Online)
	c.WaitPresent("alice", "pts/1", "n2", true)
	var (
		mu      sync.Mutex
		replies []msp.Reply
		wg      sync.WaitGroup
	)
	start := time.Now()
	for s := range senders {
		wg.Go(func() {
			for i := s; i < total; i += senders {
				r, err := c.Send(0, "tcp", &msp.Message{Version: msp.Version2, Recipient: "alice", Sender: "bob", Cookie: fmt.Sprint("m", i), Text: fmt.Sprint("m", i)})
				if err != nil {
					t.Errorf("send m%d: %v", i, err)
					return
				}
				mu.Lock()
				replies = append(replies, r)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	took := time.Since(start)
	delivered, queued := 0, 0
	for _, r := range replies {
		switch {
		case !r.OK:
			t.Errorf("refused: %+v", r)
		case r.Text == "delivered to alice at pts/1 on n2":
			delivered++
		case r.Text == "queued for alice (pts/1@n2 over the inbound rate)":
			queued++
		default:
			t.Errorf("reply %q", r.Text)
		}
	}
	t.Logf("%d sends in %v: %d delivered live, %d queued over the rate", len(replies), took.Round(time.Millisecond), delivered, queued)
	if maxLive := burst + int(took.Seconds()*rate) + 1; delivered > maxLive {
		t.Errorf("%d delivered live in %v, over the rate's %d", delivered, took, maxLive)
	}
	if took < time.Duration(total-burst)*time.Second/rate/2 && queued == 0 {
		t.Errorf("a burst of %d in %v queued nothing", total, took)
	}
	got := map[string]bool{}
	deadline := time.Now().Add(time.Duration(total/rate+20) * time.Second)
	for len(got) < delivered+2 {
		got[testcluster.NextMessage(t, alice, time.Until(deadline)).Text] = true
	}
	// Her mailbox is being drained at the rate (two queued messages came):
	// it leaves room for a live message, which is delivered, not queued
	// behind the backlog.
	if queued > 3 {
		r, err := c.Send(0, "tcp", &msp.Message{Version: msp.Version2, Recipient: "alice", Sender: "bob", Cookie: "live", Text: "live"})
		if err != nil || r.Text != "delivered to alice at pts/1 on n2" {
			t.Errorf("live message while her backlog drains: %+v %v", r, err)
		}
	}
	for len(got) < total+1 && time.Now().Before(deadline) {
		got[testcluster.NextMessage(t, alice, time.Until(deadline)).Text] = true
	}
	delete(got, "live")
	if len(got) != total {
		t.Fatalf("alice got %d distinct messages, want %d", len(got), total)
	}
}

// TestConsoleGroup: "--console-group" names a group that does not exist:
// the node refuses the configuration.
func TestConsoleGroupMustExist(t *testing.T) {
	t.Parallel()
	cfg := node.DefaultConfig()
	cfg.DataDir = t.TempDir()
	cfg.ConsoleGroup = "no-such-group-msprelay"
	if _, err := node.New(cfg); !errors.Is(err, node.ErrConfig) {
		t.Fatalf("New = %v, want ErrConfig", err)
	}
}

// TestHiddenNotRung: a conversation invitation (CAL) to a hidden user
// gets the answer an offline user's gets, 217, and does not ring her.
func TestHiddenNotRung(t *testing.T) {
	t.Parallel()
	c := testcluster.Start(t, 2, testcluster.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c.SignIn(1, "carol", "pts/9", principal.Hidden)
	c.WaitPresent("carol", "pts/9", "n2", true)
	mallory := c.SignIn(0, "mallory", "pts/6", principal.Online)
	name, _, err := mallory.Join(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	hidden, offline := mallory.Invite(ctx, name, "carol"), mallory.Invite(ctx, name, "dave")
	if !sessionproto.IsCode(hidden, sessionproto.CodeNotOnline) || strings.ReplaceAll(sessionErr(offline), "dave", "carol") != sessionErr(hidden) {
		t.Fatalf("CAL hidden carol: %v; CAL absent dave: %v", sessionErr(hidden), sessionErr(offline))
	}
}
