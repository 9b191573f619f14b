package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/msprelay/msprelay/msp"
	"github.com/msprelay/msprelay/ops"
	"github.com/msprelay/msprelay/opsapi"
	"github.com/msprelay/msprelay/presence"
	"github.com/msprelay/msprelay/principal"
)

// statusTimeout bounds each node's answer to a cluster status request.
const statusTimeout = 1500 * time.Millisecond

// StatusSubject is the NATS subject on which node answers status requests
// (an empty request; the reply is one opsapi.NodeStatus in JSON).
func StatusSubject(node string) string { return "msp.node." + node + ".status" }

// ProbeHeader marks a status request that only asks whether the node is
// there (presence's second failure signal, see confirmGone): it is
// answered at once with an empty body, without the readiness checks.
const ProbeHeader = "Msp-Probe"

// confirmGone is presence's Confirm hook (GossipConfig.Confirm): it asks
// whether node has a subscriber on its status subject. Only NATS's "no
// responders" (the node's connection, and with it its subscriptions, is
// gone: a dead process loses it at once) says gone; an answer, a timeout
// or any other error says nothing, so that a stalled node, or this
// node's own NATS trouble, drops no one. Node credentials may publish to
// every node's status subject already (msp status asks them all).
func (n *Node) confirmGone(ctx context.Context, node string) (bool, error) {
	m := nats.NewMsg(StatusSubject(node))
	m.Header.Set(ProbeHeader, "1")
	_, err := n.nc.RequestMsgWithContext(ctx, m)
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		return true, nil
	case err != nil:
		return false, fmt.Errorf("node: probing %s: %w", node, err)
	}
	return false, nil
}

// selfStatus is this node's answer to a status request.
func (o *nodeOps) selfStatus(ctx context.Context) opsapi.NodeStatus {
	rd := ops.Ready(ctx, o.checks())
	started := o.started
	return opsapi.NodeStatus{Name: o.n.cfg.Name, Reachable: true, Status: rd.Status, Checks: rd.Checks,
		Version: o.n.cfg.Version, StartedAt: &started, MSP: o.n.addrs.MSP, Warnings: o.n.warnings()}
}

// opsSource answers the HTTP API from the node's directory, switchboard
// and mailbox. Hidden terminals never leave it.
type opsSource nodeOps

func (s *opsSource) Self() string        { return s.n.cfg.Name }
func (s *opsSource) Rates() opsapi.Rates { return s.rates.Rates() }

// whoEntry is e as `msp who --json` prints it.
func whoEntry(e *principal.Entry) opsapi.WhoEntry {
	aliases := make([]string, 0, len(e.Aliases))
	for _, a := range e.Aliases {
		aliases = append(aliases, msp.Latin1ToUTF8(a))
	}
	// Whole seconds in UTC, as the session protocol carries them, so that
	// the API and `msp who --json` print the same document.
	since, active := e.Since.UTC().Truncate(time.Second), e.LastActive.UTC().Truncate(time.Second)
	w := opsapi.WhoEntry{User: msp.Latin1ToUTF8(e.User), Node: e.Node, Term: msp.Latin1ToUTF8(e.Term),
		State: e.State.String(), Aliases: aliases, Since: &since, LastActive: &active, Kind: e.Kind.String()}
	if e.Kind == principal.KindTTY {
		idle := int64(max(time.Since(e.LastActive), 0) / time.Second)
		w.Idle = &idle
	}
	return w
}

func (s *opsSource) Who() []opsapi.WhoEntry {
	var out []opsapi.WhoEntry
	for _, e := range s.n.dir.All() {
		if e.State == principal.Hidden {
			continue
		}
		out = append(out, whoEntry(&e))
	}
	return out
}

func (s *opsSource) Changes() (<-chan presence.Event, func()) {
	sub := s.n.dir.Subscribe()
	return sub.C, sub.Cancel
}

