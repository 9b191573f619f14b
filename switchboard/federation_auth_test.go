package switchboard_test

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/msprelay/msprelay/internal/waitfor"
	"github.com/msprelay/msprelay/principal"

	"github.com/nats-io/nats.go"

	"github.com/msprelay/msprelay/broker"
	"github.com/msprelay/msprelay/identity"
	"github.com/msprelay/msprelay/mailbox"
	"github.com/msprelay/msprelay/presence"
	"github.com/msprelay/msprelay/switchboard"
)

// authRelay is a real nats-server with JetStream that knows nodes a, b and
// c only as the per-node users of `relay gen-creds`.
type authRelay struct {
	t     *testing.T
	url   string
	creds string // directory of auth.conf and <node>.nk
}

func newAuthRelay(t *testing.T) *authRelay {
	t.Helper()
	dir := t.TempDir()
	c, err := broker.GenerateCredentials([]string{"a", "b", "c"}, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := broker.WriteCredentials(dir, c); err != nil {
		t.Fatal(err)
	}
	b, err := broker.New(broker.Config{Name: "relay", Listen: "127.0.0.1:0", JetStream: true, DataDir: t.TempDir(),
		ConfigFile: filepath.Join(dir, broker.AuthConfFile)})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return &authRelay{t: t, url: b.ClientURL(), creds: dir}
}

// conn connects as node; violations collects the permission errors the
// server reports to it.
func (r *authRelay) conn(node string) (*nats.Conn, *violations) {
	r.t.Helper()
	opts, err := broker.ClientAuth{Node: node, NkeyFile: filepath.Join(r.creds, node+broker.NkeySuffix)}.Options()
	if err != nil {
		r.t.Fatal(err)
	}
	v := &violations{}
	opts = append(opts, nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { v.add(err) }))
	nc, err := nats.Connect(r.url, opts...)
	if err != nil {
		r.t.Fatalf("connect as %s: %v", node, err)
	}
	r.t.Cleanup(nc.Close)
	return nc, v
}

type violations struct {
	mu   sync.Mutex // guards errs
	errs []string
}

func (v *violations) add(err error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.errs = append(v.errs, err.Error())
}

func (v *violations) has(subject string) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, e := range v.errs {
		if strings.Contains(strings.ToLower(e), "permissions violation") && strings.Contains(e, subject) {
			return true
		}
	}
	return false
}

// authBoard starts node's switchboard (mailbox on) over an authenticated
// connection.
func (r *authRelay) board(node string, peersAuthenticated bool) (*switchboard.Switchboard, *violations) {
	r.t.Helper()
	dir, err := presence.New(presence.Config{Name: node, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		r.t.Fatal(err)
	}
	nc, v := r.conn(node)
	mb, err := mailbox.New(mailbox.Config{NATS: nc, Node: node, PeersAuthenticated: peersAuthenticated, Logger: slog.New(slog.DiscardHandler),
		PollEvery: 200 * time.Millisecond, AckWait: 2 * time.Second, StoreTimeout: 2 * time.Second})
	if err != nil {
		r.t.Fatal(err)
	}
	sb, err := switchboard.New(switchboard.Config{Node: node, Directory: dir, NATS: nc, Logger: slog.New(slog.DiscardHandler),
		ForwardTimeout: time.Second, PeersAuthenticated: peersAuthenticated, Mailbox: mb, StoreTimeout: 2 * time.Second})
	if err != nil {
		r.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := mb.Start(ctx); err != nil {
		r.t.Fatalf("start %s's mailbox with per-node permissions: %v", node, err)
	}
	if err := sb.Start(ctx); err != nil {
		r.t.Fatalf("start %s with per-node permissions: %v", node, err)
	}
	r.t.Cleanup(func() { sb.Close(); mb.Close(); dir.Close() })
	return sb, v
}

// recorder is a terminal that keeps every delivery it is handed.
type recorder struct {
	mu  sync.Mutex // guards got
	got []switchboard.Delivery
}

func (r *recorder) Deliver(_ context.Context, d *switchboard.Delivery) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, *d)
	return nil
}

func (r *recorder) Kick(string) {}

func (r *recorder) all() []switchboard.Delivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]switchboard.Delivery(nil), r.got...)
}

type rawReply struct {
	Node, Error string
	Results     []switchboard.Result
}

// rawTargets is where every hand-made delivery goes.
var rawTargets = []principal.Entry{{User: "alice", Term: "pts/1"}}

