//go:build linux

package e2e

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/msprelay/msprelay/sessionclient"
	"github.com/msprelay/msprelay/sessionproto"
)

// Bounds of the failure tests.
const (
	// leaveBound: a node that shuts down gracefully leaves the gossip
	// cluster, so its users vanish at once rather than after probing.
	leaveBound = 5 * time.Second
	// crashBound: memberlist's LAN profile declares a silent node dead in
	// about 5-7 s (docs/ARCHITECTURE.md, Presence); the rest is slack for a loaded CI machine.
	crashBound = 15 * time.Second
)

// TestGracefulLeaveDropsPresence checks that SIGTERM is a graceful
// shutdown (cmd/node: "SIGTERM = graceful shutdown (leaves the gossip
// cluster)") and docs/ARCHITECTURE.md's "NotifyLeave drops the node's principals":
// bob, signed in on h3, disappears from h1's directory within leaveBound.
// The nodes run with --offline refuse, so a message for bob is then
// refused with '-' instead of queued.
func TestGracefulLeaveDropsPresence(t *testing.T) {
	t.Parallel()
	c := newThreeHosts(t, "b", "--offline", "refuse")
	l := c.l
	bob := l.signIn(c.h3, "bob", "pts/4")
	l.waitWho(c.h1, "bob", "bob@h3/pts/4/online")
	watch := l.watcher(c.h1)

	t0 := time.Now()
	if err := c.h3.proc.signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	gone := waitFor(t, leaveBound, "bob gone from h1 after SIGTERM of h3", func() error {
		if ok, err := present(watch, "bob"); err != nil || ok {
			return fmt.Errorf("still listed (err %v)", err)
		}
		return nil
	})
	if !c.h3.proc.wait(leaveBound) {
		t.Fatalf("h3 still running %v after SIGTERM", leaveBound)
	}
	exited := time.Since(t0)
	if c.h3.proc.err != nil {
		t.Fatalf("h3 exit after SIGTERM: %v; want status 0", c.h3.proc.err)
	}
	t.Logf("graceful leave: bob gone from h1's directory %v after SIGTERM; h3 exited after %v",
		gone.Round(time.Millisecond), exited.Round(time.Millisecond))

	// bob's session was told the server is going away rather than cut.
	select {
	case <-bob.Done():
	case <-time.After(msgBound):
		t.Fatalf("bob's session still open %v after h3 exited", msgBound)
	}
	if got, err := l.who(c.h1.host, c.h1, "bob"); err != nil || len(got) != 0 {
		t.Fatalf("msp who bob on h1 after h3 left: %v, %v; want []", got, err)
	}
	if r := l.send(c.h1.host, c.h1, "bob", "are you there?"); r.code != 1 || !strings.Contains(r.stderr, "bob: not signed in") {
		t.Fatalf("send to bob after h3 left: %v; want exit 1 ('-') and 'bob: not signed in'", r)
	}
	if got, err := l.who(c.h2.host, c.h2, ""); err != nil || len(got) != 0 {
		t.Fatalf("msp who on h2 after h3 left: %v, %v; want nobody", got, err)
	}
}

