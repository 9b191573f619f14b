package mailbox_test

import (
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/msprelay/msprelay/internal/waitfor"
	"github.com/msprelay/msprelay/mailbox"
	"github.com/msprelay/msprelay/principal"
	"github.com/msprelay/msprelay/switchboard"
)

// lookTap watches, from a connection of its own, the mailbox looks the
// store is asked for: stream-info requests with a subject filter on the
// mailbox stream, and their answers. One subscription on every subject
// keeps requests and answers in the order the server sent them.
type lookTap struct {
	mu       sync.Mutex
	filters  map[string]int      // looks by subject filter
	pending  map[string]struct{} // reply subjects of unanswered looks
	inFlight int
	most     int // the most looks in flight at once
}

func newLookTap(t *testing.T, st *store) *lookTap {
	t.Helper()
	nc, err := nats.Connect(st.url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	lt := &lookTap{filters: map[string]int{}, pending: map[string]struct{}{}}
	info := "$JS.API.STREAM.INFO." + mailbox.Stream
	if _, err := nc.Subscribe(">", func(m *nats.Msg) {
		lt.mu.Lock()
		defer lt.mu.Unlock()
		if _, ok := lt.pending[m.Subject]; ok {
			delete(lt.pending, m.Subject)
			lt.inFlight--
			return
		}
		if m.Subject != info {
			return
		}
		var req struct {
			Filter string `json:"subjects_filter"`
		}
		if json.Unmarshal(m.Data, &req) != nil || req.Filter == "" {
			return
		}
		lt.filters[req.Filter]++
		lt.pending[m.Reply] = struct{}{}
		lt.inFlight++
		lt.most = max(lt.most, lt.inFlight)
	}); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return lt
}

// looks returns the looks per filter and the most in flight at once.
func (lt *lookTap) looks() (map[string]int, int) {
	lt.mu.Lock()
	defer lt.mu.Unlock()
	out := make(map[string]int, len(lt.filters))
	for f, n := range lt.filters {
		out[f] = n
	}
	return out, lt.most
}

// "Nothing per user in NATS/JetStream ... until there is mail" and a store
// that survives a wave of sign-ins (issue 22): a wave of sign-ins on one
// node never has more than four looks into mailboxes in flight, looks at
// no user's mailbox twice (no recheck: that is for the notice of a stored
// message; no second look for the one-subject mailboxes of earlier
// versions when the stream holds none), costs the store at most one
// request per user (a long queue is answered by one census), and still
// finds the mail of the few who have some.
func TestSignInWaveLooksFourAtATimeAndFindsTheMail(t *testing.T) {
	t.Parallel()
	st := newStore(t)
	n0, mb0 := st.boardBox("n0", nil)
	withMail := []string{"wave3", "wave50", "wave120"}
	for _, u := range withMail {
		known(t, n0, u)
		if ok, sum := send(t, n0, msg(u, "for "+u)); !ok || sum != "queued for "+u {
			t.Fatalf("queue for %s: %v %q", u, ok, sum)
		}
	}
	// The tap counts every node's looks: n0 has done its part and must
	// not look (or sweep) while n1 is counted.
	n0.Close()
	mb0.Close()
	lt := newLookTap(t, st)
	// StoreTimeout 10 s: a store slow to answer the start's census (a
	// loaded machine) would leave the second look on.
	sb, mb := st.boardBox("n1", func(_ *switchboard.Config, c *mailbox.Config) { c.SweepEvery, c.StoreTimeout = -1, 10*time.Second })
	const users = 200
	boxes := make([]*ackBox, users)
	var wg sync.WaitGroup
	for i := range users {
		boxes[i] = &ackBox{ack: true}
		wg.Go(func() {
			if _, err := sb.SignIn(fmt.Sprintf("wave%d", i), "pts/1", principal.Online, boxes[i]); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	for _, u := range withMail {
		var i int
		fmt.Sscanf(u, "wave%d", &i)
		waitfor.True(t, 20*time.Second, "the queued message at "+u, func() bool { return len(boxes[i].texts()) == 1 })
	}
	// A second look would come from a queued or running drainer: once
	// every drainer sleeps, the counts are final.
	waitfor.True(t, 20*time.Second, "every drainer asleep", func() bool {
		for i := range users {
			if !mailbox.DrainerIdleForTest(mb, fmt.Sprintf("wave%d", i)) {
				return false
			}
		}
		return true
	})
	f, most := lt.looks()
	perUser := 0
	for i := range users {
		user := fmt.Sprintf("wave%d", i)
		n := f[mailbox.Subject(user)+".>"]
		perUser += n
		if n > 1 && !slices.Contains(withMail, user) {
			t.Errorf("%s (no mail): %d looks at her mailbox, want at most 1", user, n)
		}
		if n := f[mailbox.Subject(user)]; n != 0 {
			t.Errorf("%s: %d looks at a one-subject mailbox the stream does not have, want 0", user, n)
		}
		if got := boxes[i].texts(); len(got) != 0 && !slices.Contains(withMail, user) {
			t.Errorf("%s had no mail; delivered %q", user, got)
		}
	}
	censuses := f[mailbox.SubjectPrefix+">"]
	if perUser+censuses > users+len(withMail) {
		t.Errorf("%d sign-ins cost %d looks and %d censuses, want at most one request per user", users, perUser, censuses)
	}
	if most > 4 {
		t.Errorf("%d looks in flight at once, want at most 4", most)
	}
	t.Logf("%d sign-ins: %d looks, %d censuses, at most %d in flight", users, perUser, censuses, most)
}

// A node of an earlier version may still store mail on the one-subject
// layout after this node found none there: the next sweep, which sees
// every subject, turns the second look back on, and the mail arrives.
func TestOneSubjectMailStoredLaterFoundBySweep(t *testing.T) {
	t.Parallel()
	st := newStore(t)
	sb, mb := st.boardBox("n1", func(_ *switchboard.Config, c *mailbox.Config) { c.SweepEvery = -1 })
	box := &ackBox{ack: true}
	if _, err := sb.SignIn("alice", "pts/1", principal.Online, box); err != nil {
		t.Fatal(err)
	}
	waitfor.True(t, 10*time.Second, "alice's drainer asleep", func() bool { return mailbox.DrainerIdleForTest(mb, "alice") })
	js := st.jetStream(t)
	body, err := switchboard.EncodeQueued(msg("alice", "from an old node"), "alice")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(t.Context(), mailbox.Subject("alice"), body); err != nil {
		t.Fatal(err)
	}
	mb.Sweep("test")
	waitfor.True(t, 10*time.Second, "the old node's message at alice", func() bool { return len(box.texts()) == 1 })
	if got := box.texts(); got[0] != "from an old node" {
		t.Fatalf("delivered %q", got)
	}
}

// "Users seen in the cluster, last sign-in or sign-out": the records of a
// wave of sign-ins, written as pipelined batches, all land, each with its
// user's own state.
func TestSignInWaveRecordsEveryUser(t *testing.T) {
	t.Parallel()
	st := newStore(t)
	sb := st.board("n1", nil)
	const users = 600 // more than one batch
	var wg sync.WaitGroup
	for i := range users {
		wg.Go(func() {
			st := principal.Online
			if i%3 == 0 {
				st = principal.Busy
			}
			if _, err := sb.SignIn(fmt.Sprintf("rec%d", i), "pts/1", st, &ackBox{ack: true}); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	waitfor.True(t, 30*time.Second, "a record for each user", func() bool {
		s, err := sb.LastSeen(t.Context(), fmt.Sprintf("rec%d", users-1))
		return err == nil && s.State != ""
	})
	for i := range users {
		want := "online"
		if i%3 == 0 {
			want = "busy"
		}
		user := fmt.Sprintf("rec%d", i)
		waitfor.True(t, 30*time.Second, user+" recorded "+want, func() bool {
			s, err := sb.LastSeen(t.Context(), user)
			return err == nil && s.State == want && s.Node == "n1"
		})
	}
}
