package presence

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/msprelay/msprelay/internal/waitfor"
)

// Issue 14: "Give presence a Start that returns once gossip is bound", so
// that its owner need not poll a blocking Run for readiness. Start binds
// and returns; Run after Start reports and waits; Close ends both; a
// second Start and a Start after Close are refused.
func TestStartReturnsOnceGossipIsBound(t *testing.T) {
	t.Parallel()
	d, err := New(Config{Name: "n", Logger: testLogger(), Gossip: GossipConfig{BindAddr: "127.0.0.1:0", Profile: "local", Tune: fastTune}})
	if err != nil {
		t.Fatal(err)
	}
	if got := d.GossipAddr(); got != "" {
		t.Fatalf("GossipAddr before Start = %q: New must start nothing", got)
	}
	if err := d.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	if d.GossipAddr() == "" {
		t.Fatal("no gossip address when Start returned")
	}
	if err := d.Start(t.Context()); err == nil {
		t.Fatal("second Start succeeded")
	}
	runErr := make(chan error, 1)
	go func() { runErr <- d.Run(context.Background()) }()
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	// Run returns nil, or ErrClosed when Close came before it looked.
	if err := waitfor.Recv(t, runErr, 10*time.Second, "Run to return after Close"); err != nil && !errors.Is(err, ErrClosed) {
		t.Fatalf("Run after Start and Close = %v", err)
	}
	if err := d.Start(t.Context()); !errors.Is(err, ErrClosed) {
		t.Fatalf("Start after Close = %v, want ErrClosed", err)
	}

	// Without gossip Start has nothing to bind; after Close it says so.
	local, err := New(Config{Name: "solo", Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	if err := local.Start(t.Context()); err != nil || local.GossipAddr() != "" {
		t.Fatalf("Start without gossip = %v, addr %q", err, local.GossipAddr())
	}
	local.Close()
	if err := local.Start(t.Context()); !errors.Is(err, ErrClosed) {
		t.Fatalf("Start after Close without gossip = %v, want ErrClosed", err)
	}
}
