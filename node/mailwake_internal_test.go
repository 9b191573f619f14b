package node

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/msprelay/msprelay/internal/waitfor"
	"github.com/msprelay/msprelay/presence"
)

// gossipDir runs a real gossiping directory named name on 127.0.0.1:0,
// joining join if given; it is closed at cleanup.
func gossipDir(t *testing.T, name string, join ...string) *presence.Directory {
	t.Helper()
	d, err := presence.New(presence.Config{Name: name, Logger: slog.New(slog.DiscardHandler),
		Gossip: presence.GossipConfig{BindAddr: "127.0.0.1:0", Profile: "local", Join: join}})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = d.Run(ctx) }()
	t.Cleanup(func() { cancel(); d.Close(); <-done })
	return d
}

// docs/FEDERATION.md "Several sites": "A sweep follows the gossip members
// of the other sites appearing again (they were declared dead during the
// cut)". A member that was not listed at the last look is news; members
// already listed, and this node itself, are not.
func TestMemberWatchReportsAMemberThatAppears(t *testing.T) {
	t.Parallel()
	a := gossipDir(t, "a")
	w := memberWatch{dir: a}
	if back := w.look(); back != "" {
		t.Fatalf("first look = %q, want no news (it only records)", back)
	}
	if back := w.look(); back != "" {
		t.Fatalf("look with nothing changed = %q, want no news", back)
	}
	gossipDir(t, "b", a.GossipAddr())
	got := ""
	waitfor.True(t, 10*time.Second, "b listed by a's watch", func() bool {
		got = w.look()
		return got != ""
	})
	if got != "b" {
		t.Fatalf("look = %q, want b", got)
	}
	if back := w.look(); back != "" {
		t.Fatalf("look after b was reported = %q, want no news", back)
	}
}