// rawDeliver publishes a hand-made deliver request from nc on subject.
func rawDeliver(t *testing.T, nc *nats.Conn, subject string, d *switchboard.Delivery) (rawReply, error) {
	t.Helper()
	msg, err := nc.Request(subject, switchboard.RequestFrame(d, rawTargets), 3*time.Second)
	if err != nil {
		return rawReply{}, err
	}
	var rep rawReply
	rep.Node, rep.Error, rep.Results, err = switchboard.ReplyFrame(msg.Data, rawTargets)
	if err != nil {
		t.Fatalf("reply %q: %v", msg.Data, err)
	}
	return rep, nil
}

// delivery is a message from mallory to alice entering at origin.
func delivery(text string, origin switchboard.Origin) *switchboard.Delivery {
	return &switchboard.Delivery{ID: switchboard.FullMessageKey("mallory", "tty9", "", origin.Addr, "alice", "", text), Recipient: "alice", Sender: "mallory", SenderTerm: "tty9",
		Text: text, Origin: origin, Time: time.Now()}
}

// vouched is an origin at node whose sender identity node vouches for:
// mallory, proved by her session secret.
func vouched(node, vouch string) switchboard.Origin {
	return switchboard.Origin{Node: node, Addr: "session", Transport: "session",
		Sender: identity.Identity{User: "mallory", Claimed: "mallory", Method: identity.Secret, Node: vouch, Source: "session"}}
}

