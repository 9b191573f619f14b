package switchboard

import (
	"context"
	"slices"
	"sync"

	"github.com/msprelay/msprelay/principal"
)

// BroadcastResult counts what a broadcast (wall) reached.
type BroadcastResult struct {
	Terminals int // terminals that took the message
	Nodes     int // nodes with at least one such terminal
	Refused   int // terminals that did not (mesg n, busy, slow, node down)
}

// Broadcast delivers d to every terminal in the presence directory (or, with
// node set, to every terminal of that node): every signed-in session and
// every tty whose user accepts messages. It is wall(1) for the cluster.
// Terminals of other nodes are reached over the deliver path with the
// target list taken from the directory, one request per node, the nodes
// in parallel (one goroutine each, all ended before Broadcast returns).
// Nothing is queued: a terminal that refuses (mesg n, busy) is counted in
// Refused. d.Recipient should be "" (any user), d.ID unique per broadcast.
// Who may broadcast, and how often, is the caller's decision.
func (s *Switchboard) Broadcast(ctx context.Context, d *Delivery, node string) BroadcastResult {
	var entries []principal.Entry
	if node != "" {
		entries = s.dir.ByNode(node)
	} else {
		entries = s.dir.All()
	}
	byNode := map[string][]principal.Entry{}
	for _, e := range entries {
		if e.State == principal.Offline {
			continue
		}
		byNode[e.Node] = append(byNode[e.Node], e)
	}
	nodes := make([]string, 0, len(byNode))
	for n := range byNode {
		nodes = append(nodes, n)
	}
	slices.Sort(nodes)
	results := make([][]Result, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Each node's request gets its own copy: the local path may
			// write d's fields.
			dc := *d
			results[i] = s.deliverTo(ctx, n, &dc, byNode[n])
		}()
	}
	wg.Wait()
	var r BroadcastResult
	for _, rs := range results {
		got := false
		for _, x := range rs {
			if x.Status == Delivered {
				r.Terminals++
				got = true
			} else {
				r.Refused++
			}
		}
		if got {
			r.Nodes++
		}
	}
	return r
}

// UserLines returns this node's lines of user (sessions and ttys), for
// commands that change all of a user's terminals at once.
func (s *Switchboard) UserLines(user string) []*Line {
	u := principal.CanonicalUser(user)
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*Line
	for k, l := range s.lines {
		if k.user == u {
			out = append(out, l)
		}
	}
	return out
}

// Kind tells a session's line from a tty's.
func (l *Line) Kind() principal.Kind { return kindOf(l.t) }
