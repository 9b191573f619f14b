package node_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/msprelay/msprelay/internal/testcluster"
	"github.com/msprelay/msprelay/msp"
	"github.com/msprelay/msprelay/opsapi"
	"github.com/msprelay/msprelay/principal"
)

// sseEvent is one server-sent event of /api/v1/events.
type sseEvent struct{ name, data string }

// openEvents opens url's event stream; the events arrive on the channel in
// order until the stream ends (the channel is closed then). The reader
// goroutine is the test's: cleanup cancels the request and waits for it.
func openEvents(t *testing.T, url string) <-chan sseEvent {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		cancel()
		resp.Body.Close()
		t.Fatalf("GET %s: HTTP %d", url, resp.StatusCode)
	}
	ch := make(chan sseEvent, 64)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer close(ch)
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		var ev sseEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "event: "):
				ev.name = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				ev.data = strings.TrimPrefix(line, "data: ")
			case line == "" && ev.name != "":
				select {
				case ch <- ev:
				case <-ctx.Done():
					return
				}
				ev = sseEvent{}
			}
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return ch
}

// nextEvent returns the next event of the stream, failing the test when the
// stream ends or nothing comes within timeout.
func nextEvent(t *testing.T, ch <-chan sseEvent, timeout time.Duration) sseEvent {
	t.Helper()
	select {
	case ev, ok := <-ch:
		if !ok {
			t.Fatal("event stream ended")
		}
		return ev
	case <-time.After(timeout):
		t.Fatalf("no event within %v", timeout)
	}
	return sseEvent{}
}

// presenceGauges are the series of /metrics that count who is there, on
// every node of c.
func presenceGauges(t *testing.T, regs []prometheus.Gatherer, nodes []string) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	for i, reg := range regs {
		out[fmt.Sprintf("%d sessions_open", i)] = metric(t, reg, "msprelay_sessions_open", nil)
		out[fmt.Sprintf("%d presence_users", i)] = metric(t, reg, "msprelay_presence_users", nil)
		for _, n := range nodes {
			out[fmt.Sprintf("%d presence_terminals %s", i, n)] = metric(t, reg, "msprelay_presence_terminals", map[string]string{"node": n})
		}
	}
	return out
}

