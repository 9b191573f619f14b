package broker

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Three servers joined by routes form one cluster: a client on one server
// reaches a responder on another.
func TestClusterRoutesCarryRequestReply(t *testing.T) {
	t.Parallel()
	seed := started(t, Config{Name: "r1", Listen: "127.0.0.1:0", Cluster: "127.0.0.1:0", ClusterName: "site"})
	route := "nats-route://" + seed.Addrs().Cluster
	peers := []*Broker{seed}
	for _, name := range []string{"r2", "r3"} {
		peers = append(peers, started(t, Config{
			Name: name, Listen: "127.0.0.1:0", Cluster: "127.0.0.1:0", ClusterName: "site", Routes: []string{route},
		}))
	}
	// Implicit routes (r2<->r3) come from gossip through the seed.
	waitFor(t, 10*time.Second, "a full mesh of 3", func() bool {
		for _, p := range peers {
			if p.Server().NumRemotes() != 2 {
				return false
			}
		}
		return true
	})
	for i, p := range peers {
		serve(t, connect(t, p), fmt.Sprintf("svc.r%d", i+1), p.cfg.Name)
	}
	for i, from := range peers {
		nc := connect(t, from)
		for j := range peers {
			if i == j {
				continue
			}
			subject := fmt.Sprintf("svc.r%d", j+1)
			want := fmt.Sprintf("r%d:from r%d", j+1, i+1)
			if got := requestEventually(t, nc, subject, fmt.Sprintf("from r%d", i+1)); got != want {
				t.Errorf("%s via %s: reply %q, want %q", subject, from.cfg.Name, got, want)
			}
		}
	}
}

// Two servers joined by a gateway or a leafnode link reach each other's
// responders in both directions.
func TestLinkedPairsCarryRequestReply(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		first  func(t *testing.T) Config
		second func(t *testing.T, first *Broker) Config
		linked func(a, b *Broker) bool
	}{
		{
			// Only west names east; the reverse link is gossiped.
			name:  "gateways join two sites",
			first: func(*testing.T) Config { return Config{Name: "e1", ClusterName: "east", Gateway: "127.0.0.1:0"} },
			second: func(_ *testing.T, east *Broker) Config {
				return Config{
					Name: "w1", GatewayName: "west", Gateway: "127.0.0.1:0",
					Gateways: map[string][]string{"east": {"nats://" + east.Addrs().Gateway}},
				}
			},
			linked: func(a, b *Broker) bool {
				return a.Server().NumOutboundGateways() == 1 && b.Server().NumOutboundGateways() == 1
			},
		},
		{
			// A node-style server (in-process only, JetStream in its own
			// domain) joins a relay hub.
			name: "a leafnode joins a hub",
			first: func(t *testing.T) Config {
				return Config{Name: "hub", Leafnode: "127.0.0.1:0", JetStream: true, DataDir: t.TempDir(), Domain: "hub"}
			},
			second: func(t *testing.T, hub *Broker) Config {
				return Config{
					Name: "leaf", JetStream: true, DataDir: t.TempDir(), Domain: "leaf",
					LeafRemotes: []string{"nats-leaf://" + hub.Addrs().Leafnode},
				}
			},
			linked: func(a, b *Broker) bool { return a.Server().NumLeafNodes() == 1 && b.Server().NumLeafNodes() == 1 },
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			a := started(t, tc.first(t))
			b := started(t, tc.second(t, a))
			waitFor(t, 10*time.Second, "the link", func() bool { return tc.linked(a, b) })
			ncA, ncB := connect(t, a), connect(t, b)
			serve(t, ncA, "svc.a", a.cfg.Name)
			serve(t, ncB, "svc.b", b.cfg.Name)
			if got, want := requestEventually(t, ncB, "svc.a", "hi"), a.cfg.Name+":hi"; got != want {
				t.Errorf("%s->%s reply %q, want %q", b.cfg.Name, a.cfg.Name, got, want)
			}
			if got, want := requestEventually(t, ncA, "svc.b", "hi"), b.cfg.Name+":hi"; got != want {
				t.Errorf("%s->%s reply %q, want %q", a.cfg.Name, b.cfg.Name, got, want)
			}
		})
	}
}

// A relay that both runs a gateway and accepts leafnodes needs a system
// account, which comes from the config file along with the accounts;
// a leafnode joins with credentials of the application account.
func TestGatewayAndLeafnodesWithAccountsFromFile(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "relay.conf")
	conf := `accounts {
  SYS { users: [{user: sys, password: sys}] }
  MSP { users: [{user: relay, password: pw}] }
}
system_account: SYS
`
	if err := os.WriteFile(file, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	hub := started(t, Config{
		Name: "hub", ConfigFile: file, Listen: "127.0.0.1:0",
		Gateway: "127.0.0.1:0", GatewayName: "site", Leafnode: "127.0.0.1:0",
	})
	leaf := started(t, Config{Name: "leaf", LeafRemotes: []string{"nats-leaf://relay:pw@" + hub.Addrs().Leafnode}})
	waitFor(t, 10*time.Second, "the leafnode connection", func() bool { return hub.Server().NumLeafNodes() == 1 })
	hubNC, err := dialTCP(t, hub.ClientURL(), nats.UserInfo("relay", "pw"))
	if err != nil {
		t.Fatal(err)
	}
	serve(t, hubNC, "svc.hub", "hub")
	if got := requestEventually(t, connect(t, leaf), "svc.hub", "x"); got != "hub:x" {
		t.Errorf("leaf->hub reply %q, want hub:x", got)
	}
}

