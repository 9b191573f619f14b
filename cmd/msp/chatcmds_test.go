package main

import (
	"context"
	"io"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/msprelay/msprelay/internal/syncbuf"

	"github.com/msprelay/msprelay/internal/testcluster"
	"github.com/msprelay/msprelay/internal/waitfor"
	"github.com/msprelay/msprelay/node"
	"github.com/msprelay/msprelay/principal"
)

// A line starting with "/" is a command; "//" sends one "/"; an unknown
// command is not sent.
func TestParseChatLine(t *testing.T) {
	t.Parallel()
	cases := []struct {
		in   string
		want chatCommand
	}{
		{"hello", chatCommand{text: "hello"}},
		{"//etc/passwd is a file", chatCommand{text: "/etc/passwd is a file"}},
		{"/invite bob carol", chatCommand{name: "invite", args: []string{"bob", "carol"}}},
		{"/INVITE bob", chatCommand{name: "invite", args: []string{"bob"}}},
		{"/ring bob", chatCommand{name: "invite", args: []string{"bob"}}},
		{"/who", chatCommand{name: "who", args: []string{}}},
		{"/leave", chatCommand{name: "leave", args: []string{}}},
		{"/quit", chatCommand{name: "leave", args: []string{}}},
		{"/help", chatCommand{name: "help", args: []string{}}},
		{"/leev", chatCommand{name: "?leev"}},
		{"/", chatCommand{name: "?"}},
	}
	for _, tc := range cases {
		if got := parseChatLine(tc.in); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("parseChatLine(%q) = %#v, want %#v", tc.in, got, tc.want)
		}
	}
}

// Issue 20 items 2 and 5: chat shows "* rang bob (1 terminal)", takes
// /invite, /who, /leave, /help inside the chat, says errors in one sentence
// without a protocol code, and through a restart of its node reconnects,
// rejoins the room and goes on.
func TestChatCommandsAndReconnect(t *testing.T) {
	t.Parallel()
	sock := filepath.Join(t.TempDir(), "s.sock")
	c := testcluster.Start(t, 2, testcluster.Options{Configure: func(i int, cfg *node.Config) {
		if i == 1 {
			cfg.SessionSocket = sock
		}
	}})
	bob := c.SignIn(0, "bob", "pts/2", principal.Online)
	bob.Conversations()
	c.WaitPresent("bob", "pts/2", c.Name(0), true)

	stdin, feed := io.Pipe()
	defer feed.Close()
	var out, errb syncbuf.Buffer
	done := make(chan int, 1)
	go func() {
		done <- run(context.Background(), []string{"chat", "--session", "unix:" + sock, "--user", "alice", "--term", "pts/1", "#ops"},
			env{stdin: stdin, stdout: &out, stderr: &errb, getenv: func(string) string { return "" }})
	}()
	say := func(l string) {
		t.Helper()
		if _, err := io.WriteString(feed, l+"\n"); err != nil {
			t.Fatalf("write %q: %v", l, err)
		}
	}
	waitfor.True(t, 10*time.Second, "alice in #ops", func() bool { return strings.Contains(errb.String(), "in #ops as alice") })

	say("/invite bob")
	waitfor.True(t, 10*time.Second, "ring confirmed", func() bool { return strings.Contains(out.String(), "* rang bob (1 terminal)") })
	nextConvEvent(t, bob, "invite")
	if _, _, err := bob.Join(context.Background(), "ops"); err != nil {
		t.Fatal(err)
	}
	say("/invite ghost")
	waitfor.True(t, 10*time.Second, "ring refused in words", func() bool {
		return strings.Contains(errb.String(), "ghost is not signed in anywhere")
	})
	if strings.Contains(errb.String(), "217") || strings.Contains(errb.String(), "session:") {
		t.Errorf("error shows a protocol code: %s", errb.String())
	}
	say("/who")
	waitfor.True(t, 10*time.Second, "roster shown", func() bool { return strings.Contains(out.String(), "bob ("+c.Name(0)+" pts/2)") })
	say("/help")
	waitfor.True(t, 10*time.Second, "help shown", func() bool { return strings.Contains(errb.String(), "/invite USER") })
	say("/bogus")
	waitfor.True(t, 10*time.Second, "unknown command refused", func() bool { return strings.Contains(errb.String(), "unknown command /bogus (not sent)") })
	say("//slash")
	if ev := nextConvEvent(t, bob, "message"); ev.Text != "/slash" {
		t.Fatalf("bob got %q, want /slash (and nothing of the commands)", ev.Text)
	}

	// The node restarts; the chat says so, reconnects and rejoins.
	c.Stop(1)
	waitfor.True(t, 10*time.Second, "lost line", func() bool { return strings.Contains(errb.String(), "lost connection to node") })
	c.Restart(1)
	waitfor.True(t, 20*time.Second, "reconnected line", func() bool {
		return strings.Contains(errb.String(), "reconnected to "+c.Name(1)+" as alice at pts/1")
	})
	say("after the restart")
	for {
		ev := nextConvEvent(t, bob, "message")
		if ev.Text == "after the restart" {
			break
		}
	}
	say("/leave")
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("exit %d after /leave: %s", code, errb.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("chat did not end after /leave")
	}
}