// Issue 18 item 7: "Hidden looks offline in every field, counter and event
// (no mailbox_depth or counts that differ; SSE emits nothing for a hidden
// change) ... /metrics has no per-user or hidden-revealing series."
func TestAPIHiddenLooksOfflineInEveryFieldCounterAndEvent(t *testing.T) {
	t.Parallel()
	c := testcluster.Start(t, 2, testcluster.Options{Configure: withHTTP})
	base := "http://" + c.Node(0).HTTPAddr()
	regs := []prometheus.Gatherer{c.Node(0).Registry(), c.Node(1).Registry()}
	nodes := []string{c.Name(0), c.Name(1)}
	userDoc := func(name string) (opsapi.UserInfo, bool) {
		resp, err := http.Get(base + "/api/v1/users/" + name)
		if err != nil {
			return opsapi.UserInfo{}, false
		}
		defer resp.Body.Close()
		var u opsapi.UserInfo
		return u, resp.StatusCode == 200 && json.NewDecoder(resp.Body).Decode(&u) == nil && u.LastSeen != nil
	}
	send := func(to, text, cookie string) string {
		t.Helper()
		r, err := c.Send(0, "tcp", &msp.Message{Version: msp.Version2, Recipient: to, Sender: "bob", Text: text, Cookie: cookie})
		if err != nil || !r.OK {
			t.Fatalf("send to %s: %+v %v", to, r, err)
		}
		return r.Text
	}

	// dave is offline with mail waiting; carol is hidden and got the same
	// mail, which went to her.
	dave := c.SignIn(1, "dave", "pts/3", principal.Online)
	c.WaitPresent("dave", "pts/3", c.Name(1), true)
	if err := dave.Close(); err != nil {
		t.Fatal(err)
	}
	c.WaitPresent("dave", "pts/3", c.Name(1), false)
	testcluster.WaitFor(t, 10*time.Second, "dave's record", func() bool { _, ok := userDoc("dave"); return ok })
	// carol was seen once, visibly; then she signs in hidden, which must
	// not move her "last seen".
	once := c.SignIn(1, "carol", "pts/2", principal.Online)
	c.WaitPresent("carol", "pts/2", c.Name(1), true)
	// The API shows whole seconds: sign out in a later second than the
	// sign-in, so that the record of the sign-out can be told apart.
	signedIn := time.Now().UTC().Truncate(time.Second)
	testcluster.WaitFor(t, 2*time.Second, "the next second", func() bool { return time.Now().UTC().Truncate(time.Second).After(signedIn) })
	if err := once.Close(); err != nil {
		t.Fatal(err)
	}
	c.WaitPresent("carol", "pts/2", c.Name(1), false)
	var seenBefore time.Time
	testcluster.WaitFor(t, 10*time.Second, "carol's record of her sign-out", func() bool {
		u, ok := userDoc("carol")
		if ok {
			seenBefore = u.LastSeen.Time
		}
		return ok && seenBefore.After(signedIn)
	})
	carol := c.SignIn(1, "carol", "pts/2", principal.Hidden)
	c.WaitPresent("carol", "pts/2", c.Name(1), true)
	for i := range 2 {
		if got := send("dave", "for dave", fmt.Sprint("d", i)); !strings.Contains(got, "queued") {
			t.Fatalf("send to offline dave: %q, want queued", got)
		}
		send("carol", "for carol", fmt.Sprint("c", i))
		testcluster.NextMessage(t, carol, 10*time.Second)
	}

	t.Run("users/NAME shows a hidden user's fields as an offline one's", func(t *testing.T) {
		hu, _ := userDoc("carol")
		ou, _ := userDoc("dave")
		shape := func(u opsapi.UserInfo) string {
			depth := "null"
			if u.MailboxDepth != nil {
				depth = fmt.Sprint(*u.MailboxDepth)
			}
			return fmt.Sprintf("terminals=%d last_seen.state=%s mailbox_depth=%s", len(u.Terminals), u.LastSeen.State, depth)
		}
		if h, o := shape(hu), shape(ou); h != o {
			t.Fatalf("hidden carol shows %s, offline dave %s: the API tells them apart", h, o)
		}
		// Her hidden sign-in wrote no record a reader could see move
		// (it was written long before now: the messages above took it).
		if !hu.LastSeen.Time.Equal(seenBefore) {
			t.Fatalf("hidden carol's last_seen moved from %v to %v", seenBefore, hu.LastSeen.Time)
		}
	})

	// A hidden sign-in moves no gauge, no node count and sends no event.
	events := openEvents(t, base+"/api/v1/events")
	first := nextEvent(t, events, 10*time.Second)
	if first.name != "who" || strings.Contains(first.data, "carol") {
		t.Fatalf("first event %+v, want who without carol", first)
	}
	principals := func() string {
		var ns []opsapi.NodeStatus
		if err := json.Unmarshal([]byte(get(t, base+"/api/v1/nodes", 200)), &ns); err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		for _, n := range ns {
			fmt.Fprintf(&b, "%s=%d ", n.Name, n.Principals)
		}
		return b.String()
	}
	gaugesBefore, principalsBefore := presenceGauges(t, regs, nodes), principals()
	erin := c.SignIn(1, "erin", "pts/4", principal.Hidden)
	c.WaitPresent("erin", "pts/4", c.Name(1), true)

	t.Run("metrics and nodes count a hidden sign-in as absent", func(t *testing.T) {
		after := presenceGauges(t, regs, nodes)
		for k, v := range gaugesBefore {
			if after[k] != v {
				t.Errorf("%s moved from %v to %v when erin signed in hidden", k, v, after[k])
			}
		}
		if p := principals(); p != principalsBefore {
			t.Errorf("/api/v1/nodes principals moved from %s to %s when erin signed in hidden", principalsBefore, p)
		}
		body := get(t, base+"/metrics", 200)
		for _, name := range []string{"carol", "dave", "erin", "bob"} {
			if strings.Contains(body, `"`+name+`"`) {
				t.Errorf("/metrics names user %s", name)
			}
		}
	})

	t.Run("the event stream sends nothing for a hidden change", func(t *testing.T) {
		// Two rates ticks (2 s apart) after the hidden change reached this
		// node, a who event for it would have gone out (changes fold within
		// 200 ms); then a visible sign-in shows that the stream still
		// follows changes.
		noWho := func(what string) {
			t.Helper()
			for rates := 0; rates < 2; {
				ev := nextEvent(t, events, 10*time.Second)
				switch ev.name {
				case "rates":
					rates++
				case "who":
					t.Fatalf("who event after a hidden %s: %s", what, ev.data)
				}
			}
		}
		noWho("sign-in")
		if err := erin.Close(); err != nil {
			t.Fatal(err)
		}
		c.WaitPresent("erin", "pts/4", c.Name(1), false)
		noWho("sign-out")
		c.SignIn(1, "frank", "pts/5", principal.Online)
		for {
			ev := nextEvent(t, events, 10*time.Second)
			if ev.name != "who" {
				continue
			}
			if !strings.Contains(ev.data, `"frank"`) {
				t.Fatalf("first who event after frank's sign-in is %s, want one with frank", ev.data)
			}
			break
		}
	})
}