// Relays with --data form a JetStream cluster: a replicated stream keeps
// accepting and serving messages when one of three servers stops.
func TestClusterJetStreamSurvivesOneServer(t *testing.T) {
	t.Parallel()
	// Every member lists every route, itself included, so the cluster
	// ports must be known first: reserve them, then hand them over.
	var routes []string
	for range 3 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		routes = append(routes, "nats-route://"+l.Addr().String())
		l.Close()
	}
	var peers []*Broker
	for i := range 3 {
		peers = append(peers, started(t, Config{
			Name: fmt.Sprintf("js%d", i+1), Listen: "127.0.0.1:0", Cluster: routes[i][len("nats-route://"):],
			ClusterName: "js", Routes: routes, JetStream: true, DataDir: t.TempDir(),
		}))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	js, err := jetstream.New(connect(t, peers[0]))
	if err != nil {
		t.Fatal(err)
	}
	// Each attempt gets its own short deadline: without a meta leader a
	// JetStream API request simply goes unanswered.
	attempt := func(f func(ctx context.Context) error) func() bool {
		return func() bool {
			actx, cancel := context.WithTimeout(ctx, time.Second)
			defer cancel()
			return f(actx) == nil
		}
	}
	waitFor(t, 20*time.Second, "an R3 stream (meta leader elected)", attempt(func(ctx context.Context) error {
		_, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "MB", Subjects: []string{"mb.>"}, Replicas: 3})
		return err
	}))
	if _, err := js.Publish(ctx, "mb.alice", []byte("one")); err != nil {
		t.Fatalf("publish before the stop: %v", err)
	}
	peers[2].Close()
	var ack *jetstream.PubAck
	waitFor(t, 20*time.Second, "a publish with js3 gone", attempt(func(ctx context.Context) error {
		ack, err = js.Publish(ctx, "mb.alice", []byte("two"), jetstream.WithExpectLastSequence(1))
		return err
	}))
	if ack.Sequence != 2 {
		t.Fatalf("second publish got sequence %d, want 2", ack.Sequence)
	}
	js2, err := jetstream.New(connect(t, peers[1]))
	if err != nil {
		t.Fatal(err)
	}
	stream, err := js2.Stream(ctx, "MB")
	if err != nil {
		t.Fatal(err)
	}
	for seq, want := range map[uint64]string{1: "one", 2: "two"} {
		m, err := stream.GetMsg(ctx, seq)
		if err != nil || string(m.Data) != want {
			t.Errorf("message %d via js2: %v, %v; want %q", seq, m, err, want)
		}
	}
}

// Relays given a Site hold the replicas of a replicated stream in distinct
// sites (issue 22: "place or replicate the mailbox and room streams so no
// one site holds them all"): four relays of one cluster, two of them in
// site east, and every R3 stream lands on one relay of each site, whichever
// relay placed it. (Without the site rule half of all placements would put
// two replicas in east.)
//
// Not parallel: four JetStream servers electing leaders next to the other
// cluster tests slowed their elections past their bounds on a loaded
// machine; alone it is safe to run in parallel.
func TestSiteTagsPlaceReplicasInDistinctSites(t *testing.T) {
	sites := []string{"East", "east", "west", "south"}
	var routes []string
	for range sites {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		routes = append(routes, "nats-route://"+l.Addr().String())
		l.Close()
	}
	site := map[string]string{}
	var peers []*Broker
	for i, s := range sites {
		name := fmt.Sprintf("s%d", i+1)
		site[name] = strings.ToLower(s) // "East" and "east" are one site
		peers = append(peers, started(t, Config{
			Name: name, Listen: "127.0.0.1:0", Cluster: routes[i][len("nats-route://"):],
			ClusterName: "js", Routes: routes, JetStream: true, DataDir: t.TempDir(), Site: s,
		}))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for i := range 4 {
		js, err := jetstream.New(connect(t, peers[i%len(peers)]))
		if err != nil {
			t.Fatal(err)
		}
		name := fmt.Sprintf("S%d", i)
		var info *jetstream.StreamInfo
		waitFor(t, 30*time.Second, "an R3 stream "+name, func() bool {
			actx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			st, err := js.CreateStream(actx, jetstream.StreamConfig{Name: name, Subjects: []string{"s" + name + ".>"}, Replicas: 3})
			if err != nil {
				return false
			}
			info, err = st.Info(actx)
			return err == nil && info.Cluster != nil && info.Cluster.Leader != "" && len(info.Cluster.Replicas) == 2
		})
		held := map[string]string{site[info.Cluster.Leader]: info.Cluster.Leader}
		for _, r := range info.Cluster.Replicas {
			if other, dup := held[site[r.Name]]; dup {
				t.Errorf("stream %s: replicas on %s and %s, both in site %s", name, other, r.Name, site[r.Name])
			}
			held[site[r.Name]] = r.Name
		}
		if len(held) != 3 {
			t.Errorf("stream %s: replicas in sites %v, want one in each of east, west, south", name, held)
		}
	}
}
