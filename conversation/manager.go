// Package conversation runs multi-party conversations (MSN switchboard
// sessions) across an msprelay cluster with no single owner.
//
// A conversation lives entirely in NATS and JetStream, never in one node:
//
//   - its roster is a set of keys "m.<conv>.<node>.<member>" in the KV bucket
//     KVBucket (value: user, node, term, joined time, block list), next to a
//     key "c.<conv>" that says the conversation exists;
//   - its messages are published on "msp.conv.msg.<conv>.<node>", naming
//     the publishing node (which node credentials bind, see broker), a
//     subject the stream Stream captures with MaxMsgsPerSubject =
//     Config.History (per node), so a late joiner reads the last N messages;
//   - typing notices go on "msp.conv.ctl.<conv>.<node>" (not stored);
//   - invitations are requests on "msp.conv.ring.<node>" to each node where
//     the invitee is signed in.
//
// Every node with a local member subscribes to the conversation's subjects
// while it has one. Every node watches the whole bucket, so roster changes
// reach all of them as KV updates; a node that the gossip layer declares dead
// has its members removed by whichever node notices first (idempotent KV
// writes), and the other members are told they were dropped. Killing any
// node, including the one the conversation was created on, loses at most
// that node's members.
//
// Every message carries its sender's identity as the publishing node
// established it, live and in the history; conversations have owners,
// private ones admit only the invited, and per-user caps and the MSP
// bridge's members-only rule are in rooms.go.
package conversation

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/msprelay/msprelay/identity"
)

// JetStream objects and subject prefixes (see docs/FEDERATION.md).
const (
	KVBucket     = "msp_conversations"
	Stream       = "MSP_CONVERSATIONS"
	msgPrefix    = "msp.conv.msg."
	ctlPrefix    = "msp.conv.ctl."
	ringPrefix   = "msp.conv.ring."
	metaPrefix   = "c."
	memberPrefix = "m."
	recentIDs    = 256 // ids remembered per conversation to drop repeats
	// historyReadFactor bounds how many stored messages a join reads, in
	// multiples of Config.History (the stream keeps that many per node).
	historyReadFactor = 16
	heldPerMember     = 256 // events held for a member whose join is not finished
)

// Defaults for zero Config fields.
const (
	DefaultHistory          = 50
	DefaultIdle             = 5 * time.Minute
	DefaultMaxMembers       = 64
	DefaultMaxConversations = 4096
	// DefaultMaxOpenPerUser caps the conversations one user has created
	// that have not expired: one user cannot fill the cluster's table.
	DefaultMaxOpenPerUser = 16
	// DefaultMaxSlotsPerUser caps the members one user is in one
	// conversation (her terminals): one user cannot fill a conversation.
	DefaultMaxSlotsPerUser = 4
	DefaultMaxText         = 2048
	DefaultPublishTimeout  = 5 * time.Second
	DefaultSweepInterval   = time.Second
	DefaultDeadGrace       = 30 * time.Second
	maxBlocks              = 512
	// MaxInvited caps the invitation list of a private conversation.
	MaxInvited = 256
)