// Nodes asks every node the directory or gossip knows of, in parallel.
func (s *opsSource) Nodes(ctx context.Context) []opsapi.NodeStatus {
	n := s.n
	members := map[string]presence.Member{}
	for _, m := range n.dir.Members() {
		members[m.Name] = m
	}
	names := n.dir.Nodes()
	for name := range members {
		if !slices.Contains(names, name) {
			names = append(names, name)
		}
	}
	if !slices.Contains(names, n.cfg.Name) {
		names = append(names, n.cfg.Name)
	}
	slices.Sort(names)
	out := make([]opsapi.NodeStatus, len(names))
	var wg sync.WaitGroup
	for i, name := range names {
		wg.Go(func() {
			var st opsapi.NodeStatus
			if name == n.cfg.Name {
				st = (*nodeOps)(s).selfStatus(ctx)
				st.Self = true
			} else {
				st = s.askStatus(ctx, name)
			}
			m, ok := members[name]
			st.Name, st.Gossip, st.Synced = name, m.Addr, ok && m.Synced
			st.Principals = visible(n.dir.ByNode(name))
			out[i] = st
		})
	}
	wg.Wait()
	return out
}

// visible counts the entries that are not hidden: a hidden terminal
// counts as absent, so that no count moves when a hidden user signs in or
// out.
func visible(es []principal.Entry) int {
	c := 0
	for i := range es {
		if es[i].State != principal.Hidden {
			c++
		}
	}
	return c
}

func (s *opsSource) askStatus(ctx context.Context, name string) opsapi.NodeStatus {
	ctx, cancel := context.WithTimeout(ctx, statusTimeout)
	defer cancel()
	bad := func(err error) opsapi.NodeStatus {
		return opsapi.NodeStatus{Name: name, Status: "unreachable", Error: err.Error()}
	}
	m, err := s.n.nc.RequestWithContext(ctx, StatusSubject(name), nil)
	if err != nil {
		return bad(err)
	}
	var st opsapi.NodeStatus
	if len(m.Data) > 64<<10 {
		return bad(errors.New("status reply too large"))
	}
	if err := json.Unmarshal(m.Data, &st); err != nil {
		return bad(fmt.Errorf("bad status reply: %w", err))
	}
	if st.Status != "ready" && st.Status != "unavailable" {
		st.Status = "unavailable"
	}
	st.Reachable, st.Self, st.Error = true, false, ""
	return st
}

// User shows what may be shown about one user: her visible terminals,
// her last record as offline when she has none visible (a hidden user
// looks offline), and, while she is visibly signed in, her mailbox depth.
// A user with neither terminals nor a record is not found.
func (s *opsSource) User(ctx context.Context, name string) (opsapi.UserInfo, error) {
	n := s.n
	// The URL is UTF-8; names are ISO 8859-1 octets inside the cluster.
	name, err := msp.UTF8ToLatin1(name)
	if err != nil {
		return opsapi.UserInfo{}, fmt.Errorf("bad user name: %w", err)
	}
	if err := principal.ValidUser(name); err != nil {
		return opsapi.UserInfo{}, fmt.Errorf("bad user name: %w", err)
	}
	u := opsapi.UserInfo{User: msp.Latin1ToUTF8(principal.CanonicalUser(name)), Terminals: []opsapi.WhoEntry{}}
	for _, e := range n.dir.Lookup(name) {
		if e.State != principal.Hidden && e.User == principal.CanonicalUser(name) {
			u.Terminals = append(u.Terminals, whoEntry(&e))
		}
	}
	// With no visible terminal, a sign-in record is a hidden terminal's:
	// shown as offline, like a sign-out, so that she looks offline (issue
	// 12: hidden users are indistinguishable from offline ones).
	if seen, err := n.sb.LastSeen(ctx, name); err == nil && !seen.Time.IsZero() && (seen.State == principal.Offline.String() || len(u.Terminals) == 0) {
		u.LastSeen = &opsapi.LastSeen{Time: seen.Time.UTC().Truncate(time.Second), Node: seen.Node, Term: msp.Latin1ToUTF8(seen.Term), State: principal.Offline.String()}
	}
	if len(u.Terminals) == 0 && u.LastSeen == nil {
		return opsapi.UserInfo{}, ops.ErrNotFound
	}
	// Her mailbox depth only while she is visibly signed in: a hidden
	// user's mail drains to her and an offline user's waits, so any depth
	// shown for a user without visible terminals would tell the two apart
	// (issue 18). What would wait had she been offline is not known once
	// her mail is delivered, so nothing is shown rather than a guess.
	if len(u.Terminals) > 0 && n.mbox != nil && n.nc.IsConnected() {
		if depth, err := n.mbox.Depth(ctx, name); err == nil {
			u.MailboxDepth = &depth
		}
	}
	return u, nil
}
