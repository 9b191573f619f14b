package mailbox_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/msprelay/msprelay/internal/waitfor"
	"github.com/msprelay/msprelay/mailbox"
	"github.com/msprelay/msprelay/principal"
	"github.com/msprelay/msprelay/switchboard"
)

// Issue 22 item 4 / docs/FEDERATION.md "Several sites": "messages to the
// lost site's users are queued and arrive once it returns". A user who
// stays signed in at a site that was only cut off never heard the notices
// of the mail stored for her meanwhile; her node's sweep (periodic,
// after a store error, or on Sweep when gossip members come back) must
// find it and deliver it once, without her signing in again.
func TestMailStoredUnheardReachesSignedInUser(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		every time.Duration // SweepEvery of her node
		poke  bool          // call Sweep, as the node does when members come back
	}{
		{"periodic sweep", 300 * time.Millisecond, false},
		{"sweep on request", -1, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			st := newStore(t)
			n1 := st.board("n1", nil)
			n2, mb2 := st.boardBox("n2", func(_ *switchboard.Config, c *mailbox.Config) { c.SweepEvery = tc.every })
			known(t, n2, "alice")
			box := &ackBox{ack: true}
			if _, err := n2.SignIn("alice", "pts/1", principal.Online, box); err != nil {
				t.Fatal(err)
			}
			// Her sign-in's own look finds her mailbox empty; after it
			// her drainer sleeps until woken.
			mailbox.DeafenForTest(mb2)
			waitfor.True(t, 10*time.Second, "alice's drainer asleep", func() bool { return mailbox.DrainerIdleForTest(mb2, "alice") })
			var want []string
			for i := range 3 {
				text := fmt.Sprintf("unheard #%d", i)
				want = append(want, text)
				if ok, sum := send(t, n1, msg("alice", text)); !ok || sum != "queued for alice" {
					t.Fatalf("send %d: %v %q, want +queued for alice", i, ok, sum)
				}
			}
			if tc.poke {
				mb2.Sweep("test")
			}
			waitfor.True(t, 10*time.Second, "3 unheard messages at alice's signed-in line", func() bool { return len(box.texts()) >= 3 })
			// A second sweep must not hand them out again.
			mb2.Sweep("test again")
			waitfor.True(t, 10*time.Second, "alice's mailbox empty", func() bool {
				n, err := mb2.Depth(t.Context(), "alice")
				return err == nil && n == 0
			})
			if got := box.texts(); !slices.Equal(got, want) {
				t.Fatalf("delivered %q, want %q in order, once each", got, want)
			}
		})
	}
}