// Config configures a Manager.
type Config struct {
	// Node is this node's name; it goes into subjects and keys. Required.
	Node string
	// NATS is the node's connection; the Manager uses it but does not own
	// or close it. Required.
	NATS *nats.Conn
	// Logger receives the manager's logs; nil means slog.Default().
	Logger *slog.Logger
	// History is how many messages a late joiner reads, the newest; the
	// stream keeps that many per conversation and publishing node.
	History int
	// Idle is how long an empty conversation lasts before it expires.
	// Zero means DefaultIdle.
	Idle time.Duration
	// MaxMembers caps the members of one conversation.
	MaxMembers int
	// MaxConversations caps the conversations of the cluster (and so the
	// roster cache every node holds).
	MaxConversations int
	// MaxOpenPerUser caps the conversations one user has created and that
	// have not expired; zero means DefaultMaxOpenPerUser. Counted from this
	// node's cache once it has caught up with the bucket, with one user's
	// creations on one node serialised; creations on several nodes at the
	// same instant may pass it by one each.
	MaxOpenPerUser int
	// MaxSlotsPerUser caps how many members (sessions, terminals) one
	// user may be in one conversation; zero means DefaultMaxSlotsPerUser.
	MaxSlotsPerUser int
	// OpenBridge names the conversations (canonical) whose MSP bridge
	// (Post) takes messages from senders who are not verified members;
	// they reach the members marked unverified. Every other conversation
	// takes MSP messages only from verified members.
	OpenBridge []string
	// MaxText caps a message's text in octets.
	MaxText int
	// Replicas is the JetStream replica count of the bucket and stream.
	Replicas int
	// PublishTimeout bounds one message's publication.
	PublishTimeout time.Duration
	// LiveNodes lists the nodes gossip says are alive. A node with members
	// that is missing from it (after having been seen, or after DeadGrace
	// from start) has its members dropped. Nil disables dropping.
	LiveNodes func() []string
	// SweepInterval is how often dead nodes and idle conversations are
	// looked for.
	SweepInterval time.Duration
	// DeadGrace is how long after start a node never seen alive is still
	// given the benefit of the doubt (gossip may not have converged).
	DeadGrace time.Duration
	// Locate names the nodes where a user is signed in, for invitations.
	// Nil means this node only.
	Locate func(user string) []string
}

// Kind says what an Event is.
type Kind uint8

// Event kinds.
const (
	KindMessage Kind = iota + 1 // a message (Text)
	KindTyping                  // a typing notice (control payload)
	KindJoin                    // a member joined
	KindLeave                   // a member left (Reason "left" or "dropped")
	KindInvite                  // an invitation to Conversation from User
)

// String names the kind as `msp chat --json` does.
func (k Kind) String() string {
	switch k {
	case KindMessage:
		return "message"
	case KindTyping:
		return "typing"
	case KindJoin:
		return "join"
	case KindLeave:
		return "leave"
	case KindInvite:
		return "invite"
	}
	return "unknown"
}

// Event is something a member is told about.
type Event struct {
	Kind         Kind
	Conversation string
	ID           string
	User         string
	Node         string
	Term         string
	Text         string
	Time         time.Time
	Reason       string
	// Sender is who sent a message, as the node that published it
	// established it (see wireMsg.event): messages only.
	Sender identity.Identity
}

// Member is one member of a conversation: one session of a user.
type Member struct {
	ID     string
	User   string
	Node   string
	Term   string
	Joined time.Time
	// Blocks are the senders this member refuses ("user" or "user@node"),
	// as of joining; a blocked user cannot join.
	Blocks []string
	// Gone is set ("dropped") on the last write before the key is deleted
	// by another node, so watchers can tell why the member left.
	Gone string
}

// keyed reports whether m is the member its key m.<conv>.<node>.<id>
// names: the same id and node, the id made on that node (Join). Records
// that are not are ignored, so that a dead node's sweep deletes the key
// the member really has and a member is never shown on a node other than
// its key's.
func (m *Member) keyed(node, id string) bool {
	return m.ID == id && m.Node == node && strings.HasPrefix(id, node+"-")
}

// keyNode and keyID are the node and member id of a member key.
func keyNode(key string) string { return keyPart(key, 2) }
func keyID(key string) string   { return keyPart(key, 3) }

func keyPart(key string, i int) string {
	parts := strings.Split(key, ".")
	if len(parts) != 4 {
		return ""
	}
	return parts[i]
}

// blocks reports whether m's block list refuses user at node.
func (m *Member) blocks(user, node string) bool {
	return slices.Contains(m.Blocks, user) || slices.Contains(m.Blocks, user+"@"+node)
}

// Identity is who joins, sends or invites.
type Identity struct {
	User   string   // canonical user name
	Term   string   // terminal ("" for none)
	Blocks []string // the session's block list, canonical
	// Sender is how the session's user was established (its method and
	// node); it goes with every message the member sends.
	Sender identity.Identity
}

