package mailbox_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/msprelay/msprelay/broker"
	"github.com/msprelay/msprelay/internal/testcluster"
	"github.com/msprelay/msprelay/internal/waitfor"
	"github.com/msprelay/msprelay/mailbox"
	"github.com/msprelay/msprelay/presence"
	"github.com/msprelay/msprelay/principal"
	"github.com/msprelay/msprelay/switchboard"
)

// store is one real nats-server with JetStream on 127.0.0.1:0, the shared
// store of the boards a test builds on it.
type store struct {
	t   *testing.T
	b   *broker.Broker
	url string
}

func newStore(t *testing.T) *store {
	t.Helper()
	b, err := broker.New(broker.Config{Name: "store", Listen: "127.0.0.1:0", JetStream: true, DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return &store{t: t, b: b, url: b.ClientURL()}
}

// jetStream is a JetStream handle on a connection of the test's own to the
// store, closed when the test ends: for what a test does to the store
// behind the nodes' backs (an earlier version's layout, a census).
func (st *store) jetStream(t *testing.T) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(st.url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// board builds a node's switchboard and mailbox named node on the store,
// with its own presence directory (no gossip: boards of one test do not
// see each other's lines, which is exactly the view of a node that has not
// heard of a sign-in yet). tweak may adjust either config.
func (st *store) board(node string, tweak func(*switchboard.Config, *mailbox.Config)) *switchboard.Switchboard {
	st.t.Helper()
	sb, _ := st.boardBox(node, tweak)
	return sb
}

// boardBox is board that also returns the node's mailbox.
func (st *store) boardBox(node string, tweak func(*switchboard.Config, *mailbox.Config)) (*switchboard.Switchboard, *mailbox.Mailbox) {
	st.t.Helper()
	dir, err := presence.New(presence.Config{Name: node, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		st.t.Fatal(err)
	}
	nc, err := nats.Connect(st.url, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		st.t.Fatal(err)
	}
	mcfg := mailbox.Config{NATS: nc, Node: node, Logger: slog.New(slog.DiscardHandler),
		PollEvery: 200 * time.Millisecond, AckWait: 2 * time.Second, StoreTimeout: time.Second}
	cfg := switchboard.Config{Directory: dir, NATS: nc, Logger: slog.New(slog.DiscardHandler),
		ForwardTimeout: time.Second, AckTimeout: 300 * time.Millisecond, StoreTimeout: time.Second}
	if tweak != nil {
		tweak(&cfg, &mcfg)
	}
	mb, err := mailbox.New(mcfg)
	if err != nil {
		st.t.Fatal(err)
	}
	cfg.Mailbox = mb
	sb, err := switchboard.New(cfg)
	if err != nil {
		st.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := mb.Start(ctx); err != nil {
		st.t.Fatal(err)
	}
	if err := sb.Start(ctx); err != nil {
		st.t.Fatal(err)
	}
	// The switchboard first (its Close signs lines out, which the mailbox
	// records), then the mailbox, then what both use.
	st.t.Cleanup(func() { sb.Close(); mb.Close(); dir.Close(); nc.Close() })
	return sb, mb
}

// ackBox is an AckTerminal: a session whose client acknowledges messages
// (ack true: at once; false: never) and that can die.
type ackBox struct {
	ack bool

	mu      sync.Mutex
	got     []*switchboard.Delivery
	waiting map[string]chan<- error
	dead    bool
}

func (b *ackBox) Deliver(ctx context.Context, d *switchboard.Delivery) error {
	_, err := b.DeliverAcked(ctx, d, nil)
	return err
}

func (b *ackBox) DeliverAcked(_ context.Context, d *switchboard.Delivery, done chan<- error) (bool, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.dead {
		return true, switchboard.ErrTerminalGone
	}
	b.got = append(b.got, d)
	switch {
	case done == nil:
	case b.ack:
		go func() { done <- nil }() // the client's ACK arrives later, from its own goroutine
	default:
		if b.waiting == nil {
			b.waiting = map[string]chan<- error{}
		}
		b.waiting[d.ID] = done
	}
	return true, nil
}

func (b *ackBox) Kick(string) {}

// die ends the session: messages awaiting an ACK get none.
func (b *ackBox) die() {
	b.mu.Lock()
	b.dead = true
	w := b.waiting
	b.waiting = nil
	b.mu.Unlock()
	for _, done := range w {
		done <- switchboard.ErrTerminalGone
	}
}

// field lists one field of every delivery the box got, in order.
func (b *ackBox) field(f func(*switchboard.Delivery) string) []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]string, len(b.got))
	for i, d := range b.got {
		out[i] = f(d)
	}
	return out
}

func (b *ackBox) texts() []string {
	return b.field(func(d *switchboard.Delivery) string { return d.Text })
}
func (b *ackBox) ids() []string { return b.field(func(d *switchboard.Delivery) string { return d.ID }) }

func msg(recipient, text string) *switchboard.Delivery {
	return &switchboard.Delivery{ID: switchboard.MessageID("bob", "tty1", text, "192.0.2.1:9"), Recipient: recipient,
		Sender: "bob", SenderTerm: "tty1", Text: text, Cookie: text,
		Origin: switchboard.Origin{Node: "n1", Addr: "192.0.2.1:9", Transport: "tcp"}, Time: time.Now()}
}

func send(t *testing.T, sb *switchboard.Switchboard, d *switchboard.Delivery) (bool, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	o := sb.Send(ctx, d)
	return o.Delivered(), o.Summary()
}

// known signs user in and out on sb and waits until the cluster knows her.
func known(t *testing.T, sb *switchboard.Switchboard, user string) {
	t.Helper()
	l, err := sb.SignIn(user, "pts/0", principal.Online, &ackBox{ack: true})
	if err != nil {
		t.Fatal(err)
	}
	l.SignOut()
	waitfor.True(t, 10*time.Second, user+" recorded as signed out", func() bool {
		s, err := sb.LastSeen(context.Background(), user)
		return err == nil && s.State == "offline"
	})
}

// docs/ARCHITECTURE.md: "Undeliverable messages for known users go to a durable
// per-user mailbox ... and are delivered when the user next signs in";
// and "A '+' means the message reached a delivery service (... or the
// durable mailbox); the explanation says which".
func TestOfflineMessagesQueuedAndDeliveredInOrderAtNextSignIn(t *testing.T) {
	t.Parallel()
	st := newStore(t)
	n1, n2 := st.board("n1", nil), st.board("n2", nil)
	known(t, n2, "alice")
	s, err := n1.LastSeen(context.Background(), "ALICE")
	if err != nil || s.User != "alice" || s.Node != "n2" || s.Term != "pts/0" || s.State != "offline" {
		t.Fatalf("LastSeen = %+v, %v; want alice signed out of pts/0 on n2", s, err)
	}
	var want []string
	for i := range 5 {
		text := fmt.Sprintf("queued #%d", i)
		want = append(want, text)
		if ok, sum := send(t, n1, msg("alice", text)); !ok || sum != "queued for alice" {
			t.Fatalf("send %d: %v %q, want +queued for alice", i, ok, sum)
		}
	}
	box := &ackBox{ack: true}
	if _, err := n1.SignIn("alice", "pts/3", principal.Online, box); err != nil {
		t.Fatal(err)
	}
	waitfor.True(t, 10*time.Second, "5 queued messages at alice's next sign-in", func() bool { return len(box.texts()) >= 5 })
	time.Sleep(300 * time.Millisecond) // a sixth copy would arrive within a poll
	if got := box.texts(); !slices.Equal(got, want) {
		t.Fatalf("delivered %q, want %q in order, once each", got, want)
	}
}

func TestUnknownUserRefused(t *testing.T) {
	t.Parallel()
	st := newStore(t)
	n1 := st.board("n1", nil)
	if ok, sum := send(t, n1, msg("carol", "hi")); ok || sum != "carol: unknown user" {
		t.Fatalf("send to a user never seen = %v %q, want -carol: unknown user", ok, sum)
	}
	if _, err := n1.LastSeen(context.Background(), "carol"); !errors.Is(err, switchboard.ErrUnknownUser) {
		t.Fatalf("LastSeen(carol) = %v, want ErrUnknownUser", err)
	}
}

// The race docs/ARCHITECTURE.md (The mailbox) names: a message queued just as its recipient signs
// in on a node the ingress has not heard from yet. The draining node
// listens on her mailbox subject, so it takes the message at once.
func TestMessageQueuedJustAsSheSignsInElsewhereArrives(t *testing.T) {
	t.Parallel()
	st := newStore(t)
	n1, n2 := st.board("n1", nil), st.board("n2", func(_ *switchboard.Config, m *mailbox.Config) { m.PollEvery = time.Hour })
	known(t, n2, "alice")
	box := &ackBox{ack: true}
	if _, err := n2.SignIn("alice", "pts/1", principal.Online, box); err != nil {
		t.Fatal(err)
	}
	// n1's directory does not list her (no gossip here): to n1 she is offline.
	for i := range 3 {
		if ok, sum := send(t, n1, msg("alice", fmt.Sprintf("race %d", i))); !ok || sum != "queued for alice" {
			t.Fatalf("send = %v %q", ok, sum)
		}
	}
	waitfor.True(t, 10*time.Second, "the queued messages on n2 without polling", func() bool { return len(box.texts()) == 3 })
	if got := box.texts(); !slices.Equal(got, []string{"race 0", "race 1", "race 2"}) {
		t.Fatalf("got %q", got)
	}
}

// "if the store is unavailable the reply is '-', never a false '+'".
func TestStoreOutageNeverGivesPlus(t *testing.T) {
	t.Parallel()
	st := newStore(t)
	n1 := st.board("n1", func(c *switchboard.Config, m *mailbox.Config) {
		c.StoreTimeout, m.StoreTimeout = 300*time.Millisecond, 300*time.Millisecond
	})
	known(t, n1, "alice")
	if ok, sum := send(t, n1, msg("alice", "before")); !ok {
		t.Fatalf("before the outage: %q", sum)
	}
	st.b.Close()
	for i := range 3 {
		ok, sum := send(t, n1, msg("alice", fmt.Sprintf("during %d", i)))
		if ok || !strings.HasPrefix(sum, "alice: not signed in; mailbox unavailable") {
			t.Fatalf("during the outage: %v %q; want -alice: not signed in; mailbox unavailable...", ok, sum)
		}
	}
}

func TestMailboxPolicies(t *testing.T) {
	t.Parallel()
	st := newStore(t)
	full := st.board("n1", func(_ *switchboard.Config, m *mailbox.Config) { m.MaxPerUser = 2 })
	known(t, full, "alice")
	for i, want := range []string{"queued for alice", "queued for alice", "alice: not signed in; mailbox full (2 messages)"} {
		ok, sum := send(t, full, msg("alice", fmt.Sprintf("m%d", i)))
		if ok != (i < 2) || sum != want {
			t.Fatalf("message %d: %v %q, want %q (a full mailbox refuses, it never drops)", i, ok, sum, want)
		}
	}
	if ok, sum := send(t, full, msg("alice", "m0")); !ok || sum != "queued for alice (already queued)" {
		t.Fatalf("repeat of a queued message: %v %q; the store keeps one copy per id", ok, sum)
	}
	refuse := st.board("n2", func(c *switchboard.Config, _ *mailbox.Config) { c.Offline = switchboard.OfflineRefuse })
	if ok, sum := send(t, refuse, msg("alice", "x")); ok || sum != "alice: not signed in" {
		t.Fatalf("refuse policy: %v %q", ok, sum)
	}
	if ok, sum := send(t, refuse, msg("carol", "x")); ok || sum != "carol: unknown user" {
		t.Fatalf("refuse policy, unknown user: %v %q", ok, sum)
	}
	// Refusals are the recipient's decision: never queued.
	if _, err := full.SignIn("dave", "tty1", principal.Busy, &ackBox{ack: true}); err != nil {
		t.Fatal(err)
	}
	if ok, sum := send(t, full, msg("dave", "x")); ok || sum != "dave at tty1 on n1: busy, not accepting messages" {
		t.Fatalf("busy: %v %q", ok, sum)
	}
}

// End-to-end acknowledgements: "delivered" means the client acknowledged;
// a message pushed to a session that dies, or does not acknowledge in time,
// goes back to the mailbox and comes again with the same id.
func TestUnacknowledgedMessagesGoBackToTheMailbox(t *testing.T) {
	t.Parallel()
	st := newStore(t)
	n1 := st.board("n1", nil)
	good := &ackBox{ack: true}
	if _, err := n1.SignIn("alice", "pts/1", principal.Online, good); err != nil {
		t.Fatal(err)
	}
	if ok, sum := send(t, n1, msg("alice", "acked")); !ok || sum != "delivered to alice at pts/1 on n1 (acknowledged)" {
		t.Fatalf("acknowledging client: %v %q", ok, sum)
	}

	silent := &ackBox{}
	lb, err := n1.SignIn("bob", "pts/2", principal.Online, silent)
	if err != nil {
		t.Fatal(err)
	}
	d := msg("bob", "never acked")
	if ok, sum := send(t, n1, d); !ok || sum != "queued for bob (pts/2@n1 not acknowledged)" {
		t.Fatalf("client that does not acknowledge: %v %q", ok, sum)
	}
	// The queued copy comes back to the same (still silent) session; then
	// the session dies before acknowledging and a new one gets it.
	waitfor.True(t, 10*time.Second, "the requeued message pushed again", func() bool { return len(silent.texts()) >= 2 })
	silent.die()
	lb.SignOut()
	again := &ackBox{ack: true}
	if _, err := n1.SignIn("bob", "pts/3", principal.Online, again); err != nil {
		t.Fatal(err)
	}
	waitfor.True(t, 10*time.Second, "the message at bob's new session", func() bool { return len(again.texts()) == 1 })
	if got, first := again.ids(), silent.ids(); got[0] != first[0] {
		t.Fatalf("redelivered id %q, want the original %q", got[0], first[0])
	}

	// A session that dies with the message in hand: the node queues it.
	dying := &ackBox{}
	if _, err := n1.SignIn("carol", "pts/4", principal.Online, dying); err != nil {
		t.Fatal(err)
	}
	pushed := make(chan bool, 1)
	go func() {
		ok := waitfor.Until(10*time.Second, func() bool { return len(dying.texts()) == 1 })
		dying.die()
		pushed <- ok
	}()
	if ok, sum := send(t, n1, msg("carol", "dies")); !ok || sum != "queued for carol (pts/4@n1 not acknowledged: terminal signed out)" {
		t.Fatalf("session died before acknowledging: %v %q", ok, sum)
	}
	if !<-pushed {
		t.Fatal("carol's message was not pushed within 10s")
	}
}

// "Multiple sessions of one user get each message once under the terminal
// rules": several terminals, on one node and on two, drain one mailbox.
func TestDrainGivesEachMessageOnceAcrossSessionsAndNodes(t *testing.T) {
	t.Parallel()
	st := newStore(t)
	clock := testcluster.NewClock()
	n1 := st.board("n1", func(c *switchboard.Config, _ *mailbox.Config) { c.Now = clock.Now })
	n2, n3 := st.board("n2", nil), st.board("n3", nil)
	known(t, n1, "alice")
	older, newer, other := &ackBox{ack: true}, &ackBox{ack: true}, &ackBox{ack: true}
	if _, err := n1.SignIn("alice", "pts/1", principal.Online, older); err != nil {
		t.Fatal(err)
	}
	clock.Step(time.Second) // pts/2 signs in later: it is the most recently active
	if _, err := n1.SignIn("alice", "pts/2", principal.Online, newer); err != nil {
		t.Fatal(err)
	}
	if _, err := n2.SignIn("alice", "tty1", principal.Online, other); err != nil {
		t.Fatal(err)
	}
	// n3 has not heard of her sessions (no gossip here): it queues, and
	// the drainers on n1 and n2 share the mailbox.
	const total = 40
	for i := range total {
		if ok, sum := send(t, n3, msg("alice", fmt.Sprintf("m%02d", i))); !ok || sum != "queued for alice" {
			t.Fatalf("send %d: %q", i, sum)
		}
	}
	count := func() int { return len(newer.texts()) + len(other.texts()) + len(older.texts()) }
	waitfor.True(t, 10*time.Second, "all queued messages delivered", func() bool { return count() >= total })
	time.Sleep(300 * time.Millisecond) // extra copies would show up within a poll
	if n := len(older.texts()); n != 0 {
		t.Errorf("n1's older terminal got %d messages; the most recently active one should take them", n)
	}
	all := append(newer.texts(), other.texts()...)
	slices.Sort(all)
	if len(all) != total || len(slices.Compact(slices.Clone(all))) != total {
		t.Fatalf("delivered %d messages (%d distinct), want %d once each", len(all), len(slices.Compact(all)), total)
	}
	t.Logf("n1 pts/2 took %d, n2 tty1 took %d", len(newer.texts()), len(other.texts()))
}
