package conversation_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/msprelay/msprelay/internal/waitfor"

	"github.com/nats-io/nats.go"

	"github.com/msprelay/msprelay/broker"
	"github.com/msprelay/msprelay/conversation"
	"github.com/msprelay/msprelay/identity"
	"github.com/msprelay/msprelay/internal/testcluster"
)

// cluster is one real nats-server with JetStream and several managers
// ("nodes"), each on its own NATS connection, as in a real cluster.
type cluster struct {
	t   *testing.T
	url string
	// mu guards live: the nodes the fake gossip layer reports alive.
	mu   sync.Mutex
	live map[string]bool
}

func newCluster(t *testing.T) *cluster {
	t.Helper()
	b := testcluster.StartBroker(t, broker.Config{Name: "conv", JetStream: true, DataDir: t.TempDir()})
	return &cluster{t: t, url: b.ClientURL(), live: map[string]bool{}}
}

func (c *cluster) liveNodes() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for n, ok := range c.live {
		if ok {
			out = append(out, n)
		}
	}
	return out
}

func (c *cluster) setLive(node string, ok bool) {
	c.mu.Lock()
	c.live[node] = ok
	c.mu.Unlock()
}

type node struct {
	m  *conversation.Manager
	nc *nats.Conn
}

func (c *cluster) node(name string, tweak func(*conversation.Config)) *node {
	c.t.Helper()
	nc, err := nats.Connect(c.url)
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(nc.Close)
	c.setLive(name, true)
	cfg := conversation.Config{
		Node: name, NATS: nc, Logger: testLogger(c.t, name),
		LiveNodes: c.liveNodes, SweepInterval: 50 * time.Millisecond,
		// The fake gossip layer is exact, so no grace for nodes this one
		// has not seen alive yet (they may have started after it).
		DeadGrace: time.Millisecond,
	}
	if tweak != nil {
		tweak(&cfg)
	}
	m, err := conversation.New(cfg)
	if err != nil {
		c.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := m.Start(ctx); err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { m.Close() })
	return &node{m: m, nc: nc}
}

// sink collects events on a buffered channel.
type sink struct {
	ch      chan conversation.Event
	refuse  bool
	blocked string
}

func newSink() *sink { return &sink{ch: make(chan conversation.Event, 512)} }

func (s *sink) Event(ev *conversation.Event) bool {
	if s.refuse || (s.blocked != "" && ev.User == s.blocked) {
		return false
	}
	select {
	case s.ch <- *ev:
		return true
	default:
		return false
	}
}

func (s *sink) next(t *testing.T) conversation.Event {
	t.Helper()
	select {
	case ev := <-s.ch:
		return ev
	case <-time.After(10 * time.Second):
		t.Fatal("no event within 10s")
	}
	return conversation.Event{}
}

// nextKind skips events of other kinds (typing, joins) until one of kind k.
func (s *sink) nextKind(t *testing.T, k conversation.Kind) conversation.Event {
	t.Helper()
	for {
		if ev := s.next(t); ev.Kind == k {
			return ev
		}
	}
}

func (s *sink) quiet(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case ev := <-s.ch:
		t.Fatalf("unexpected event %+v", ev)
	case <-time.After(d):
	}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	t.Cleanup(cancel)
	return c
}

// verified is the identity of user signed in with peer credentials on node.
func verified(user, node string) identity.Identity {
	return identity.Identity{User: user, Claimed: user, Method: identity.PeerCred, Node: node, Source: "session"}
}

// unverified is an unauthenticated MSP sender's identity: a claim.
var unverified = identity.Identity{Claimed: "carol", Node: "n2", Source: "192.0.2.7:4000"}