// Sink receives a member's (or a ringable session's) events. Event must not
// block; it returns false when it cannot take the event (the session is
// ending or too far behind).
type Sink interface {
	Event(ev *Event) bool
}

// meta is the value of "c.<conv>".
type meta struct {
	Name    string    `json:"name"`
	Created time.Time `json:"created"`
	Creator octets    `json:"creator"` // the owner, canonical
	Node    string    `json:"node"`
	// Private: only the owner and the users in Invited may join (and so
	// read the history or list the members).
	Private bool     `json:"private,omitempty"`
	Invited []octets `json:"invited,omitempty"` // canonical, at most MaxInvited
}

// Manager runs this node's part of every conversation.
//
// Ownership: Start starts two goroutines (the KV watcher and the sweeper)
// and one subscription (this node's ring subject); each conversation with a
// local member has two subscriptions, made by the first local Join and
// removed with the last Leave. Close stops all of them and waits; it does not
// close the NATS connection, which belongs to the caller. NATS calls the
// subscription handlers on its own goroutines; they only read the caches
// under mu and call Sinks, which never block.
type Manager struct {
	cfg Config
	log *slog.Logger
	nc  *nats.Conn

	js     jetstream.JetStream
	kv     jetstream.KeyValue
	stream jetstream.Stream

	cancel  context.CancelFunc
	wg      sync.WaitGroup
	ready   chan struct{} // closed when the watcher has the bucket's initial state
	started time.Time

	// userLocks serialise this node's joins and creations per user
	// (userLock), so that the per-user caps are exact for one node.
	userLocks [64]sync.Mutex
	lockSeed  maphash.Seed

	// mu guards everything below.
	mu         sync.Mutex
	running    bool
	closed     bool
	ringSub    *nats.Subscription
	metas      map[string]meta
	roster     map[string]map[string]Member // conv -> member id -> member
	emptySince map[string]time.Time
	seen       map[string]bool // nodes seen alive
	staleOwn   map[string]bool // ids of this node's members no session held at the last sweep
	applied    uint64          // the bucket revision the caches are up to
	appliedCh  chan struct{}   // closed (and replaced) whenever applied grows
	local      map[string]*localConv
	ringers    map[string]map[*ringer]struct{} // user -> sessions that can be rung
}

// localConv is a conversation with members on this node.
type localConv struct {
	members map[string]*Membership // member id -> membership
	subs    []*nats.Subscription
	recent  []string // ring of recent message ids
	next    int
}

func (lc *localConv) seenID(id string) bool {
	if id == "" {
		return false
	}
	if slices.Contains(lc.recent, id) {
		return true
	}
	if len(lc.recent) < recentIDs {
		lc.recent = append(lc.recent, id)
	} else {
		lc.recent[lc.next] = id
		lc.next = (lc.next + 1) % recentIDs
	}
	return false
}

type ringer struct{ sink Sink }

