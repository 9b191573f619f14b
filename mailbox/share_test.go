package mailbox_test

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/msprelay/msprelay/identity"
	"github.com/msprelay/msprelay/internal/waitfor"
	"github.com/msprelay/msprelay/mailbox"
	"github.com/msprelay/msprelay/principal"
	"github.com/msprelay/msprelay/switchboard"
)

// from is msg from another source: a sender name, an origin address and
// whether the ingress node verified the sender.
func from(sender, addr string, verified bool, recipient, text string) *switchboard.Delivery {
	d := msg(recipient, text)
	d.Sender, d.Origin.Addr = sender, addr
	if verified {
		d.Origin.Sender = identity.Identity{User: sender, Claimed: sender, Method: identity.Secret, Node: d.Origin.Node, Source: "session"}
	}
	d.ID = switchboard.MessageID(sender, "tty1", text, addr)
	return d
}

// Issue 12: "One connection fills a user's 1000-message mailbox in 0.1 s;
// legitimate senders are then refused" -- each sender gets a share of each
// mailbox, and a sender over its share is refused while others still queue.
func TestMailboxShareForEachSender(t *testing.T) {
	t.Parallel()
	st := newStore(t)
	sb := st.board("n1", func(_ *switchboard.Config, m *mailbox.Config) { m.MaxPerUser, m.MaxPerSender = 6, 2 })
	known(t, sb, "alice")
	for _, tc := range []struct {
		name string
		d    *switchboard.Delivery
		want string
	}{
		{"first of the flood", from("mallory", "192.0.2.66:1000", false, "alice", "f0"), "queued for alice"},
		{"second of the flood", from("mallory", "192.0.2.66:1001", false, "alice", "f1"), "queued for alice"},
		{"flood over its share", from("mallory", "192.0.2.66:1002", false, "alice", "f2"), "alice: not signed in; mailbox share for this sender full (2 messages)"},
		{"an unverified SENDER is not who sends: the address is", from("bob", "192.0.2.66:1003", false, "alice", "f3"), "alice: not signed in; mailbox share for this sender full (2 messages)"},
		{"a repeat of a stored message is still answered queued", from("mallory", "192.0.2.66:1000", false, "alice", "f0"), "queued for alice (already queued)"},
		{"another address still queues", from("bob", "192.0.2.7:5000", false, "alice", "b0"), "queued for alice"},
		{"IPv6 counts by /64", from("x", "[2001:db8::1]:9", false, "alice", "v0"), "queued for alice"},
		{"IPv6 counts by /64, second", from("y", "[2001:db8::2]:9", false, "alice", "v1"), "queued for alice"},
		{"IPv6 same /64 over its share", from("z", "[2001:db8::3]:9", false, "alice", "v2"), "alice: not signed in; mailbox share for this sender full (2 messages)"},
		{"a verified sender has her own share", from("carol", "session", true, "alice", "c0"), "queued for alice"},
		{"the mailbox itself is full", from("dave", "session", true, "alice", "d0"), "alice: not signed in; mailbox full (6 messages)"},
		{"another mailbox is not affected", from("mallory", "192.0.2.66:1004", false, "erin", "e0"), "erin: unknown user"},
	} {
		ok, sum := send(t, sb, tc.d)
		if sum != tc.want || ok != strings.HasPrefix(tc.want, "queued") {
			t.Fatalf("%s: %v %q, want %q", tc.name, ok, sum, tc.want)
		}
	}
	box := &ackBox{ack: true}
	if _, err := sb.SignIn("alice", "pts/1", principal.Online, box); err != nil {
		t.Fatal(err)
	}
	want := []string{"f0", "f1", "b0", "v0", "v1", "c0"}
	waitfor.True(t, 10*time.Second, "her queued messages", func() bool { return len(box.texts()) >= len(want) })
	if got := box.texts(); !slices.Equal(got, want) {
		t.Fatalf("delivered %q, want %q in order", got, want)
	}
}

