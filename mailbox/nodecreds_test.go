package mailbox_test

import (
	"context"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/msprelay/msprelay/broker"
	"github.com/msprelay/msprelay/identity"
	"github.com/msprelay/msprelay/internal/testcluster"
	"github.com/msprelay/msprelay/mailbox"
	"github.com/msprelay/msprelay/node"
	"github.com/msprelay/msprelay/principal"
	"github.com/msprelay/msprelay/switchboard"
)

// Issue 18 item 8: "With one node's relay gen-creds password, the mailbox
// consumer of another node's user was deleted ... and an entry claiming
// origin.node = another node with verified: true stored; the drain keeps
// the stored flag." Done when: "through a relay cluster with gen-creds,
// node credentials cannot forge or block another node's users' mail."
func TestNodeCredentialsCannotForgeOrBlockAnotherNodesMailbox(t *testing.T) {
	t.Parallel()
	creds := t.TempDir()
	gen, err := broker.GenerateCredentials([]string{"n1", "n2"}, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := broker.WriteCredentials(creds, gen); err != nil {
		t.Fatal(err)
	}
	relay := testcluster.StartBroker(t, broker.Config{Name: "mboxauth", Listen: "127.0.0.1:0", JetStream: true,
		DataDir: t.TempDir(), ConfigFile: filepath.Join(creds, broker.AuthConfFile)})
	c := testcluster.Start(t, 2, testcluster.Options{Configure: func(_ int, cfg *node.Config) {
		cfg.NATSURLs = []string{relay.ClientURL()}
		cfg.NATSNkeyFile = filepath.Join(creds, cfg.Name+broker.NkeySuffix)
	}})
	// asNode connects with node name's generated credentials, as someone
	// holding that node's secret would.
	asNode := func(name string) (*nats.Conn, jetstream.JetStream) {
		t.Helper()
		opts, err := broker.ClientAuth{Node: name, NkeyFile: filepath.Join(creds, name+broker.NkeySuffix)}.Options()
		if err != nil {
			t.Fatal(err)
		}
		nc, err := nats.Connect(relay.ClientURL(), append(opts, nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {}))...)
		if err != nil {
			t.Fatalf("connect as %s: %v", name, err)
		}
		t.Cleanup(nc.Close)
		js, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		return nc, js
	}
	_, js1 := asNode("n1")
	nc2, js2 := asNode("n2")
	ctx := func() context.Context {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		t.Cleanup(cancel)
		return ctx
	}

	// forged is what n2 stores claiming that n1 took it in from a verified
	// local root.
	forged := func(id, text string) []byte {
		t.Helper()
		d := &switchboard.Delivery{ID: id, Recipient: "alice", Sender: "root", SenderTerm: "console", Text: text, Time: time.Now(),
			Origin: switchboard.Origin{Node: "n1", Addr: "session", Transport: "session",
				Sender: identity.Identity{User: "root", Method: identity.PeerCred, Node: "n1", Source: "session"}}}
		b, err := switchboard.EncodeQueued(d, "alice")
		if err != nil {
			t.Fatal(err)
		}
		return b
	}

	// alice is n1's user; her drainer there makes her consumer once she
	// has mail (none is made for an empty mailbox), so n1 stores one.
	alice := c.SignIn(0, "alice", "pts/1", principal.Online)
	c.WaitPresent("alice", "pts/1", c.Name(0), true)
	if _, err := js1.Publish(ctx(), mailbox.SubjectPrefix+mailbox.UserToken("alice")+".root.n1", forged("first", "first")); err != nil {
		t.Fatalf("n1 storing on its own subject: %v", err)
	}
	if m := testcluster.NextMessage(t, alice, 10*time.Second); m.Text != "first" {
		t.Fatalf("alice got %+v, want n1's first message", m)
	}
	consumer := "mbox-" + mailbox.UserToken("alice")
	testcluster.WaitFor(t, 10*time.Second, "alice's mailbox consumer", func() bool {
		_, err := js1.Consumer(ctx(), mailbox.Stream, consumer)
		return err == nil
	})

	t.Run("n2's credentials cannot delete the consumer n1's user drains from", func(t *testing.T) {
		if err := js2.DeleteConsumer(ctx(), mailbox.Stream, consumer); err == nil {
			t.Fatalf("n2 deleted alice's mailbox consumer")
		}
		if _, err := js1.Consumer(ctx(), mailbox.Stream, consumer); err != nil {
			t.Fatalf("alice's consumer after n2's attempt: %v", err)
		}
	})

	t.Run("n2's credentials cannot store an entry on n1's mailbox subject", func(t *testing.T) {
		// The subject a message n1 stored for alice from root is on.
		subject := mailbox.SubjectPrefix + mailbox.UserToken("alice") + ".root.n1"
		if _, err := js2.Publish(ctx(), subject, forged("forged-as-n1", "stored as n1")); err == nil {
			t.Fatalf("n2 stored a mailbox entry on %s", subject)
		}
	})

	t.Run("an entry n2 stores claiming n1's verified origin drains unverified", func(t *testing.T) {
		subject := mailbox.SubjectPrefix + mailbox.UserToken("alice") + ".root.n2"
		if _, err := js2.Publish(ctx(), subject, forged("forged-origin", "forged origin")); err != nil {
			t.Fatalf("n2 storing on its own subject %s: %v", subject, err)
		}
		m := testcluster.NextMessage(t, alice, 10*time.Second)
		if m.Text != "forged origin" || m.Verified {
			t.Fatalf("alice got %+v, want the forged entry shown unverified", m)
		}
	})

	t.Run("a verified message n2 queues drains verified on n1", func(t *testing.T) {
		// n2's own mailbox, as its node runs it, storing what its ingress
		// verified: the bound subject keeps it verified.
		mb, err := mailbox.New(mailbox.Config{NATS: nc2, Node: "n2", PeersAuthenticated: true,
			Logger: slog.New(slog.DiscardHandler), StoreTimeout: 3 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { mb.Close() })
		d := &switchboard.Delivery{ID: "genuine", Recipient: "alice", Sender: "bob", SenderTerm: "pts/2", Text: "genuine", Time: time.Now(),
			Origin: switchboard.Origin{Node: "n2", Addr: "session", Transport: "session",
				Sender: identity.Identity{User: "bob", Method: identity.PeerCred, Node: "n2", Source: "session"}}}
		if _, err := mb.Put(d, "alice"); err != nil {
			t.Fatalf("n2 queueing for alice: %v", err)
		}
		m := testcluster.NextMessage(t, alice, 10*time.Second)
		if m.Text != "genuine" || !m.Verified || m.OriginNode != "n2" {
			t.Fatalf("alice got %+v, want n2's verified message", m)
		}
	})
}
