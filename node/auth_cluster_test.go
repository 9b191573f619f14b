package node_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/msprelay/msprelay/broker"
	"github.com/msprelay/msprelay/internal/testcluster"
	"github.com/msprelay/msprelay/msp"
	"github.com/msprelay/msprelay/node"
	"github.com/msprelay/msprelay/principal"
	"github.com/msprelay/msprelay/sessionclient"
	"github.com/msprelay/msprelay/sessionproto"
)

// genCreds writes per-node NATS users for names into a temporary directory.
func genCreds(t *testing.T, names ...string) string {
	t.Helper()
	dir := t.TempDir()
	c, err := broker.GenerateCredentials(names, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := broker.WriteCredentials(dir, c); err != nil {
		t.Fatal(err)
	}
	return dir
}

// Nodes on a relay that knows them only as their gen-creds users still
// deliver across nodes, queue to and drain from the mailbox.
func TestClusterOnAuthenticatedRelay(t *testing.T) {
	t.Parallel()
	creds := genCreds(t, "n1", "n2")
	relay := testcluster.StartBroker(t, broker.Config{Name: "authrelay", Listen: "127.0.0.1:0", JetStream: true,
		DataDir: t.TempDir(), ConfigFile: filepath.Join(creds, broker.AuthConfFile)})
	sock := filepath.Join(t.TempDir(), "s.sock")
	c := testcluster.Start(t, 2, testcluster.Options{Configure: func(i int, cfg *node.Config) {
		cfg.NATSURLs = []string{relay.ClientURL()}
		cfg.NATSNkeyFile = filepath.Join(creds, cfg.Name+broker.NkeySuffix)
		cfg.RoomOpenBridge = []string{"ops"} // the unauthenticated monitor below posts to #ops
		if i == 0 {
			cfg.SessionSocket = sock // a verified session, for the block list
		}
	}})
	alice := c.SignIn(1, "alice", "pts/1", principal.Online)
	c.WaitPresent("alice", "pts/1", c.Name(1), true)
	r, err := c.Send(0, "tcp", &msp.Message{Version: msp.Version2, Recipient: "alice", Text: "over the authenticated relay", Sender: "bob", SenderTerm: "tty1"})
	if err != nil || !r.OK || !strings.Contains(r.Text, "delivered to alice at pts/1 on n2") {
		t.Fatalf("send: %+v %v, want delivered on n2", r, err)
	}
	if m := testcluster.NextMessage(t, alice, 5*time.Second); m.Text != "over the authenticated relay" || m.OriginNode != "n1" {
		t.Fatalf("got %+v", m)
	}
	if err := alice.Close(); err != nil {
		t.Fatal(err)
	}
	c.WaitPresent("alice", "pts/1", c.Name(1), false)
	r, err = c.Send(0, "tcp", &msp.Message{Version: msp.Version2, Recipient: "alice", Text: "while away", Sender: "bob", SenderTerm: "tty1", Cookie: "2"})
	if err != nil || !r.OK || !strings.Contains(r.Text, "queued") {
		t.Fatalf("send to away alice: %+v %v, want +queued", r, err)
	}
	again := c.SignIn(0, "alice", "pts/2", principal.Online)
	if m := testcluster.NextMessage(t, again, 10*time.Second); m.Text != "while away" {
		t.Fatalf("drained %+v", m)
	}

	// Conversations run within the per-node permissions too: a roster in
	// the bucket, messages on their subjects, the MSP bridge to #NAME.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	bob := c.SignIn(1, "bob", "pts/3", principal.Online)
	again.Conversations()
	bob.Conversations()
	if _, _, err := again.Join(ctx, "ops"); err != nil {
		t.Fatalf("alice creates #ops on n1: %v", err)
	}
	if _, _, err := bob.Answer(ctx, "ops"); err != nil {
		t.Fatalf("bob joins #ops on n2: %v", err)
	}
	testcluster.NextConv(t, again, "join", 10*time.Second)
	if _, err := bob.SendConv(ctx, "ops", "hello over the authenticated relay"); err != nil {
		t.Fatalf("bob says hello: %v", err)
	}
	if ev := testcluster.NextConv(t, again, "message", 10*time.Second); ev.Text != "hello over the authenticated relay" || ev.Node != "n2" {
		t.Fatalf("alice got %+v", ev)
	}
	r, err = c.Send(0, "tcp", &msp.Message{Version: msp.Version2, Recipient: "#ops", Text: "to the room", Sender: "nagios", SenderTerm: "mon", Cookie: "3"})
	if err != nil || !r.OK || r.Text != "delivered to #ops (2 of 2 members)" {
		t.Fatalf("MSP to #ops: %+v %v", r, err)
	}
	if ev := testcluster.NextConv(t, bob, "message", 10*time.Second); ev.Text != "to the room" {
		t.Fatalf("bob got %+v", ev)
	}

	// Block lists (msp block) live in their bucket within the permissions.
	sc, err := sessionclient.Dial(ctx, sock)
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	if _, err := sc.SignIn(ctx, "dave", sessionproto.NoTerminal, principal.Offline); err != nil {
		t.Fatal(err)
	}
	if err := sc.BlockUser(ctx, "mallory", true); err != nil {
		t.Fatalf("block with the node's credentials: %v", err)
	}
	if bl, err := sc.BlockList(ctx); err != nil || len(bl) != 1 || bl[0] != "mallory" {
		t.Fatalf("block list %v %v, want [mallory]", bl, err)
	}
}

// A node exposing its embedded server with --nats-listen and --nats-auth
// admits only the generated users, and its own deliveries still work.
func TestExposedEmbeddedServerNeedsCredentials(t *testing.T) {
	t.Parallel()
	creds := genCreds(t, "e1", "e2")
	cfg := node.DefaultConfig()
	cfg.Name, cfg.DataDir, cfg.MSPAddr, cfg.SessionSocket = "e1", t.TempDir(), "127.0.0.1:0", ""
	cfg.NATSListen = "127.0.0.1:0"
	cfg.NATSAuthFile = filepath.Join(creds, broker.AuthConfFile)
	cfg.NATSNkeyFile = filepath.Join(creds, "e1"+broker.NkeySuffix)
	n, err := node.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := n.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	url := n.Addrs().NATS
	if nc, err := nats.Connect(url, nats.NoReconnect()); err == nil {
		nc.Close()
		t.Fatal("connected to the exposed server without credentials")
	}
	opts, err := broker.ClientAuth{Node: "e2", NkeyFile: filepath.Join(creds, "e2"+broker.NkeySuffix)}.Options()
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(url, append(opts, nats.NoReconnect())...)
	if err != nil {
		t.Fatalf("e2 with its nkey: %v", err)
	}
	defer nc.Close()
	// e1 serves its deliver subject; e2 may ask it (an empty request is
	// refused as undecodable, but answered).
	msg, err := nc.Request("msp.node.e1.deliver.e2", []byte("{}"), 5*time.Second)
	if err != nil || !strings.Contains(string(msg.Data), `"node":"e1"`) {
		t.Fatalf("request to e1: %v %v", msg, err)
	}
}