// kernelFrom is msg from a local MSP sender whose socket's owner the
// kernel named: user is the account, claimed the SENDER she wrote.
func kernelFrom(user, claimed, addr, recipient, text string) *switchboard.Delivery {
	d := from(claimed, addr, false, recipient, text)
	d.Origin.Sender = identity.Identity{User: user, Claimed: claimed, Method: identity.Kernel, Node: "n1", Source: addr}
	return d
}

// Issue 18, "Any local user is 16 million sources ... Ten loopback
// addresses filled another user's mailbox ... every sender, a verified
// session sender included, then got '-... mailbox full'": "mailbox shares
// per verified name where there is one", and "an unidentified local sender
// shares ONE bucket". One local user's flood from ten loopback addresses,
// under any SENDER, takes one share; every other sender still queues.
func TestMailboxShareLocalSenderIsOneShare(t *testing.T) {
	t.Parallel()
	st := newStore(t)
	sb := st.board("n1", func(_ *switchboard.Config, m *mailbox.Config) { m.MaxPerUser, m.MaxPerSender = 12, 2 })
	known(t, sb, "alice")
	const full = "alice: not signed in; mailbox share for this sender full (2 messages)"
	type step struct {
		d    *switchboard.Delivery
		want string
	}
	var steps []step
	// mallory, named by the kernel, from ten loopback addresses with a
	// new SENDER each time: one share.
	for i := range 10 {
		want := full
		if i < 2 {
			want = "queued for alice"
		}
		steps = append(steps, step{kernelFrom("mallory", fmt.Sprint("name", i), fmt.Sprintf("127.0.0.%d:4000", 10+i), "alice", fmt.Sprint("m", i)), want})
	}
	// Local senders the kernel could not name: one share for all of them,
	// whatever loopback address.
	for i := range 10 {
		want := full
		if i < 2 {
			want = "queued for alice"
		}
		steps = append(steps, step{from("anon", fmt.Sprintf("127.0.1.%d:4000", 10+i), false, "alice", fmt.Sprint("u", i)), want})
	}
	steps = append(steps,
		step{from("anon6", "[::1]:4000", false, "alice", "u6"), full},
		// Every other sender still queues.
		step{kernelFrom("bob", "bob", "127.0.0.200:5000", "alice", "b0"), "queued for alice"},
		step{from("carol", "session", true, "alice", "c0"), "queued for alice"},
		step{from("dave", "192.0.2.7:5000", false, "alice", "d0"), "queued for alice"},
	)
	for i, tc := range steps {
		ok, sum := send(t, sb, tc.d)
		if sum != tc.want || ok != strings.HasPrefix(tc.want, "queued") {
			t.Fatalf("step %d (%s from %s): %v %q, want %q", i, tc.d.Text, tc.d.Origin.Addr, ok, sum, tc.want)
		}
	}
}

// The stream has a byte cap (MaxBytes): a stream at its cap refuses, it
// never drops what it holds.
func TestMailboxStreamByteCap(t *testing.T) {
	t.Parallel()
	st := newStore(t)
	sb := st.board("n1", func(_ *switchboard.Config, m *mailbox.Config) { m.MaxBytes = 4096 })
	known(t, sb, "alice")
	refused := ""
	stored := 0
	for i := range 20 {
		ok, sum := send(t, sb, from(fmt.Sprint("s", i), fmt.Sprintf("192.0.2.%d:9", i+1), false, "alice", strings.Repeat("x", 400)+fmt.Sprint(i)))
		if !ok {
			refused = sum
			break
		}
		stored++
	}
	if stored == 0 || refused != "alice: not signed in; mailbox full (store at its cap of 4096 bytes)" {
		t.Fatalf("after %d stored: refusal %q, want the byte cap", stored, refused)
	}
	box := &ackBox{ack: true}
	if _, err := sb.SignIn("alice", "pts/1", principal.Online, box); err != nil {
		t.Fatal(err)
	}
	waitfor.True(t, 10*time.Second, "every stored message", func() bool { return len(box.texts()) == stored })
}