// New validates cfg. It starts nothing.
func New(cfg Config) (*Manager, error) {
	if cfg.NATS == nil {
		return nil, errors.New("conversation: Config.NATS is required")
	}
	if err := validNode(cfg.Node); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	for _, n := range []int64{int64(cfg.History), int64(cfg.MaxMembers), int64(cfg.MaxConversations), int64(cfg.MaxText),
		int64(cfg.Replicas), int64(cfg.Idle), int64(cfg.PublishTimeout), int64(cfg.SweepInterval), int64(cfg.DeadGrace)} {
		if n < 0 {
			return nil, errors.New("conversation: a Config number is negative: 0 means its default, a negative value has no meaning")
		}
	}
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	defDur := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	def(&cfg.History, DefaultHistory)
	def(&cfg.MaxMembers, DefaultMaxMembers)
	def(&cfg.MaxConversations, DefaultMaxConversations)
	def(&cfg.MaxText, DefaultMaxText)
	def(&cfg.MaxOpenPerUser, DefaultMaxOpenPerUser)
	def(&cfg.MaxSlotsPerUser, DefaultMaxSlotsPerUser)
	open := make([]string, 0, len(cfg.OpenBridge))
	for _, n := range cfg.OpenBridge {
		n = strings.TrimPrefix(n, "#")
		if err := ValidName(n); err != nil {
			return nil, fmt.Errorf("conversation: OpenBridge %q: %w", n, err)
		}
		open = append(open, CanonicalName(n))
	}
	cfg.OpenBridge = open
	def(&cfg.Replicas, DefaultReplicas)
	defDur(&cfg.Idle, DefaultIdle)
	defDur(&cfg.PublishTimeout, DefaultPublishTimeout)
	defDur(&cfg.SweepInterval, DefaultSweepInterval)
	defDur(&cfg.DeadGrace, DefaultDeadGrace)
	return &Manager{
		cfg: cfg, log: cfg.Logger, nc: cfg.NATS,
		lockSeed:   maphash.MakeSeed(),
		appliedCh:  make(chan struct{}),
		ready:      make(chan struct{}),
		metas:      map[string]meta{},
		roster:     map[string]map[string]Member{},
		emptySince: map[string]time.Time{},
		seen:       map[string]bool{},
		local:      map[string]*localConv{},
		ringers:    map[string]map[*ringer]struct{}{},
	}, nil
}

// Start creates (or adopts) the bucket and stream, loads the roster and
// starts watching; it returns once the initial state is loaded.
func (m *Manager) Start(ctx context.Context) error {
	m.mu.Lock()
	if m.running || m.closed {
		m.mu.Unlock()
		return errors.New("conversation: Start called twice or after Close")
	}
	m.running = true
	m.mu.Unlock()
	js, err := jetstream.New(m.nc)
	if err != nil {
		return fmt.Errorf("conversation: jetstream: %w", err)
	}
	m.js = js
	m.kv, err = js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		// History above 1 keeps a member's "dropped" write after its delete
		// marker, so a watcher a little behind still sees why it left.
		Bucket: KVBucket, History: 4, Storage: jetstream.FileStorage, Replicas: m.cfg.Replicas,
		Description: "msprelay conversations: c.<conv> exists, m.<conv>.<node>.<member> rosters",
	})
	if err != nil {
		return fmt.Errorf("conversation: bucket %s: %w", KVBucket, err)
	}
	m.stream, err = js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		// msp.conv.msg.<conv>.<node>. Before node-bound subjects the
		// stream captured msp.conv.msg.<conv>: such entries stay stored
		// but no history reads them (docs/FEDERATION.md, upgrading).
		Name: Stream, Subjects: []string{msgPrefix + "*.*"},
		Description:       "msprelay conversation history",
		MaxMsgsPerSubject: int64(m.cfg.History),
		MaxMsgSize:        int32(m.cfg.MaxText + 1024),
		Discard:           jetstream.DiscardOld,
		Duplicates:        2 * time.Minute,
		Storage:           jetstream.FileStorage,
		Replicas:          m.cfg.Replicas,
	})
	if err != nil {
		return fmt.Errorf("conversation: stream %s: %w", Stream, err)
	}
	wctx, cancel := context.WithCancel(context.Background())
	m.cancel = cancel
	w, err := m.kv.WatchAll(wctx)
	if err != nil {
		cancel()
		return fmt.Errorf("conversation: watch %s: %w", KVBucket, err)
	}
	sub, err := m.nc.Subscribe(ringPrefix+m.cfg.Node, m.onRing)
	if err != nil {
		w.Stop()
		cancel()
		return fmt.Errorf("conversation: subscribe ring: %w", err)
	}
	m.mu.Lock()
	m.ringSub = sub
	m.mu.Unlock()
	m.started = time.Now()
	m.noteLive()
	m.wg.Go(func() { m.watch(wctx, w) })
	select {
	case <-m.ready:
	case <-ctx.Done():
		m.Close()
		return fmt.Errorf("conversation: loading rosters: %w", ctx.Err())
	}
	m.dropStaleOwn(ctx)
	m.wg.Go(func() { m.sweep(wctx) })
	return nil
}

