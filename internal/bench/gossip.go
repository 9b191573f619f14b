package bench

import (
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/msprelay/msprelay/presence"
)

// gossipNode is one presence directory gossiping on 127.0.0.1. The harness
// builds its memberlist transport itself (through GossipConfig.Tune) so that
// it can simulate a crash: closing the transport's sockets silences the node
// at once, with no leave message, and peers must find out by probing, as
// after kill -9. presence exports no crash hook of its own.
type gossipNode struct {
	dir *presence.Directory
	tr  *memberlist.NetTransport
}

// crash closes the node's gossip sockets without leaving the cluster.
func (g *gossipNode) crash() error { return g.tr.Shutdown() }

// newTransport binds a memberlist transport on a random loopback port,
// retrying when the UDP half of the port is taken.
func newTransport() (*memberlist.NetTransport, error) {
	var err error
	for range 5 {
		var tr *memberlist.NetTransport
		tr, err = memberlist.NewNetTransport(&memberlist.NetTransportConfig{
			BindAddrs: []string{"127.0.0.1"},
			Logger:    log.New(io.Discard, "", 0),
		})
		if err == nil {
			return tr, nil
		}
		if !strings.Contains(err.Error(), "address already in use") {
			break
		}
	}
	return nil, fmt.Errorf("bench: gossip transport: %w", err)
}

func newGossipNode(name string, join []string) (*gossipNode, error) {
	g := &gossipNode{}
	var trErr error
	dir, err := presence.New(presence.Config{
		Name:   name,
		Logger: slog.New(slog.DiscardHandler),
		Gossip: presence.GossipConfig{
			BindAddr: "127.0.0.1:0",
			Join:     join,
			Profile:  "local",
			Tune: func(c *memberlist.Config) {
				g.tr, trErr = newTransport()
				if trErr == nil {
					c.Transport = g.tr
				}
			},
		},
	})
	if err == nil && trErr != nil {
		dir.Close()
		err = trErr
	}
	if err != nil {
		if g.tr != nil {
			g.tr.Shutdown()
		}
		return nil, fmt.Errorf("bench: presence %s: %w", name, err)
	}
	g.dir = dir
	return g, nil
}

// gossipCluster is n directories joined through the first one.
//
// Ownership: the cluster owns the directories and their Run goroutines;
// close closes every directory (gracefully) and waits for those goroutines.
type gossipCluster struct {
	nodes  []*gossipNode
	cancel context.CancelFunc
	wg     sync.WaitGroup
	// errs receives Run failures (a name conflict, say); buffered per node.
	errs chan error
}

// startGossipCluster starts n directories named prefix-1..prefix-n, each
// joining the first, and waits until every one lists all n members.
func startGossipCluster(ctx context.Context, n int, prefix string) (*gossipCluster, error) {
	runCtx, cancel := context.WithCancel(context.Background())
	c := &gossipCluster{cancel: cancel, errs: make(chan error, n)}
	var seed []string
	for i := range n {
		g, err := newGossipNode(fmt.Sprintf("%s-%d", prefix, i+1), seed)
		if err != nil {
			c.close()
			return nil, err
		}
		c.nodes = append(c.nodes, g)
		c.wg.Go(func() {
			if err := g.dir.Run(runCtx); err != nil {
				c.errs <- err
			}
		})
		if err := waitFor(ctx, 10*time.Second, func() bool { return g.dir.GossipAddr() != "" }); err != nil {
			c.close()
			return nil, fmt.Errorf("bench: gossip of %s did not start: %w", g.dir.Name(), err)
		}
		if i == 0 {
			seed = []string{g.dir.GossipAddr()}
		}
	}
	err := waitFor(ctx, 60*time.Second, func() bool {
		for _, g := range c.nodes {
			if len(g.dir.Members()) != n {
				return false
			}
		}
		return true
	})
	if err != nil {
		c.close()
		select {
		case rerr := <-c.errs:
			return nil, fmt.Errorf("bench: %d-node gossip cluster: %w", n, rerr)
		default:
		}
		return nil, fmt.Errorf("bench: %d-node gossip cluster did not converge: %w", n, err)
	}
	return c, nil
}

// close closes every directory at once and waits for their Run goroutines.
func (c *gossipCluster) close() {
	var wg sync.WaitGroup
	for _, g := range c.nodes {
		wg.Go(func() { g.dir.Close() })
	}
	wg.Wait()
	c.cancel()
	c.wg.Wait()
}

// eventClock records when each directory first delivered each event.
//
// Ownership: watch starts one goroutine per directory, which ends when its
// subscription ends (unwatch, or the directory closing); unwatch cancels
// the subscriptions and waits for those goroutines.
type eventClock struct {
	wg sync.WaitGroup

	// mu guards seen and subs.
	mu   sync.Mutex
	seen map[string]map[string]time.Time // "+user" or "-user" -> node -> time
	subs []*presence.Subscription
}

func newEventClock() *eventClock { return &eventClock{seen: map[string]map[string]time.Time{}} }

func (c *eventClock) watch(d *presence.Directory) {
	sub := d.Subscribe()
	c.mu.Lock()
	c.subs = append(c.subs, sub)
	c.mu.Unlock()
	name := d.Name()
	c.wg.Go(func() {
		for ev := range sub.C {
			now := time.Now()
			k := "+" + ev.Entry.User
			if ev.Type == presence.EventRemove {
				k = "-" + ev.Entry.User
			}
			c.mu.Lock()
			if c.seen[k] == nil {
				c.seen[k] = map[string]time.Time{}
			}
			if _, ok := c.seen[k][name]; !ok {
				c.seen[k][name] = now
			}
			c.mu.Unlock()
		}
	})
}

// unwatch ends every subscription and waits for the watchers.
func (c *eventClock) unwatch() {
	c.mu.Lock()
	subs := c.subs
	c.subs = nil
	c.mu.Unlock()
	for _, s := range subs {
		s.Cancel()
	}
	c.wg.Wait()
}

// last returns when the last of nodes delivered event k, once all have.
func (c *eventClock) last(k string, nodes []*gossipNode) (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var last time.Time
	for _, g := range nodes {
		at, ok := c.seen[k][g.dir.Name()]
		if !ok {
			return time.Time{}, false
		}
		if at.After(last) {
			last = at
		}
	}
	return last, true
}

// await waits (bounded) until every one of nodes delivered event k and
// returns how long after start the last one did.
func (c *eventClock) await(ctx context.Context, k string, nodes []*gossipNode, start time.Time, timeout time.Duration) (time.Duration, error) {
	var last time.Time
	err := waitFor(ctx, timeout, func() bool {
		var ok bool
		last, ok = c.last(k, nodes)
		return ok
	})
	if err != nil {
		return 0, fmt.Errorf("bench: event %s on %d nodes: %w", k, len(nodes), err)
	}
	return last.Sub(start), nil
}