// TestCrashDetectionAndRejoin kills h2 with SIGKILL while alice is signed
// in there. The cluster only learns of it by probing: h1 must stop listing
// alice within crashBound. Meanwhile no send may be answered "delivered"
// (a '+' for a delivery that never happened); with the default offline
// policy each is answered '+queued' instead (docs/ARCHITECTURE.md: "+ means the
// message reached a delivery service ... or the durable mailbox"). h2 then
// restarts with the same name and data dir and rejoins; alice signs in
// again and receives every queued message exactly once, in order, and
// delivery from h1 works again.
func TestCrashDetectionAndRejoin(t *testing.T) {
	t.Parallel()
	c := newThreeHosts(t, "c")
	l := c.l
	l.signIn(c.h2, "alice", "pts/1")
	l.waitWho(c.h1, "alice", "alice@h2/pts/1/online")
	watch := l.watcher(c.h1)

	// Sends run alongside the detection poll so that they do not slow it
	// down; they stop once detection is over (bounded by crashBound too).
	detected := make(chan struct{})
	var (
		sendsMu sync.Mutex
		sends   []cliResult
		texts   []string
	)
	var wg sync.WaitGroup
	t0 := time.Now()
	c.h2.proc.kill()
	wg.Go(func() {
		for i := 0; i < 100 && time.Since(t0) < crashBound+msgBound; i++ {
			text := fmt.Sprintf("while h2 is dead #%d", i)
			r := l.send(c.h1.host, c.h1, "alice", text)
			sendsMu.Lock()
			sends, texts = append(sends, r), append(texts, text)
			sendsMu.Unlock()
			select {
			case <-detected:
				return
			case <-time.After(250 * time.Millisecond): // pacing, not synchronisation
			}
		}
	})
	gone := waitFor(t, crashBound, "alice gone from h1 after kill -9 of h2", func() error {
		if ok, err := present(watch, "alice"); err != nil || ok {
			return fmt.Errorf("still listed (err %v)", err)
		}
		return nil
	})
	close(detected)
	wg.Wait()
	t.Logf("crash detection (lan profile): alice gone from h1's directory %v after kill -9 of h2", gone.Round(time.Millisecond))
	sendsMu.Lock()
	defer sendsMu.Unlock()
	for i, r := range sends {
		if r.code != 0 || !strings.HasPrefix(r.stdout, "queued for alice") || strings.Contains(r.stdout, "delivered") {
			t.Errorf("send #%d to alice while h2 was dead: %v; want exit 0 and 'queued for alice'", i, r)
		}
	}
	if len(sends) == 0 {
		t.Fatal("no send ran while h2 was dead")
	}
	t.Logf("%d sends to alice while h2 was dead: all '+queued' (first: %q, last: %q)", len(sends),
		strings.TrimSpace(sends[0].stdout), strings.TrimSpace(sends[len(sends)-1].stdout))
	if t.Failed() {
		t.FailNow()
	}

	t1 := time.Now()
	l.launchNode(c.h2)
	alice := l.signIn(c.h2, "alice", "pts/1")
	back := l.waitWho(c.h1, "alice", "alice@h2/pts/1/online")
	t.Logf("h2 restarted (same name, same data dir); alice listed on h1 again %v after the restart began (%v after her sign-in)",
		time.Since(t1).Round(time.Millisecond), back.Round(time.Millisecond))
	l.mustSend(c.h1.host, c.h1, "delivered to alice at pts/1 on h2", "alice", "welcome back")
	got := collectMessages(t, alice, "alice on restarted h2", len(texts)+1)
	t.Logf("alice received the %d queued messages and the live one %v after h2's restart began", len(texts), time.Since(t1).Round(time.Millisecond))
	// The drained mailbox and the live message race; the mailbox itself
	// must keep its order.
	live := slices.IndexFunc(got, func(m *sessionproto.Message) bool { return m.Text == "welcome back" })
	if live < 0 {
		t.Fatalf("alice did not get the live message; got %d others", len(got))
	}
	checkMessage(t, got[live], "welcome back", "carol", "h1", "tcp")
	queued := slices.Delete(slices.Clone(got), live, live+1)
	for i, m := range queued {
		checkMessage(t, m, texts[i], "carol", "h1", "tcp")
	}
	l.waitWho(c.h3, "alice", "alice@h2/pts/1/online")
}

// collectMessages returns the next n messages pushed to c, failing the
// test if they do not all arrive within msgBound of each other or if one
// more follows at once (a duplicate).
func collectMessages(t *testing.T, c *sessionclient.Client, who string, n int) []*sessionproto.Message {
	t.Helper()
	out := make([]*sessionproto.Message, 0, n)
	for range n {
		out = append(out, nextMessage(t, c, who))
	}
	// Anything already buffered beyond n is a duplicate or a stray.
	select {
	case m, ok := <-c.Messages():
		if ok {
			t.Fatalf("%s: message %d beyond the %d expected: %q", who, n+1, n, m.Text)
		}
	default:
	}
	return out
}