// Close leaves nothing behind on this node: subscriptions end, the watcher
// and sweeper stop. Local members stay in the roster until their sessions
// leave (or another node drops them). It is idempotent.
func (m *Manager) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	var subs []*nats.Subscription
	if m.ringSub != nil {
		subs = append(subs, m.ringSub)
	}
	for _, lc := range m.local {
		subs = append(subs, lc.subs...)
		lc.subs = nil
	}
	m.mu.Unlock()
	for _, s := range subs {
		_ = s.Unsubscribe()
	}
	if m.cancel != nil {
		m.cancel()
	}
	m.wg.Wait()
	return nil
}

// Node is this node's name.
func (m *Manager) Node() string { return m.cfg.Node }

// MaxText is the longest message text accepted.
func (m *Manager) MaxText() int { return m.cfg.MaxText }

func memberKey(conv, node, id string) string { return memberPrefix + conv + "." + node + "." + id }

// watch applies bucket updates to the caches until ctx ends.
func (m *Manager) watch(ctx context.Context, w jetstream.KeyWatcher) {
	defer w.Stop()
	initial := true
	for {
		select {
		case <-ctx.Done():
			return
		case e, ok := <-w.Updates():
			if !ok {
				if ctx.Err() == nil {
					m.log.Error("conversation roster watch ended")
				}
				return
			}
			if e == nil {
				if initial {
					initial = false
					close(m.ready)
				}
				continue
			}
			m.apply(e, !initial)
			m.noteApplied(e.Revision())
		}
	}
}

// apply records one bucket entry; live says whether to tell local members.
func (m *Manager) apply(e jetstream.KeyValueEntry, live bool) {
	key := e.Key()
	m.log.Debug("conversation bucket update", "key", key, "op", e.Operation().String(), "live", live)
	del := e.Operation() != jetstream.KeyValuePut
	if conv, ok := strings.CutPrefix(key, metaPrefix); ok {
		m.mu.Lock()
		defer m.mu.Unlock()
		if del {
			delete(m.metas, conv)
			delete(m.emptySince, conv)
			return
		}
		var md meta
		if json.Unmarshal(e.Value(), &md) != nil {
			return
		}
		m.metas[conv] = md
		if len(m.roster[conv]) == 0 {
			if _, ok := m.emptySince[conv]; !ok {
				m.emptySince[conv] = time.Now()
			}
		}
		return
	}
	rest, ok := strings.CutPrefix(key, memberPrefix)
	if !ok {
		return
	}
	parts := strings.Split(rest, ".")
	if len(parts) != 3 {
		return
	}
	conv, id := parts[0], parts[2]
	if del {
		m.removeMember(conv, id, "left", live)
		return
	}
	var mb Member
	if json.Unmarshal(e.Value(), &mb) != nil || !mb.keyed(parts[1], id) {
		m.log.Debug("ignoring a conversation member whose record does not match its key", "key", key)
		return
	}
	if mb.Gone != "" {
		m.removeMember(conv, id, mb.Gone, live)
		return
	}
	m.addMember(conv, mb, live)
}

func (m *Manager) addMember(conv string, mb Member, live bool) {
	m.mu.Lock()
	r := m.roster[conv]
	if r == nil {
		r = map[string]Member{}
		m.roster[conv] = r
	}
	_, known := r[mb.ID]
	r[mb.ID] = mb
	delete(m.emptySince, conv)
	targets := m.targetsLocked(conv, mb.ID)
	m.mu.Unlock()
	if known || !live {
		return
	}
	ev := &Event{Kind: KindJoin, Conversation: conv, User: mb.User, Node: mb.Node, Term: mb.Term, Time: mb.Joined}
	for _, t := range targets {
		t.push(ev)
	}
}