// Issue 12: "the mailbox dedup header is stream-wide": the same message id
// stored for two users is two messages, and each mailbox keeps one copy.
func TestMailboxDuplicateIDsArePerRecipient(t *testing.T) {
	t.Parallel()
	st := newStore(t)
	nc, err := nats.Connect(st.url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	mb, err := mailbox.New(mailbox.Config{NATS: nc, Node: "n1", Logger: slog.New(slog.DiscardHandler), StoreTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mb.Close() })
	d := msg("", "one text, one id")
	for _, tc := range []struct {
		user string
		dup  bool
	}{{"bob", false}, {"alice", false}, {"alice", true}, {"BOB", true}} {
		dup, err := mb.Put(d, tc.user)
		if err != nil || dup != tc.dup {
			t.Fatalf("Put for %s: dup %v, %v; want dup %v", tc.user, dup, err, tc.dup)
		}
	}
	for _, u := range []string{"alice", "bob"} {
		if n, err := mb.Depth(context.Background(), u); err != nil || n != 1 {
			t.Fatalf("%s's mailbox holds %d, %v; want 1", u, n, err)
		}
	}
}

// A message an earlier version queued on the one-subject layout
// (msp.mbox.<user>, consumer filtering that subject) is delivered after the
// upgrade: the new layout loses nothing.
func TestMailboxReadsMessagesOfTheOneSubjectLayout(t *testing.T) {
	t.Parallel()
	st := newStore(t)
	js := st.jetStream(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// The earlier version's stream and consumer, with one message waiting.
	if _, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: mailbox.Stream, Subjects: []string{mailbox.SubjectPrefix + "*"},
		Retention: jetstream.WorkQueuePolicy, Discard: jetstream.DiscardNew, DiscardNewPerSubject: true, MaxMsgsPerSubject: 1000,
		Duplicates: time.Minute, Storage: jetstream.FileStorage}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateOrUpdateConsumer(ctx, mailbox.Stream, jetstream.ConsumerConfig{Durable: "mbox-alice",
		FilterSubject: mailbox.Subject("alice"), AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: 1}); err != nil {
		t.Fatal(err)
	}
	body, err := switchboard.EncodeQueued(msg("alice", "from before"), "alice")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, mailbox.Subject("alice"), body); err != nil {
		t.Fatal(err)
	}
	sb := st.board("n1", nil)
	box := &ackBox{ack: true}
	l, err := sb.SignIn("alice", "pts/1", principal.Online, box)
	if err != nil {
		t.Fatal(err)
	}
	waitfor.True(t, 10*time.Second, "the message from before", func() bool { return len(box.texts()) >= 1 })
	l.SignOut()
	waitfor.True(t, 10*time.Second, "alice recorded as signed out", func() bool {
		s, err := sb.LastSeen(context.Background(), "alice")
		return err == nil && s.State == "offline"
	})
	if ok, sum := send(t, sb, from("bob", "192.0.2.1:9", false, "alice", "after")); !ok || sum != "queued for alice" {
		t.Fatalf("after the upgrade: %v %q", ok, sum)
	}
	if _, err := sb.SignIn("alice", "pts/2", principal.Online, box); err != nil {
		t.Fatal(err)
	}
	waitfor.True(t, 10*time.Second, "the message after", func() bool { return len(box.texts()) >= 2 })
	if got := box.texts(); !slices.Equal(got, []string{"from before", "after"}) {
		t.Fatalf("delivered %q", got)
	}
}

// "One node never goes over a cap": a burst from one sender, all at once,
// stores exactly its share.
func TestMailboxShareHoldsUnderConcurrentBurst(t *testing.T) {
	t.Parallel()
	st := newStore(t)
	sb := st.board("n1", func(_ *switchboard.Config, m *mailbox.Config) { m.MaxPerSender = 5 })
	known(t, sb, "alice")
	const burst = 20
	oks := make(chan bool, burst)
	for i := range burst {
		go func() {
			ok, _ := send(t, sb, from("mallory", fmt.Sprintf("192.0.2.66:%d", 1000+i), false, "alice", fmt.Sprint("burst ", i)))
			oks <- ok
		}()
	}
	stored := 0
	for range burst {
		select {
		case ok := <-oks:
			if ok {
				stored++
			}
		case <-time.After(20 * time.Second):
			t.Fatal("a send did not return")
		}
	}
	if stored != 5 {
		t.Fatalf("stored %d of a burst of %d, want the share of 5", stored, burst)
	}
}
