package main

import (
	"context"
	"encoding/json"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/msprelay/msprelay/internal/syncbuf"

	"github.com/msprelay/msprelay/internal/testcluster"
	"github.com/msprelay/msprelay/principal"
	"github.com/msprelay/msprelay/sessionclient"
	"github.com/msprelay/msprelay/sessionproto"
)

// jsonLines decodes the JSON lines written so far.
func jsonLines(t *testing.T, s string) []chatJSON {
	t.Helper()
	var out []chatJSON
	for _, l := range strings.Split(strings.TrimSpace(s), "\n") {
		if l == "" {
			continue
		}
		var v chatJSON
		if err := json.Unmarshal([]byte(l), &v); err != nil {
			t.Fatalf("bad JSON line %q: %v", l, err)
		}
		out = append(out, v)
	}
	return out
}

// waitLine waits until buf holds a JSON line matching ok.
func waitLine(t *testing.T, buf *syncbuf.Buffer, what string, ok func(chatJSON) bool) chatJSON {
	t.Helper()
	var found chatJSON
	testcluster.WaitFor(t, 10*time.Second, what, func() bool {
		for _, v := range jsonLines(t, buf.String()) {
			if ok(v) {
				found = v
				return true
			}
		}
		return false
	})
	return found
}

func nextConvEvent(t *testing.T, cl *sessionclient.Client, typ string) sessionproto.ConvEvent {
	t.Helper()
	return testcluster.NextConv(t, cl, typ, 10*time.Second)
}