func (m *Manager) removeMember(conv, id, reason string, live bool) {
	m.mu.Lock()
	mb, known := m.roster[conv][id]
	if known {
		delete(m.roster[conv], id)
		if len(m.roster[conv]) == 0 {
			delete(m.roster, conv)
			m.emptySince[conv] = time.Now()
		}
	}
	targets := m.targetsLocked(conv, id)
	m.mu.Unlock()
	if !known || !live {
		return
	}
	ev := &Event{Kind: KindLeave, Conversation: conv, User: mb.User, Node: mb.Node, Term: mb.Term, Time: time.Now(), Reason: reason}
	for _, t := range targets {
		t.push(ev)
	}
}

// targetsLocked lists the local memberships of conv other than skip.
func (m *Manager) targetsLocked(conv, skip string) []*Membership {
	lc := m.local[conv]
	if lc == nil {
		return nil
	}
	out := make([]*Membership, 0, len(lc.members))
	for id, ms := range lc.members {
		if id != skip {
			out = append(out, ms)
		}
	}
	return out
}

// dropStaleOwn removes members recorded for this node that no session holds:
// left behind when this node was killed and restarted.
func (m *Manager) dropStaleOwn(ctx context.Context) {
	m.mu.Lock()
	var stale []Member
	var convs []string
	for conv, r := range m.roster {
		for id, mb := range r {
			if mb.Node == m.cfg.Node && (m.local[conv] == nil || m.local[conv].members[id] == nil) {
				stale = append(stale, mb)
				convs = append(convs, conv)
			}
		}
	}
	m.mu.Unlock()
	for i, mb := range stale {
		m.drop(ctx, convs[i], mb, "dropped")
	}
}

// drop removes a member another session cannot remove itself (its node is
// dead): the "dropped" write tells watchers why, the delete removes the key.
// Both are idempotent, so several nodes may do it at once.
func (m *Manager) drop(ctx context.Context, conv string, mb Member, reason string) {
	mb.Gone = reason
	b, _ := json.Marshal(mb)
	key := memberKey(conv, mb.Node, mb.ID)
	if _, err := m.kv.Put(ctx, key, b); err != nil {
		m.log.Warn("dropping conversation member failed", "conversation", conv, "user", mb.User, "member_node", mb.Node, "err", err)
		return
	}
	if err := m.kv.Delete(ctx, key); err != nil {
		m.log.Warn("dropping conversation member failed", "conversation", conv, "user", mb.User, "member_node", mb.Node, "err", err)
		return
	}
	m.log.Info("dropped conversation member", "conversation", conv, "user", mb.User, "member_node", mb.Node, "reason", reason)
}

// sweep drops members of dead nodes and expires idle conversations.
func (m *Manager) sweep(ctx context.Context) {
	t := time.NewTicker(m.cfg.SweepInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		m.sweepOnce(ctx)
	}
}

// noteLive asks gossip which nodes are alive and remembers them as seen: a
// node seen alive and then missing is dead at once, without DeadGrace.
func (m *Manager) noteLive() map[string]bool {
	if m.cfg.LiveNodes == nil {
		return nil
	}
	live := map[string]bool{m.cfg.Node: true}
	for _, n := range m.cfg.LiveNodes() {
		live[n] = true
	}
	m.mu.Lock()
	for n := range live {
		m.seen[n] = true
	}
	m.mu.Unlock()
	return live
}