func join(t *testing.T, n *node, conv, user string, create bool) (*conversation.Membership, *sink, []conversation.Member, []conversation.Event) {
	t.Helper()
	s := newSink()
	how := conversation.JoinExisting
	if create {
		how = conversation.JoinOrCreate
	}
	ms, others, hist, err := n.m.Join(ctx(t), conv, conversation.Identity{User: user, Term: "pts/1", Sender: verified(user, n.m.Node())}, s, how)
	if err != nil {
		t.Fatalf("%s joins %s on %s: %v", user, conv, n.m.Node(), err)
	}
	ms.Activate()
	return ms, s, others, hist
}

// "each message sent into it reaches every member, members see each other
// join and leave" — across nodes, once, in per-sender order.
func TestMembersOnThreeNodesSeeMessagesOnceInOrder(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	n1, n2, n3 := c.node("n1", nil), c.node("n2", nil), c.node("n3", nil)
	a, as, others, _ := join(t, n1, "ops", "alice", true)
	if len(others) != 0 {
		t.Fatalf("creator sees others %v", others)
	}
	b, bs, others, _ := join(t, n2, "OPS", "bob", false)
	if len(others) != 1 || others[0].User != "alice" || others[0].Node != "n1" {
		t.Fatalf("bob's roster %+v, want alice on n1", others)
	}
	if ev := as.nextKind(t, conversation.KindJoin); ev.User != "bob" || ev.Node != "n2" {
		t.Fatalf("alice saw join %+v", ev)
	}
	_, cs, others, _ := join(t, n3, "ops", "carol", false)
	if len(others) != 2 {
		t.Fatalf("carol's roster %+v", others)
	}
	as.nextKind(t, conversation.KindJoin)
	bs.nextKind(t, conversation.KindJoin)

	const n = 20
	for i := range n {
		if _, err := a.Send(ctx(t), conversation.KindMessage, fmt.Sprintf("a%d", i)); err != nil {
			t.Fatal(err)
		}
		if _, err := b.Send(ctx(t), conversation.KindMessage, fmt.Sprintf("b%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name string
		s    *sink
		from []string
	}{{"alice", as, []string{"b"}}, {"bob", bs, []string{"a"}}, {"carol", cs, []string{"a", "b"}}} {
		got := map[string][]string{}
		for range n * len(tc.from) {
			ev := tc.s.nextKind(t, conversation.KindMessage)
			got[ev.Text[:1]] = append(got[ev.Text[:1]], ev.Text)
		}
		for _, f := range tc.from {
			for i, text := range got[f] {
				if text != fmt.Sprintf("%s%d", f, i) {
					t.Fatalf("%s: message %d from %s is %q (order or duplicate)", tc.name, i, f, text)
				}
			}
		}
		tc.s.quiet(t, 100*time.Millisecond)
	}
	if _, err := b.Send(ctx(t), conversation.KindTyping, ""); err != nil {
		t.Fatal(err)
	}
	if ev := as.next(t); ev.Kind != conversation.KindTyping || ev.User != "bob" {
		t.Fatalf("alice got %+v, want bob typing", ev)
	}
	cs.nextKind(t, conversation.KindTyping)
	if err := b.Leave(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if ev := as.nextKind(t, conversation.KindLeave); ev.User != "bob" || ev.Reason != "left" {
		t.Fatalf("alice saw %+v, want bob left", ev)
	}
	if _, err := b.Send(ctx(t), conversation.KindMessage, "after"); !errors.Is(err, conversation.ErrNotMember) {
		t.Fatalf("send after leave: %v, want ErrNotMember", err)
	}
}

// "a member who joins late gets the last N messages"
func TestLateJoinerGetsLastNMessages(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	hist := func(cfg *conversation.Config) { cfg.History = 5 }
	n1, n2 := c.node("n1", hist), c.node("n2", hist)
	a, _, _, _ := join(t, n1, "log", "alice", true)
	for i := range 8 {
		if _, err := a.Send(ctx(t), conversation.KindMessage, fmt.Sprintf("m%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	_, bs, _, h := join(t, n2, "log", "bob", false)
	var texts []string
	for _, ev := range h {
		texts = append(texts, ev.Text)
	}
	if want := []string{"m3", "m4", "m5", "m6", "m7"}; !slices.Equal(texts, want) {
		t.Fatalf("history %v, want %v", texts, want)
	}
	if _, err := a.Send(ctx(t), conversation.KindMessage, "live"); err != nil {
		t.Fatal(err)
	}
	if ev := bs.nextKind(t, conversation.KindMessage); ev.Text != "live" {
		t.Fatalf("bob got %q after history, want live", ev.Text)
	}
}

// "the conversation goes on when any one node (including the one it was
// created on) is killed ... Members on a dead node are reported as left
// (BYE ... dropped)"
func TestDeadNodeMembersAreDroppedAndOthersGoOn(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	n1, n2, n3 := c.node("n1", nil), c.node("n2", nil), c.node("n3", nil)
	join(t, n1, "ops", "alice", true)
	b, bs, _, _ := join(t, n2, "ops", "bob", false)
	_, cs, _, _ := join(t, n3, "ops", "carol", false)
	bs.nextKind(t, conversation.KindJoin)
	// The creating node dies: its connection goes without a word and
	// gossip stops listing it.
	n1.nc.Close()
	c.setLive("n1", false)
	for _, s := range []*sink{bs, cs} {
		if ev := s.nextKind(t, conversation.KindLeave); ev.User != "alice" || ev.Reason != "dropped" {
			t.Fatalf("got %+v, want alice dropped", ev)
		}
	}
	if _, err := b.Send(ctx(t), conversation.KindMessage, "still here"); err != nil {
		t.Fatal(err)
	}
	if ev := cs.nextKind(t, conversation.KindMessage); ev.Text != "still here" || ev.User != "bob" {
		t.Fatalf("carol got %+v", ev)
	}
	roster, err := n3.m.Roster(ctx(t), "ops")
	if err != nil || len(roster) != 2 {
		t.Fatalf("roster %+v, %v; want bob and carol", roster, err)
	}
}

// "joining a conversation one is blocked from, an over-long name, a name with
// octets outside the token rules, messages into a conversation one is not in"
func TestJoinRefusals(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	n1 := c.node("n1", func(cfg *conversation.Config) { cfg.MaxMembers = 2 })
	s := newSink()
	if _, _, _, err := n1.m.Join(ctx(t), "ops", conversation.Identity{User: "alice", Blocks: []string{"mallory"}}, s, conversation.JoinOrCreate); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, conv, user string
		create           conversation.How
		want             error
	}{
		{"over-long name", "abcdefghijabcdefghijabcdefghijabc", "bob", conversation.JoinOrCreate, conversation.ErrBadName},
		{"octet outside the token rules", "ops.x", "bob", conversation.JoinOrCreate, conversation.ErrBadName},
		{"eight-bit octet", "caf\xe9", "bob", conversation.JoinOrCreate, conversation.ErrBadName},
		{"no such conversation", "nope", "bob", conversation.JoinExisting, conversation.ErrNoConversation},
		{"blocked by a member", "ops", "mallory", conversation.JoinExisting, conversation.ErrBlocked},
	} {
		_, _, _, err := n1.m.Join(ctx(t), tc.conv, conversation.Identity{User: tc.user}, newSink(), tc.create)
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	if _, _, _, err := n1.m.Join(ctx(t), "ops", conversation.Identity{User: "bob"}, newSink(), conversation.JoinExisting); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := n1.m.Join(ctx(t), "ops", conversation.Identity{User: "carol"}, newSink(), conversation.JoinExisting); !errors.Is(err, conversation.ErrFull) {
		t.Fatalf("third member of a 2-member conversation: %v, want ErrFull", err)
	}
}

// "invite a user (CAL: she is rung (RNG) on her watching sessions wherever
// she is signed in ...)"; block lists apply.
func TestInviteRingsSessionsOnTheirNodes(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	n1 := c.node("n1", func(cfg *conversation.Config) {
		cfg.Locate = func(user string) []string { return []string{"n1", "n2"} }
	})
	n2 := c.node("n2", nil)
	a, _, _, _ := join(t, n1, "ops", "alice", true)
	bob1, bob2 := newSink(), newSink()
	defer n2.m.Attach("bob", bob1)()
	defer n1.m.Attach("bob", bob2)()
	n, err := a.Invite(ctx(t), "bob")
	if err != nil || n != 2 {
		t.Fatalf("invite: %d rung, %v; want 2", n, err)
	}
	for _, s := range []*sink{bob1, bob2} {
		if ev := s.next(t); ev.Kind != conversation.KindInvite || ev.Conversation != "ops" || ev.User != "alice" {
			t.Fatalf("ring %+v", ev)
		}
	}
	if _, err := a.Invite(ctx(t), "carol"); !errors.Is(err, conversation.ErrNotOnline) {
		t.Fatalf("invite carol (nowhere): %v, want ErrNotOnline", err)
	}
	dave := &sink{ch: make(chan conversation.Event, 1), blocked: "alice"}
	defer n2.m.Attach("dave", dave)()
	if _, err := a.Invite(ctx(t), "dave"); !errors.Is(err, conversation.ErrNotOnline) {
		t.Fatalf("invite dave, who blocks alice: %v, want ErrNotOnline", err)
	}
}

// "An empty conversation expires after --conversation-idle"; the MSP bridge
// of a room the operator opened posts into it from anyone, marked
// unverified, and learns its member count.
func TestPostAndIdleExpiry(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	n1 := c.node("n1", func(cfg *conversation.Config) { cfg.Idle = 300 * time.Millisecond })
	n2 := c.node("n2", func(cfg *conversation.Config) { cfg.OpenBridge = []string{"#OPS"} })
	a, as, _, _ := join(t, n1, "ops", "alice", true)
	_, bs, _, _ := join(t, n2, "ops", "bob", false)
	as.nextKind(t, conversation.KindJoin)
	from := conversation.Member{User: "carol", Node: "n2", Term: "tcp"}
	for range 2 { // a retransmission with the same id reaches nobody twice
		n, err := n2.m.Post(ctx(t), "ops", from, unverified, "id-1", "to all")
		if err != nil || n != 2 {
			t.Fatalf("post: %d members, %v", n, err)
		}
	}
	for _, s := range []*sink{as, bs} {
		if ev := s.nextKind(t, conversation.KindMessage); ev.Text != "to all" || ev.User != "carol" || ev.Sender.Verified() || ev.Sender.Source != "192.0.2.7:4000" {
			t.Fatalf("got %+v", ev)
		}
		s.quiet(t, 100*time.Millisecond)
	}
	if _, err := n2.m.Post(ctx(t), "nope", from, unverified, "id-2", "x"); !errors.Is(err, conversation.ErrNoConversation) {
		t.Fatalf("post to unknown: %v", err)
	}
	if err := a.Leave(ctx(t)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond) // longer than Idle: it must not expire while bob is in
	if !n1.m.Exists("ops") {
		t.Fatal("conversation with a member expired")
	}
	rosterWait(t, n1.m, "ops", 1)
	if n, err := n2.m.Post(ctx(t), "ops", from, unverified, "id-3", "bye"); err != nil || n != 1 {
		t.Fatalf("post after alice left: %d members, %v; want 1", n, err)
	}
}

func mustRoster(t *testing.T, m *conversation.Manager, conv string) []conversation.Member {
	t.Helper()
	r, err := m.Roster(ctx(t), conv)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func rosterWait(t *testing.T, m *conversation.Manager, conv string, n int) {
	t.Helper()
	waitfor.True(t, 10*time.Second, fmt.Sprintf("the roster of %s to have %d members", conv, n), func() bool { return len(mustRoster(t, m, conv)) == n })
}

func TestEmptyConversationExpires(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	n1 := c.node("n1", func(cfg *conversation.Config) { cfg.Idle = 200 * time.Millisecond })
	a, _, _, _ := join(t, n1, "tmp", "alice", true)
	if _, err := a.Send(ctx(t), conversation.KindMessage, "old"); err != nil {
		t.Fatal(err)
	}
	if err := a.Leave(ctx(t)); err != nil {
		t.Fatal(err)
	}
	waitfor.NoError(t, 10*time.Second, "the empty conversation to expire", func() error {
		if _, err := n1.m.Roster(ctx(t), "tmp"); !errors.Is(err, conversation.ErrNoConversation) {
			return fmt.Errorf("still there: %v", err)
		}
		return nil
	})
	// Created anew, it has no history of the old one.
	_, _, _, h := join(t, n1, "tmp", "bob", true)
	if len(h) != 0 {
		t.Fatalf("new conversation has old history %+v", h)
	}
}

func TestValidName(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"ops", true}, {"On-Call_2", true}, {"", false}, {"a b", false}, {"a.b", false},
		{"a*", false}, {"a>", false}, {"x\xe9", false}, {"abcdefghijabcdefghijabcdefghijab", true},
		{"abcdefghijabcdefghijabcdefghijabc", false},
	} {
		if err := conversation.ValidName(tc.name); (err == nil) != tc.ok {
			t.Errorf("ValidName(%q) = %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
}

// testLogger writes a node's logs to the test log when MSPRELAY_TEST_LOG is
// set (debug or info), and nowhere otherwise.
func testLogger(t *testing.T, name string) *slog.Logger {
	var level slog.Level
	if level.UnmarshalText([]byte(os.Getenv("MSPRELAY_TEST_LOG"))) != nil || os.Getenv("MSPRELAY_TEST_LOG") == "" {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: level})).With("node", name)
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }

// "ISO 8859-1 text with the eighth bit kept": names and texts cross the
// cluster octet for octet.
func TestEightBitOctetsSurvive(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	n1, n2 := c.node("n1", nil), c.node("n2", nil)
	a, _, _, _ := join(t, n1, "ops", "jos\xe9", true)
	_, bs, others, _ := join(t, n2, "ops", "bob", false)
	if len(others) != 1 || others[0].User != "jos\xe9" {
		t.Fatalf("roster %+v", others)
	}
	if _, err := a.Send(ctx(t), conversation.KindMessage, "gr\xfc\xdfe"); err != nil {
		t.Fatal(err)
	}
	if ev := bs.nextKind(t, conversation.KindMessage); ev.Text != "gr\xfc\xdfe" || ev.User != "jos\xe9" {
		t.Fatalf("got %q from %q", ev.Text, ev.User)
	}
}

// No single owner, both ways: a member dropped by a node that wrongly took
// its node for dead (a partition) is written back by its own node, and the
// others see it join again.
func TestWronglyDroppedMemberComesBack(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	n1, n2 := c.node("n1", nil), c.node("n2", nil)
	_, as, _, _ := join(t, n1, "ops", "alice", true)
	b, _, _, _ := join(t, n2, "ops", "bob", false)
	as.nextKind(t, conversation.KindJoin)
	c.setLive("n2", false)
	if ev := as.nextKind(t, conversation.KindLeave); ev.User != "bob" || ev.Reason != "dropped" {
		t.Fatalf("alice saw %+v", ev)
	}
	c.setLive("n2", true)
	if ev := as.nextKind(t, conversation.KindJoin); ev.User != "bob" {
		t.Fatalf("alice saw %+v, want bob back", ev)
	}
	if _, err := b.Send(ctx(t), conversation.KindMessage, "back"); err != nil {
		t.Fatal(err)
	}
	if ev := as.nextKind(t, conversation.KindMessage); ev.Text != "back" {
		t.Fatalf("alice got %+v", ev)
	}
}
