package conversation_test

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/msprelay/msprelay/broker"
	"github.com/msprelay/msprelay/conversation"
	"github.com/msprelay/msprelay/identity"
	"github.com/msprelay/msprelay/internal/testcluster"
)

// Issue 18: "Conversation messages, roster keys and known-user records are
// writable by any node the same way" (as mailboxes: with one node's relay
// gen-creds secret, another node's verified origin was forged). Item 8:
// "Mailbox and room writes are bound to the publishing node the way
// deliveries are; a node cannot ... forge another node's origin."
//
// With n2's generated credentials, a room message copied from n1's verified
// alice and republished on n1's subject is refused by the relay; published
// on n2's own subject while still claiming n1 it reaches members, live and
// in the history, unverified and from n2.
func TestNodeCredentialsCannotForgeAnotherNodesRoomMessage(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	gen, err := broker.GenerateCredentials([]string{"n1", "n2"}, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := broker.WriteCredentials(dir, gen); err != nil {
		t.Fatal(err)
	}
	relay := testcluster.StartBroker(t, broker.Config{Name: "convauth", JetStream: true,
		DataDir: t.TempDir(), ConfigFile: filepath.Join(dir, broker.AuthConfFile)})
	// violations are the relay's refusals to n2's connection.
	violations := make(chan string, 16)
	connect := func(name string) *nats.Conn {
		t.Helper()
		opts, err := broker.ClientAuth{Node: name, NkeyFile: filepath.Join(dir, name+broker.NkeySuffix)}.Options()
		if err != nil {
			t.Fatal(err)
		}
		opts = append(opts, nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			if name == "n2" {
				select {
				case violations <- err.Error():
				default:
				}
			}
		}))
		nc, err := nats.Connect(relay.ClientURL(), opts...)
		if err != nil {
			t.Fatalf("connect as %s: %v", name, err)
		}
		t.Cleanup(nc.Close)
		return nc
	}
	c := &cluster{t: t, url: relay.ClientURL(), live: map[string]bool{}}
	start := func(name string) *node {
		t.Helper()
		nc := connect(name)
		c.setLive(name, true)
		m, err := conversation.New(conversation.Config{Node: name, NATS: nc, Logger: testLogger(t, name),
			LiveNodes: c.liveNodes, SweepInterval: 50 * time.Millisecond, DeadGrace: time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		if err := m.Start(ctx(t)); err != nil {
			t.Fatalf("start %s on its generated credentials: %v", name, err)
		}
		t.Cleanup(func() { m.Close() })
		return &node{m: m, nc: nc}
	}
	n1, n2 := start("n1"), start("n2")

	alice, _, _, _ := join(t, n1, "lobby", "alice", true)
	_, carol, _, _ := join(t, n1, "lobby", "carol", false)
	_, bob, _, _ := join(t, n2, "lobby", "bob", false)
	if _, err := alice.Send(ctx(t), conversation.KindMessage, "genuine"); err != nil {
		t.Fatal(err)
	}
	for _, s := range []*sink{carol, bob} {
		if ev := s.nextKind(t, conversation.KindMessage); ev.Text != "genuine" || !ev.Sender.Verified() || ev.Node != "n1" {
			t.Fatalf("alice's own message arrived as %+v, want verified from n1", ev)
		}
	}

	// n2 reads alice's stored message (it may: every node reads the
	// history) and makes copies with new ids and texts.
	js2, err := jetstream.New(n2.nc)
	if err != nil {
		t.Fatal(err)
	}
	st, err := js2.Stream(ctx(t), conversation.Stream)
	if err != nil {
		t.Fatal(err)
	}
	stored, err := st.GetMsg(ctx(t), st.CachedInfo().State.LastSeq)
	if err != nil {
		t.Fatal(err)
	}
	forge := func(id, text string) []byte {
		var w map[string]any
		if err := json.Unmarshal(stored.Data, &w); err != nil {
			t.Fatal(err)
		}
		if w["node"] != "n1" || w["from"] == nil {
			t.Fatalf("stored message %s does not carry n1 and a verified sender", stored.Data)
		}
		w["id"], w["text"] = id, text
		b, _ := json.Marshal(w)
		return b
	}

	// On n1's own subject: the relay refuses it.
	if err := n2.nc.Publish(stored.Subject, forge("f0f0f0f0f0f0f0f0f0f0f0f0", "forged on n1's subject")); err != nil {
		t.Fatal(err)
	}
	if err := n2.nc.FlushTimeout(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	select {
	case v := <-violations:
		if !strings.Contains(v, "Permissions Violation") || !strings.Contains(v, stored.Subject) {
			t.Fatalf("publishing on %s as n2: %s, want a permissions violation", stored.Subject, v)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("n2 published on n1's room subject %s without a permissions violation", stored.Subject)
	}

	// On n2's own subject, still claiming n1 and verified alice: shown
	// unverified, from n2, live and to a later joiner. (Had the copy on
	// n1's subject gone through, it would be the next message here.)
	own := "msp.conv.msg.lobby.n2"
	if _, err := js2.Publish(ctx(t), own, forge("0a0a0a0a0a0a0a0a0a0a0a0a", "forged claiming n1")); err != nil {
		t.Fatalf("n2 publishing on its own subject %s: %v", own, err)
	}
	checkForged := func(who string, ev conversation.Event) {
		t.Helper()
		if ev.Text != "forged claiming n1" {
			t.Fatalf("%s got %q next, want the copy n2 published on its own subject", who, ev.Text)
		}
		if ev.Sender.Verified() || ev.Sender.Method != identity.None || ev.Node != "n2" || ev.Sender.Node != "n2" {
			t.Fatalf("%s sees n2's copy claiming n1 as %+v (sender %+v), want unverified from n2", who, ev, ev.Sender)
		}
	}
	checkForged("carol on n1", carol.nextKind(t, conversation.KindMessage))
	checkForged("bob on n2", bob.nextKind(t, conversation.KindMessage))
	_, _, _, hist := join(t, n2, "lobby", "dave", false)
	if len(hist) != 2 || hist[0].Text != "genuine" || !hist[0].Sender.Verified() {
		t.Fatalf("history %+v, want alice's verified message then n2's copy", hist)
	}
	checkForged("dave's history", hist[1])
}

// A late joiner's history is the newest Config.History messages of the
// conversation, however many nodes published them (the stream keeps that
// many per publishing node).
func TestHistoryIsTheNewestAcrossNodes(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	n1 := c.node("n1", func(cfg *conversation.Config) { cfg.History = 3 })
	n2 := c.node("n2", func(cfg *conversation.Config) { cfg.History = 3 })
	a, _, _, _ := join(t, n1, "hall", "alice", true)
	b, _, _, _ := join(t, n2, "hall", "bob", false)
	for i, ms := range []*conversation.Membership{a, a, b, b, a, b} {
		if _, err := ms.Send(context.Background(), conversation.KindMessage, string(rune('a'+i))); err != nil {
			t.Fatal(err)
		}
	}
	_, _, _, hist := join(t, n1, "hall", "carol", false)
	var got []string
	for _, ev := range hist {
		got = append(got, ev.Text)
	}
	if strings.Join(got, "") != "def" {
		t.Fatalf("history %q, want the newest three in order, \"def\"", got)
	}
}

// docs/FEDERATION.md, upgrading: "messages stored before stay in the stream
// but are no longer read: they are dropped from the history ... and removed
// with the rest when the conversation expires."
func TestHistoryOnTheOldSubjectIsDroppedAndExpires(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	nc, err := nats.Connect(c.url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	// The stream as an older node made it, with one message stored on
	// the subject without the node, claiming a verified sender.
	st, err := js.CreateStream(ctx(t), jetstream.StreamConfig{Name: conversation.Stream, Subjects: []string{"msp.conv.msg.*"}})
	if err != nil {
		t.Fatal(err)
	}
	old := `{"kind":1,"id":"0123456789ab0123456789ab","user":"alice","node":"n1","text":"old","member":"n1-00","from":{"u":"alice","m":"peercred","s":"session"}}`
	if _, err := js.Publish(ctx(t), "msp.conv.msg.tmp", []byte(old)); err != nil {
		t.Fatal(err)
	}
	n1 := c.node("n1", func(cfg *conversation.Config) { cfg.Idle = 200 * time.Millisecond })
	a, _, _, hist := join(t, n1, "tmp", "alice", true)
	if len(hist) != 0 {
		t.Fatalf("history %+v, want the old subject's message dropped", hist)
	}
	if err := a.Leave(ctx(t)); err != nil {
		t.Fatal(err)
	}
	testcluster.WaitFor(t, 10*time.Second, "the expired conversation's old history purged", func() bool {
		info, err := st.Info(ctx(t))
		return err == nil && info.State.Msgs == 0
	})
}

// The history is the newest Config.History messages even when more nodes
// have posted than a join reads through (16 times the history).
func TestHistoryIsTheNewestWhenManyNodesPosted(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	n1 := c.node("n1", func(cfg *conversation.Config) { cfg.History = 2 })
	join(t, n1, "crowd", "alice", true)
	nc, err := nats.Connect(c.url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	// 20 nodes post 3 messages each: 40 stay stored, 2 per node.
	for round := range 3 {
		for i := range 20 {
			node := fmt.Sprintf("x%02d", i)
			text := fmt.Sprintf("%d-%s", round, node)
			b, _ := json.Marshal(map[string]any{"kind": conversation.KindMessage, "id": fmt.Sprintf("%024d", round*100+i), "user": "u" + node, "node": node, "text": text})
			if _, err := js.Publish(ctx(t), "msp.conv.msg.crowd."+node, b); err != nil {
				t.Fatal(err)
			}
		}
	}
	_, _, _, hist := join(t, n1, "crowd", "carol", false)
	var got []string
	for _, ev := range hist {
		got = append(got, ev.Text)
	}
	if strings.Join(got, " ") != "2-x18 2-x19" {
		t.Fatalf("history %q, want the newest two, 2-x18 and 2-x19", got)
	}
}

// A roster record that does not match its key m.<conv>.<node>.<member> (a
// member shown on another node than its key's, whose dead-node sweep would
// delete the wrong key) is ignored, in the bucket watch and in Roster.
func TestRosterIgnoresRecordsNotMatchingTheirKey(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	n1 := c.node("n1", nil)
	_, alice, _, _ := join(t, n1, "lobby", "alice", true)
	nc, err := nats.Connect(c.url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(ctx(t), conversation.KVBucket)
	if err != nil {
		t.Fatal(err)
	}
	put := func(key string, mb conversation.Member) {
		t.Helper()
		b, _ := json.Marshal(mb)
		if _, err := kv.Put(ctx(t), key, b); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Now().UTC()
	put("m.lobby.n1.n1-0000000000000001", conversation.Member{ID: "n1-0000000000000001", User: "mallory", Node: "n2", Joined: now})
	put("m.lobby.n1.n2-0000000000000002", conversation.Member{ID: "n2-0000000000000002", User: "mallory", Node: "n1", Joined: now})
	put("m.lobby.n1.n1-0000000000000003", conversation.Member{ID: "n1-0000000000000003", User: "trent", Node: "n1", Joined: now})
	if ev := alice.nextKind(t, conversation.KindJoin); ev.User != "trent" {
		t.Fatalf("first join after the mismatched records: %+v, want trent's (the only record matching its key)", ev)
	}
	for _, mb := range mustRoster(t, n1.m, "lobby") {
		if mb.User == "mallory" {
			t.Fatalf("roster lists %+v, whose record does not match its key", mb)
		}
	}
}