func (m *Manager) sweepOnce(ctx context.Context) {
	live := m.noteLive()
	type victim struct {
		conv string
		mb   Member
	}
	var dead []victim
	var idle []string
	now := time.Now()
	m.mu.Lock()
	if live != nil {
		for conv, r := range m.roster {
			for _, mb := range r {
				if !live[mb.Node] && (m.seen[mb.Node] || now.Sub(m.started) > m.cfg.DeadGrace) {
					dead = append(dead, victim{conv, mb})
				}
			}
		}
	}
	// Local members missing from the roster were dropped by another node
	// that thought this one dead (a partition, a long pause): they are
	// still here, so they are written back, and the others see them join.
	// This node's members that no session holds any more (a Leave whose
	// delete failed) are removed once they have looked so on two sweeps
	// in a row, which leaves an ongoing Leave time to finish.
	var leftOver []victim
	stale := map[string]bool{}
	for conv, r := range m.roster {
		for id, mb := range r {
			if mb.Node == m.cfg.Node && (m.local[conv] == nil || m.local[conv].members[id] == nil) {
				stale[id] = true
				if m.staleOwn[id] {
					leftOver = append(leftOver, victim{conv, mb})
				}
			}
		}
	}
	m.staleOwn = stale
	var missing []*Membership
	for conv, lc := range m.local {
		for id, ms := range lc.members {
			if _, ok := m.roster[conv][id]; !ok && ms.joined.Load() {
				missing = append(missing, ms)
			}
		}
	}
	for conv, since := range m.emptySince {
		if _, ok := m.metas[conv]; ok && len(m.roster[conv]) == 0 && m.local[conv] == nil && now.Sub(since) >= m.cfg.Idle {
			idle = append(idle, conv)
		}
	}
	m.mu.Unlock()
	if len(dead) > 0 || len(idle) > 0 {
		m.log.Debug("conversation sweep", "dead", len(dead), "idle", len(idle))
	}
	for _, v := range dead {
		m.drop(ctx, v.conv, v.mb, "dropped")
	}
	for _, v := range leftOver {
		m.drop(ctx, v.conv, v.mb, "left")
	}
	for _, ms := range missing {
		if !ms.joined.Load() {
			continue // left meanwhile
		}
		key := memberKey(ms.conv, ms.self.Node, ms.self.ID)
		b, _ := json.Marshal(ms.self)
		if _, err := m.kv.Put(ctx, key, b); err != nil {
			m.log.Warn("restoring conversation member failed", "conversation", ms.conv, "user", ms.self.User, "err", err)
			continue
		}
		if !ms.joined.Load() {
			_ = m.kv.Delete(ctx, key) // Leave ran during the Put: undo it
			continue
		}
		m.log.Info("restored a conversation member another node had dropped", "conversation", ms.conv, "user", ms.self.User)
	}
	for _, conv := range idle {
		if err := m.kv.Delete(ctx, metaPrefix+conv); err != nil {
			m.log.Warn("expiring conversation failed", "conversation", conv, "err", err)
			continue
		}
		if err := m.stream.Purge(ctx, jetstream.WithPurgeSubject(msgPrefix+conv+".*")); err != nil {
			m.log.Warn("purging conversation history failed", "conversation", conv, "err", err)
		}
		// Entries stored before node-bound subjects, if any.
		_ = m.stream.Purge(ctx, jetstream.WithPurgeSubject(msgPrefix+conv))
		m.log.Info("conversation expired after idling empty", "conversation", conv)
	}
}

// Roster returns the members of conversation name, read from the bucket, in
// order of joining.
func (m *Manager) Roster(ctx context.Context, name string) ([]Member, error) {
	if err := ValidName(name); err != nil {
		return nil, err
	}
	conv := CanonicalName(name)
	if _, err := m.exists(ctx, conv); err != nil {
		return nil, err
	}
	return m.members(ctx, conv)
}

// members reads conv's roster from the bucket.
func (m *Manager) members(ctx context.Context, conv string) ([]Member, error) {
	kl, err := m.kv.ListKeysFiltered(ctx, memberPrefix+conv+".>")
	if err != nil {
		return nil, fmt.Errorf("conversation: roster of %s: %w", conv, err)
	}
	defer kl.Stop()
	var out []Member
	for key := range kl.Keys() {
		e, err := m.kv.Get(ctx, key)
		if err != nil {
			continue // left meanwhile
		}
		var mb Member
		if json.Unmarshal(e.Value(), &mb) == nil && mb.Gone == "" && mb.keyed(keyNode(key), keyID(key)) {
			out = append(out, mb)
		}
		if len(out) > m.cfg.MaxMembers*2 {
			break
		}
	}
	slices.SortFunc(out, func(a, b Member) int {
		if c := a.Joined.Compare(b.Joined); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out, nil
}
