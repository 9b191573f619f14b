package mailbox_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/msprelay/msprelay/internal/waitfor"
	"github.com/msprelay/msprelay/mailbox"
	"github.com/msprelay/msprelay/principal"
	"github.com/msprelay/msprelay/switchboard"
)

// consumers lists the mailbox stream's consumers.
func (st *store) consumers(t *testing.T) []string {
	t.Helper()
	js := st.jetStream(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, mailbox.Stream)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	l := s.ConsumerNames(ctx)
	for n := range l.Name() {
		names = append(names, n)
	}
	if err := l.Err(); err != nil {
		t.Fatal(err)
	}
	slices.Sort(names)
	return names
}

// "nothing per user in NATS/JetStream (consumers, subscriptions) until
// there is mail" (issue 22): users signed in with empty mailboxes make no
// consumer; a message queued for one of them makes hers alone, on the node
// where she is signed in, and reaches her without a poll (PollEvery is an
// hour here: the node's one wake-up subscription hears the message).
func TestNoConsumerUntilThereIsMail(t *testing.T) {
	t.Parallel()
	st := newStore(t)
	n1 := st.board("n1", nil)
	n2 := st.board("n2", func(_ *switchboard.Config, m *mailbox.Config) { m.PollEvery = time.Hour })
	const users = 20
	boxes := make([]*ackBox, users)
	for i := range users {
		known(t, n2, fmt.Sprintf("user%d", i))
		boxes[i] = &ackBox{ack: true}
		if _, err := n2.SignIn(fmt.Sprintf("user%d", i), "pts/1", principal.Online, boxes[i]); err != nil {
			t.Fatal(err)
		}
	}
	// n1 does not see her signed in (no gossip here): it queues.
	if ok, sum := send(t, n1, msg("user7", "hello")); !ok || sum != "queued for user7" {
		t.Fatalf("send = %v %q", ok, sum)
	}
	waitfor.True(t, 10*time.Second, "the queued message at user7 without a poll", func() bool {
		return slices.Equal(boxes[7].texts(), []string{"hello"})
	})
	// Every user signed in (and out, and in again) with an empty mailbox;
	// only user7 ever had mail.
	if c := st.consumers(t); !slices.Equal(c, []string{"mbox-user7"}) {
		t.Fatalf("%d users signed in, one with mail: consumers %q, want user7's alone", users, c)
	}
}