// Issue 12: "anyone who reaches it can ... inject deliveries on
// msp.node.<n>.deliver that arrive marked verified, skip the MSP octet and
// size checks ... or answer another node's requests with a fake
// 'delivered'". With per-node users none of it works.
func TestDeliveriesBetweenAuthenticatedNodes(t *testing.T) {
	t.Parallel()
	r := newAuthRelay(t)
	sbB, vB := r.board("b", true)
	box := &recorder{}
	if _, err := sbB.SignIn("alice", "pts/1", principal.Online, box); err != nil {
		t.Fatal(err)
	}
	ncA, _ := r.conn("a")
	ncC, vC := r.conn("c")
	fromA := switchboard.DeliverSubject("b", "a")
	fromC := switchboard.DeliverSubject("b", "c")

	t.Run("no credentials, no connection", func(t *testing.T) {
		if nc, err := nats.Connect(r.url, nats.NoReconnect()); err == nil {
			nc.Close()
			t.Fatal("anonymous client connected")
		}
	})

	t.Run("a valid delivery arrives, verified on the sending node's word", func(t *testing.T) {
		rep, err := rawDeliver(t, ncA, fromA, delivery("hello from a", vouched("a", "a")))
		if err != nil || len(rep.Results) != 1 || rep.Results[0].Status != switchboard.Delivered || rep.Node != "b" {
			t.Fatalf("reply %+v %v, want one delivered result from b", rep, err)
		}
		got := box.all()
		if len(got) != 1 || got[0].Text != "hello from a" || got[0].Origin.Node != "a" || !got[0].Origin.Sender.Verified() ||
			got[0].Origin.Sender != vouched("a", "a").Sender {
			t.Fatalf("delivered %+v, want the text from node a, its identity unchanged and verified", got)
		}
	})

	for _, tc := range []struct {
		name, text string
	}{
		{"ESC/OSC text is refused (RFC 1312: checks must be made on any part which may be displayed)", "\x1b]0;pwned\x07\x1b[2Jhi"},
		{"a 90 KB text is refused (RFC 1312: total length shall be less than 512 octets)", strings.Repeat("A", 90<<10)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(box.all())
			rep, err := rawDeliver(t, ncC, fromC, delivery(tc.text, switchboard.Origin{Node: "c", Transport: "tcp"}))
			if err != nil || len(rep.Results) != 1 || rep.Results[0].Status != switchboard.Refused {
				t.Fatalf("reply %+v %v, want one refused result", rep, err)
			}
			if !strings.Contains(rep.Results[0].Err.Error(), "invalid delivery") {
				t.Errorf("reason %q does not say why", rep.Results[0].Err)
			}
			if n := len(box.all()); n != before {
				t.Fatalf("terminal got %d new deliveries, want none", n-before)
			}
		})
	}

	// Issue 18: "A receiving node believes 'verified' only when the node
	// that vouches for it is the node bound to the subject or credential it
	// arrived on".
	for _, tc := range []struct {
		name     string
		origin   switchboard.Origin
		verified bool
	}{
		{"a receiving node believes verified only when the vouching node is the subject's source node", vouched("c", "c"), true},
		{"an identity node c passes on in node a's name is shown unverified", vouched("c", "a"), false},
		{"a forged origin node with a's identity is shown unverified", vouched("a", "a"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(box.all())
			rep, err := rawDeliver(t, ncC, fromC, delivery("I am a's mallory: "+tc.name, tc.origin))
			if err != nil || len(rep.Results) != 1 || rep.Results[0].Status != switchboard.Delivered {
				t.Fatalf("reply %+v %v", rep, err)
			}
			got := box.all()[before:]
			if len(got) != 1 || got[0].Origin.Node != "c" {
				t.Fatalf("delivered %+v, want one from origin c", got)
			}
			id := got[0].Origin.Sender
			if id.Verified() != tc.verified || id.Claimed != "mallory" {
				t.Fatalf("identity %+v: verified %v, want %v with the claim kept", id, id.Verified(), tc.verified)
			}
			if !tc.verified && (id.Method != identity.None || id.User != "") {
				t.Fatalf("identity %+v, want it downgraded to none", id)
			}
		})
	}

	t.Run("a node cannot publish in another node's name", func(t *testing.T) {
		before := len(box.all())
		if _, err := rawDeliver(t, ncC, fromA, delivery("spoofed as a", vouched("a", "a"))); err == nil {
			t.Fatal("c's request in a's name got an answer")
		}
		waitUntil(t, "a permissions violation for c", func() bool { return vC.has(fromA) })
		if n := len(box.all()); n != before {
			t.Fatalf("terminal got %d deliveries published in another node's name", n-before)
		}
	})

	t.Run("a node cannot read another node's requests or answer in its place", func(t *testing.T) {
		for _, subj := range []string{"msp.node.b.deliver.*", "_INBOX_a.>"} {
			sub, err := ncC.SubscribeSync(subj)
			if err != nil {
				t.Fatal(err)
			}
			waitUntil(t, "a subscribe violation for "+subj, func() bool { return vC.has(subj) })
			_ = sub.Unsubscribe()
		}
		// a asks a node that is not there; c's fake "delivered" cannot reach a.
		if err := ncC.Publish("_INBOX_a.fake", []byte(`{"node":"z","results":[{"user":"alice","term":"pts/1","status":"delivered"}]}`)); err != nil {
			t.Fatal(err)
		}
		waitUntil(t, "a publish violation for a's inbox", func() bool { return vC.has("_INBOX_a.fake") })
		if _, err := ncA.Request(switchboard.DeliverSubject("z", "a"), []byte("{}"), time.Second); !errors.Is(err, nats.ErrNoResponders) {
			t.Fatalf("request to a node nobody serves: %v, want no responders", err)
		}
	})

	t.Run("the mailbox works within the per-node permissions", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		l, err := sbB.SignIn("carol", "pts/2", principal.Online, &recorder{})
		if err != nil {
			t.Fatal(err)
		}
		l.SignOut()
		waitUntil(t, "carol known", func() bool {
			s, err := sbB.LastSeen(ctx, "carol")
			return err == nil && s.State == "offline"
		})
		o := sbB.Send(ctx, &switchboard.Delivery{ID: "q1", Recipient: "carol", Sender: "bob", Text: "queued", Time: time.Now(),
			Origin: switchboard.Origin{Node: "b", Addr: "192.0.2.1:9", Transport: "tcp"}})
		if !o.Delivered() || !strings.Contains(o.Summary(), "queued") {
			t.Fatalf("send to offline carol: %s, want +queued", o.Summary())
		}
		box2 := &recorder{}
		if _, err := sbB.SignIn("carol", "pts/2", principal.Online, box2); err != nil {
			t.Fatal(err)
		}
		waitUntil(t, "carol's queued message", func() bool { return len(box2.all()) == 1 })
		vB.mu.Lock()
		defer vB.mu.Unlock()
		if len(vB.errs) > 0 {
			t.Fatalf("node b's own work hit its permissions: %q", vB.errs)
		}
	})
}

// Without per-node credentials NATS does not tie a sender to its subject,
// so nothing from another node is shown as verified.
func TestVerifiedNeedsAuthenticatedPeers(t *testing.T) {
	t.Parallel()
	r := newAuthRelay(t)
	sbB, _ := r.board("b", false)
	box := &recorder{}
	if _, err := sbB.SignIn("alice", "pts/1", principal.Online, box); err != nil {
		t.Fatal(err)
	}
	ncA, _ := r.conn("a")
	rep, err := rawDeliver(t, ncA, switchboard.DeliverSubject("b", "a"), delivery("hi", vouched("a", "a")))
	if err != nil || len(rep.Results) != 1 || rep.Results[0].Status != switchboard.Delivered {
		t.Fatalf("reply %+v %v", rep, err)
	}
	if got := box.all(); len(got) != 1 || got[0].Origin.Sender.Verified() {
		t.Fatalf("delivered %+v, want unverified", got)
	}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	waitfor.True(t, 10*time.Second, what, cond)
}
