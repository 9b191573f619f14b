package switchboard

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/msprelay/msprelay/internal/waitfor"
	"github.com/msprelay/msprelay/presence"
	"github.com/msprelay/msprelay/principal"
)

// gossipDir is a presence directory gossiping on 127.0.0.1, joined to join.
func gossipDir(t *testing.T, name string, join ...string) *presence.Directory {
	t.Helper()
	dir, err := presence.New(presence.Config{Name: name, Logger: slog.New(slog.DiscardHandler),
		Gossip: presence.GossipConfig{BindAddr: "127.0.0.1:0", Join: join, Profile: "local"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dir.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := dir.Start(ctx); err != nil {
		t.Fatal(err)
	}
	return dir
}

// "The right terminal" tries alice's terminals in turn when one fails, but
// the whole delivery keeps to ForwardTimeout (there is no deadline context
// per message): after a node that did not answer within it, her other
// terminals are not tried, and say so.
func TestRightTerminalFallbackKeepsToForwardTimeout(t *testing.T) {
	t.Parallel()
	url := fedRelay(t)
	const timeout = 300 * time.Millisecond
	dirA := gossipDir(t, "a")
	dirB := gossipDir(t, "b", dirA.GossipAddr())
	dirC := gossipDir(t, "c", dirA.GossipAddr())
	sb := fedBoardOn(t, url, dirA, Config{ForwardTimeout: timeout})
	b := newAnswerer(t, url, "b") // holds every request: b never answers
	c := newAnswerer(t, url, "c")
	now := time.Now()
	// b's terminal is the more recently active one, so it is tried first.
	for _, e := range []struct {
		dir  *presence.Directory
		term string
		last time.Time
	}{{dirB, "pts/1", now}, {dirC, "pts/2", now.Add(-time.Minute)}} {
		if err := e.dir.Upsert(principal.Entry{User: "alice", Term: e.term, State: principal.Online, Since: now.Add(-time.Hour), LastActive: e.last}); err != nil {
			t.Fatal(err)
		}
	}
	waitfor.True(t, 10*time.Second, "alice's terminals on b and c to reach a", func() bool { return len(dirA.Lookup("alice")) == 2 })
	o := sb.Send(context.Background(), &Delivery{ID: MessageID("bob", "", "1", "192.0.2.1"), Recipient: "alice", Sender: "bob", Text: "hi",
		Origin: Origin{Node: "a", Transport: "tcp"}, Time: time.Now()})
	b.next(t) // it was asked, and never answered
	c.none(t, 2*timeout)
	if o.Delivered() || len(o.Results) != 2 {
		t.Fatalf("outcome %+v, want two failed results", o)
	}
	first, second := o.Results[0], o.Results[1]
	if first.Node != "b" || !errors.Is(first.Err, ErrTimeout) {
		t.Errorf("first result %+v, want b timed out", first)
	}
	if second.Node != "c" || second.Status != Failed || !errors.Is(second.Err, ErrTimeout) {
		t.Errorf("second result %+v, want c not tried: failed, timed out", second)
	}
}
