package node

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/msprelay/msprelay/broker"
	"github.com/msprelay/msprelay/internal/gossiptest"
	"github.com/msprelay/msprelay/internal/waitfor"
	"github.com/msprelay/msprelay/principal"
)

// Issue 22: "Crash detection <= 3 s" on the default lan profile. Three
// nodes on a relay that knows them only by their gen-creds users (so the
// node permissions must let one node probe another's status subject);
// one is killed hard: its gossip goes silent without a leave and its NATS
// connection closes, as a dead process's sockets do. The others drop its
// principals through the node's own Confirm hook and probe responder;
// memberlist, tuned to need 1,000 s, cannot have done it. How soon is a
// figure for the benchmark (mspbench's scale crash phase).
func TestKilledNodeDroppedByTheNATSSignalOnLan(t *testing.T) {
	t.Parallel()
	names := []string{"k1", "k2", "k3"}
	credDir := t.TempDir()
	creds, err := broker.GenerateCredentials(names, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := broker.WriteCredentials(credDir, creds); err != nil {
		t.Fatal(err)
	}
	relay, err := broker.New(broker.Config{Name: "crashrelay", Listen: "127.0.0.1:0", JetStream: true,
		DataDir: t.TempDir(), ConfigFile: filepath.Join(credDir, broker.AuthConfFile)})
	if err != nil {
		t.Fatal(err)
	}
	if err := relay.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { relay.Close() })
	var nodes []*Node
	var trs []*gossiptest.MuteTransport
	for i, name := range names {
		cfg := DefaultConfig()
		cfg.Name = name
		cfg.MSPAddr, cfg.SessionAddr, cfg.SessionSocket, cfg.SessionAuth = "127.0.0.1:0", "127.0.0.1:0", "", AuthTrust
		cfg.DataDir = t.TempDir()
		cfg.GossipAddr, cfg.GossipProfile = "127.0.0.1:0", "lan"
		cfg.NATSURLs = []string{relay.ClientURL()}
		cfg.NATSNkeyFile = filepath.Join(credDir, name+broker.NkeySuffix)
		cfg.Terminals = false
		cfg.Logger = slog.New(slog.DiscardHandler)
		if i > 0 {
			cfg.Join = []string{nodes[0].Addrs().Gossip}
		}
		nd, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		// Memberlist alone would declare the killed node dead only after
		// 1,000 s: a drop within the test is the NATS signal's.
		tr := &gossiptest.MuteTransport{}
		nd.gossipTune = tr.Tune(t)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err = nd.Start(ctx)
		cancel()
		if err != nil {
			t.Fatalf("start %s: %v", name, err)
		}
		t.Cleanup(func() { nd.Close() })
		nodes, trs = append(nodes, nd), append(trs, tr)
	}
	waitfor.True(t, 20*time.Second, "every node lists every member", func() bool {
		for _, nd := range nodes {
			if len(nd.dir.Members()) != len(nodes) {
				return false
			}
		}
		return true
	})
	for i, nd := range nodes {
		if err := nd.dir.Upsert(principal.Entry{User: fmt.Sprintf("sentinel%d", i), Term: "tty", State: principal.Online}); err != nil {
			t.Fatal(err)
		}
	}
	waitfor.True(t, 10*time.Second, "every node sees every sentinel", func() bool {
		for _, nd := range nodes {
			if len(nd.dir.All()) != len(nodes) {
				return false
			}
		}
		return true
	})
	waitfor.True(t, 20*time.Second, "every node has seen every other answer on NATS", func() bool {
		for _, a := range nodes {
			for _, b := range nodes {
				if a != b && !a.dir.AnsweredOnNATS(b.cfg.Name) {
					return false
				}
			}
		}
		return true
	})
	start := time.Now()
	trs[2].Mute.Store(true)
	nodes[2].nc.Close()
	gone := waitfor.Until(30*time.Second, func() bool {
		return len(nodes[0].dir.Lookup("sentinel2")) == 0 && len(nodes[1].dir.Lookup("sentinel2")) == 0
	})
	if !gone {
		t.Fatalf("the killed node's principal still listed %v after the kill", time.Since(start).Round(time.Millisecond))
	}
	t.Logf("killed node's principal gone on both others after %v", time.Since(start).Round(time.Millisecond))
	if len(nodes[0].dir.Lookup("sentinel1")) != 1 || len(nodes[1].dir.Lookup("sentinel0")) != 1 {
		t.Fatal("a live node's principal went too")
	}
}
