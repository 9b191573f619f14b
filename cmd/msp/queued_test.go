package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/msprelay/msprelay/internal/testcluster"
	"github.com/msprelay/msprelay/internal/waitfor"
	"github.com/msprelay/msprelay/msp"
	"github.com/msprelay/msprelay/principal"
)

// Issue 20 item 5: "Mailbox messages show `(queued, sent Dec 06 17:07)` and
// carry `queued` and `sent` in `--json`"; live messages carry neither.
func TestQueuedMailShowsWhenItWasSent(t *testing.T) {
	t.Parallel()
	c := testcluster.Start(t, 1, testcluster.Options{})
	sess := c.Node(0).Addrs().Session
	for _, asJSON := range []bool{false, true} {
		user := "qtext"
		if asJSON {
			user = "qjson"
		}
		// Known to the cluster, then gone: her mail is queued.
		cl := c.SignIn(0, user, "pts/1", principal.Online)
		cl.Close()
		c.WaitPresent(user, "pts/1", "n1", false)
		// The known-users record is written as she signs out: until it is,
		// she is an unknown user and nothing is queued.
		waitfor.NoError(t, 10*time.Second, "mail queued for "+user, func() error {
			r, err := c.Send(0, "tcp", &msp.Message{Version: msp.Version2, Recipient: user, Text: "while you were out", Sender: "bob", Cookie: msp.NewCookie()})
			if err == nil && (!r.OK || !strings.Contains(r.Text, "queued")) {
				err = fmt.Errorf("reply %+v", r)
			}
			return err
		})
		sent := time.Now()
		args := []string{"--session", sess, "--user", user, "--term", "pts/2"}
		if asJSON {
			args = append(args, "--json")
		}
		out, _, stop := startListen(t, args...)
		waitfor.True(t, 10*time.Second, "the queued message shown", func() bool { return strings.Contains(out.String(), "while you were out") })
		// A live one after it.
		c.WaitPresent(user, "pts/2", "n1", true)
		if r, err := c.Send(0, "tcp", &msp.Message{Version: msp.Version2, Recipient: user, Text: "live now", Sender: "bob", Cookie: msp.NewCookie()}); err != nil || !r.OK {
			t.Fatalf("send live: %+v %v", r, err)
		}
		waitfor.True(t, 10*time.Second, "the live message shown", func() bool { return strings.Contains(out.String(), "live now") })
		stop()
		o := out.String()
		if !asJSON {
			want := "(queued, sent " + sent.Local().Format("Jan 02 15:04") + "):"
			head, _, _ := strings.Cut(o, "while you were out")
			if !strings.Contains(head, want) && !strings.Contains(head, "(queued, sent "+sent.Add(-time.Minute).Local().Format("Jan 02 15:04")+"):") {
				t.Errorf("queued message header lacks %q:\n%s", want, o)
			}
			if _, live, _ := strings.Cut(o, "while you were out"); strings.Contains(live, "queued") {
				t.Errorf("the live message is marked queued:\n%s", o)
			}
			continue
		}
		for _, line := range strings.Split(strings.TrimSpace(o), "\n") {
			var m map[string]any
			if err := json.Unmarshal([]byte(line), &m); err != nil || m["type"] != "message" {
				continue
			}
			queued := m["text"] == "while you were out"
			if m["queued"] != queued {
				t.Errorf("%q: queued = %v, want %v", m["text"], m["queued"], queued)
			}
			if s, _ := m["sent"].(string); s == "" || s != m["time"] {
				t.Errorf("%q: sent = %v, want the time it was sent (%v)", m["text"], m["sent"], m["time"])
			}
		}
	}
}