// "msp chat ... joins (or creates) conversation NAME, sends each stdin line
// as a message, prints what others say with who and when, prints joins and
// leaves, and leaves on EOF ... (exit 0)"; "msp listen shows invitations";
// "msp who '#ops' lists a conversation's members and their nodes".
func TestChatListenWho(t *testing.T) {
	t.Parallel()
	c := testcluster.Start(t, 2, testcluster.Options{})
	bob := c.SignIn(1, "bob", "pts/2", principal.Online)
	bob.Conversations()
	c.WaitPresent("bob", "pts/2", c.Name(1), true)

	// carol listens on n2 and is shown the invitation.
	var listenOut syncbuf.Buffer
	lctx, lcancel := context.WithCancel(context.Background())
	listenDone := make(chan int, 1)
	go func() {
		listenDone <- run(lctx, []string{"listen", "--json", "--session", c.Node(1).Addrs().Session, "--user", "carol", "--term", "pts/3"},
			env{stdin: strings.NewReader(""), stdout: &listenOut, stderr: io.Discard, getenv: func(string) string { return "" }})
	}()
	c.WaitPresent("carol", "pts/3", c.Name(1), true)

	stdin, feed := io.Pipe()
	var chatOut, chatErr syncbuf.Buffer
	chatDone := make(chan int, 1)
	go func() {
		chatDone <- run(context.Background(), []string{"chat", "--json", "--session", c.Node(0).Addrs().Session,
			"--user", "alice", "--term", "pts/1", "--invite", "bob,carol", "#ops"},
			env{stdin: stdin, stdout: &chatOut, stderr: &chatErr, getenv: func(string) string { return "" }})
	}()

	if ev := nextConvEvent(t, bob, "invite"); ev.Conversation != "ops" || ev.User != "alice" || ev.Node != "n1" {
		t.Fatalf("bob's invitation %+v", ev)
	}
	inv := waitLine(t, &listenOut, "carol's listen shows the invitation", func(v chatJSON) bool { return v.Type == "invite" })
	if inv.Conversation != "ops" || inv.User != "alice" || inv.Node != "n1" || inv.Term != "pts/1" {
		t.Fatalf("listen printed %+v", inv)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, roster, err := bob.Answer(ctx, "ops"); err != nil || len(roster) != 1 || roster[0].User != "alice" {
		t.Fatalf("bob answers: %v %v", roster, err)
	}
	waitLine(t, &chatOut, "alice sees bob join", func(v chatJSON) bool {
		return v.Type == "join" && v.User == "bob" && v.Node == "n2" && v.Term == "pts/2" && v.Conversation == "ops"
	})

	if _, err := io.WriteString(feed, "hello bob\ngrüße\n"); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"hello bob", "gr\xfc\xdfe"} {
		if ev := nextConvEvent(t, bob, "message"); ev.Text != want || ev.User != "alice" {
			t.Fatalf("bob got %+v, want %q", ev, want)
		}
	}
	if _, err := bob.SendConv(ctx, "ops", "hi alice"); err != nil {
		t.Fatal(err)
	}
	m := waitLine(t, &chatOut, "alice sees bob's message", func(v chatJSON) bool { return v.Type == "message" })
	if m.User != "bob" || m.Node != "n2" || m.Text != "hi alice" || m.ID == "" || time.Since(m.Time) > time.Minute {
		t.Fatalf("alice printed %+v", m)
	}
	// Issue 18: "--json has a verified field"; bob's session is trusted,
	// not proved.
	if m.Verified == nil || *m.Verified || m.SenderMethod != "trust" {
		t.Fatalf("alice printed verified=%v sender_method=%q for bob's trust session", m.Verified, m.SenderMethod)
	}

	who := runCLI(t, "", "who", "--session", c.Node(1).Addrs().Session, "--user", "dave", "#ops")
	if who.code != 0 || !strings.Contains(who.stdout, "alice") || !strings.Contains(who.stdout, "n1") ||
		!strings.Contains(who.stdout, "bob") || !strings.Contains(who.stdout, "n2") {
		t.Fatalf("who #ops: %+v", who)
	}
	if r := runCLI(t, "", "who", "--session", c.Node(1).Addrs().Session, "--user", "dave", "#nope"); r.code != 2 || !strings.Contains(r.stderr, "231") {
		t.Fatalf("who #nope: %+v", r)
	}

	// EOF: alice leaves, exit 0; bob sees her go.
	feed.Close()
	select {
	case code := <-chatDone:
		if code != 0 {
			t.Fatalf("chat exit %d, stderr %q", code, chatErr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("chat did not end on EOF")
	}
	if ev := nextConvEvent(t, bob, "leave"); ev.User != "alice" || ev.Reason != "left" {
		t.Fatalf("bob saw %+v", ev)
	}
	lcancel()
	select {
	case code := <-listenDone:
		if code != 0 {
			t.Fatalf("listen exit %d", code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("listen did not end")
	}
}

func TestChatUsage(t *testing.T) {
	t.Parallel()
	if r := runCLI(t, "", "chat", "a", "b"); r.code != 2 || !strings.Contains(r.stderr, "at most one") {
		t.Fatalf("two names: %+v", r)
	}
}

// Rule (issue 18): "msp chat marks unverified lines visibly and --json
// gets a verified field (and sender_method)".
func TestChatMarksUnverifiedLines(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 11, 30, 14, 3, 4, 0, time.Local)
	tests := []struct {
		name     string
		ev       sessionproto.ConvEvent
		text     string
		verified bool
		method   string
	}{
		{"verified member", sessionproto.ConvEvent{Type: "message", Conversation: "ops", User: "alice", Node: "n1", Text: "hi", Time: at, Verified: true, SenderMethod: "peercred"},
			"[14:03:04] alice@n1:\n", true, "peercred"},
		{"unauthenticated MSP through an open bridge", sessionproto.ConvEvent{Type: "message", Conversation: "ops", User: "alice", Node: "n1", Text: "hi", Time: at, SenderMethod: "none"},
			"[14:03:04] alice@n1 (UNVERIFIED: none):\n", false, "none"},
		{"trusted session", sessionproto.ConvEvent{Type: "message", Conversation: "ops", User: "bob", Node: "n2", Text: "hi", Time: at, SenderMethod: "trust"},
			"[14:03:04] bob@n2 (UNVERIFIED: trust):\n", false, "trust"},
		{"a local user claiming alice", sessionproto.ConvEvent{Type: "message", Conversation: "ops", User: "alice", Node: "n1", Text: "hi", Time: at, SenderMethod: "kernel", SenderUser: "mallory"},
			"[14:03:04] alice@n1 (UNVERIFIED: kernel, sent by local user mallory):\n", false, "kernel"},
		{"an old node's message says nothing", sessionproto.ConvEvent{Type: "message", Conversation: "ops", User: "carol", Node: "n3", Text: "hi", Time: at},
			"[14:03:04] carol@n3 (UNVERIFIED: none):\n", false, "none"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var b strings.Builder
			if err := (&chatPrinter{w: &b}).event(tt.ev); err != nil {
				t.Fatal(err)
			}
			if got := b.String(); !strings.HasPrefix(got, tt.text) {
				t.Fatalf("text %q, want it to start %q", got, tt.text)
			}
			b.Reset()
			if err := (&chatPrinter{w: &b, json: true}).event(tt.ev); err != nil {
				t.Fatal(err)
			}
			v := jsonLines(t, b.String())
			if len(v) != 1 || v[0].Verified == nil || *v[0].Verified != tt.verified || v[0].SenderMethod != tt.method {
				t.Fatalf("json %q", b.String())
			}
		})
	}
}
