package conversation

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/msprelay/msprelay/identity"
)

// Membership is one session's place in one conversation. It is created by
// Join and ended by Leave; its owner (the session) calls Send and Leave from
// one goroutine, which keeps that member's messages in order.
type Membership struct {
	m      *Manager
	conv   string
	self   Member
	sender identity.Identity // how the member's user was established
	sink   Sink

	// mu guards the fields below and orders pushes to sink.
	mu     sync.Mutex
	active bool     // Activate was called: events go to sink directly
	held   []*Event // events that arrived before Activate (bounded)
	skip   map[string]bool
	left   bool

	// joined is set once the member's key has been written (and cleared by
	// Leave), so the sweeper restores only members that really joined.
	joined atomic.Bool
}

// Conversation is the conversation's canonical name.
func (ms *Membership) Conversation() string { return ms.conv }

// Self is this member as recorded in the roster.
func (ms *Membership) Self() Member { return ms.self }

// push hands ev to the sink, or holds it until Activate.
func (ms *Membership) push(ev *Event) {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	switch {
	case ms.left:
	case !ms.active:
		if len(ms.held) < heldPerMember {
			ms.held = append(ms.held, ev)
		}
	case ev.ID != "" && ms.skip[ev.ID]:
	default:
		ms.sink.Event(ev)
	}
}

// Activate lets events through to the sink, first those that came while the
// join was being answered (less the history already shown).
func (ms *Membership) Activate() {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	for _, ev := range ms.held {
		if ev.ID == "" || !ms.skip[ev.ID] {
			ms.sink.Event(ev)
		}
	}
	ms.held, ms.active = nil, true
}

// How says what Join does when the conversation does not exist.
type How uint8

// Join modes.
const (
	// JoinExisting joins only a conversation that exists (ANS).
	JoinExisting How = iota
	// JoinOrCreate creates a public conversation first if it does not
	// exist (XFR SB name).
	JoinOrCreate
	// CreatePrivate creates an invite-only conversation first if it does
	// not exist, owned by the joiner (XFR SB name PRIVATE); one that
	// exists is joined by its own rules.
	CreatePrivate
)

// Join makes id a member of conversation name (created first, as how
// says, when it does not exist). It returns the other members and the
// conversation's recent history, oldest first. Events reach sink once the
// caller calls Activate on the membership.
//
// A user may have created at most MaxOpenPerUser conversations that have
// not expired, and be at most MaxSlotsPerUser members of one (ErrFull
// wrapped in ErrTooMany); a private conversation admits only its owner and
// the users it invited (ErrNotInvited), so nobody else reads its history.
func (m *Manager) Join(ctx context.Context, name string, id Identity, sink Sink, how How) (*Membership, []Member, []Event, error) {
	if err := ValidName(name); err != nil {
		return nil, nil, nil, err
	}
	conv := CanonicalName(name)
	m.mu.Lock()
	closed := m.closed || !m.running
	m.mu.Unlock()
	if closed {
		return nil, nil, nil, ErrClosed
	}
	unlock := m.userLock(id.User)
	defer unlock()
	md, err := m.exists(ctx, conv)
	if err != nil {
		if how == JoinExisting || !errors.Is(err, ErrNoConversation) {
			return nil, nil, nil, err
		}
		if md, err = m.create(ctx, conv, id.User, how == CreatePrivate); err != nil {
			return nil, nil, nil, err
		}
	}
	if md.Private && !md.admits(id.User) {
		return nil, nil, nil, fmt.Errorf("%w: %s is private", ErrNotInvited, conv)
	}
	others, err := m.members(ctx, conv)
	if err != nil {
		return nil, nil, nil, err
	}
	if len(others) >= m.cfg.MaxMembers {
		return nil, nil, nil, fmt.Errorf("%w: %s has %d members", ErrFull, conv, len(others))
	}
	mine := 0
	for i := range others {
		if others[i].blocks(id.User, m.cfg.Node) {
			return nil, nil, nil, fmt.Errorf("%w: a member of %s blocks %s", ErrBlocked, conv, id.User)
		}
		if sameUser(others[i].User, id.User) {
			mine++
		}
	}
	if mine >= m.cfg.MaxSlotsPerUser {
		return nil, nil, nil, fmt.Errorf("%w: %s is in %s %d times already", ErrTooMany, id.User, conv, mine)
	}
	self := Member{
		ID: m.cfg.Node + "-" + randomHex(8), User: id.User, Node: m.cfg.Node, Term: id.Term,
		Joined: time.Now().UTC(), Blocks: id.Blocks[:min(len(id.Blocks), maxBlocks)],
	}
	ms := &Membership{m: m, conv: conv, self: self, sender: id.Sender, sink: sink, skip: map[string]bool{}}
	if err := m.attachLocal(ms); err != nil {
		return nil, nil, nil, err
	}
	hist, err := m.history(ctx, conv)
	if err != nil {
		m.detachLocal(ms)
		return nil, nil, nil, err
	}
	for _, ev := range hist {
		ms.skip[ev.ID] = true
	}
	b, _ := json.Marshal(self)
	if _, err := m.kv.Put(ctx, memberKey(conv, self.Node, self.ID), b); err != nil {
		m.detachLocal(ms)
		return nil, nil, nil, fmt.Errorf("conversation: join %s: %w", conv, err)
	}
	ms.joined.Store(true)
	return ms, others, hist, nil
}

// attachLocal registers ms and subscribes to its conversation if it is the
// node's first member there.
func (m *Manager) attachLocal(ms *Membership) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	lc := m.local[ms.conv]
	if lc == nil {
		lc = &localConv{members: map[string]*Membership{}}
		// One wildcard per kind: the last token is the publishing node
		// (msgSubject), which onMessage checks the message against.
		for _, subj := range []string{msgPrefix + ms.conv + ".*", ctlPrefix + ms.conv + ".*"} {
			conv := ms.conv
			s, err := m.nc.Subscribe(subj, func(msg *nats.Msg) { m.onMessage(conv, msg) })
			if err != nil {
				for _, s := range lc.subs {
					_ = s.Unsubscribe()
				}
				return fmt.Errorf("conversation: subscribe %s: %w", subj, err)
			}
			lc.subs = append(lc.subs, s)
		}
		m.local[ms.conv] = lc
	}
	lc.members[ms.self.ID] = ms
	return nil
}

// detachLocal forgets ms and unsubscribes after the node's last member.
func (m *Manager) detachLocal(ms *Membership) {
	m.mu.Lock()
	lc := m.local[ms.conv]
	var subs []*nats.Subscription
	if lc != nil {
		delete(lc.members, ms.self.ID)
		if len(lc.members) == 0 {
			subs = lc.subs
			delete(m.local, ms.conv)
		}
	}
	m.mu.Unlock()
	for _, s := range subs {
		_ = s.Unsubscribe()
	}
}

// onMessage fans a message or typing notice out to the local members.
func (m *Manager) onMessage(conv string, msg *nats.Msg) {
	var w wireMsg
	if err := json.Unmarshal(msg.Data, &w); err != nil || (w.Kind != KindMessage && w.Kind != KindTyping) {
		m.log.Debug("dropping malformed conversation message", "conversation", conv)
		return
	}
	ev := m.bound(&w, conv, msg.Subject)
	m.mu.Lock()
	lc := m.local[conv]
	if lc == nil || (ev.Kind == KindMessage && lc.seenID(ev.ID)) {
		m.mu.Unlock()
		return
	}
	targets := m.targetsLocked(conv, w.Member)
	m.mu.Unlock()
	for _, t := range targets {
		t.push(&ev)
	}
}

// history reads conv's stored messages, the last Config.History of them,
// oldest first. The stream keeps Config.History messages per conversation
// and publishing node, so there may be more stored than are shown: they are
// read in stream order (the order they were stored in) and the newest kept.
// A join reads at most historyReadFactor times Config.History; when more
// are stored (that many nodes have posted), it first finds where the newest
// Config.History begin (historyStart).
func (m *Manager) history(ctx context.Context, conv string) ([]Event, error) {
	filter := msgPrefix + conv + ".*"
	c, n, err := m.historyConsumer(ctx, filter, 0)
	if err != nil {
		return nil, fmt.Errorf("conversation: history of %s: %w", conv, err)
	}
	if n > m.cfg.History*historyReadFactor {
		m.dropConsumer(c)
		start, err := m.historyStart(ctx, filter)
		if err != nil {
			return nil, fmt.Errorf("conversation: history of %s: %w", conv, err)
		}
		if c, n, err = m.historyConsumer(ctx, filter, start); err != nil {
			return nil, fmt.Errorf("conversation: history of %s: %w", conv, err)
		}
	}
	defer m.dropConsumer(c)
	n = min(n, m.cfg.History*historyReadFactor)
	var out []Event
	for n > 0 {
		batch, err := c.Fetch(min(n, m.cfg.History), jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			return nil, fmt.Errorf("conversation: history of %s: %w", conv, err)
		}
		got := 0
		for msg := range batch.Messages() {
			got++
			var w wireMsg
			if json.Unmarshal(msg.Data(), &w) == nil && w.Kind == KindMessage {
				out = append(out, m.bound(&w, conv, msg.Subject()))
			}
		}
		if got == 0 {
			break
		}
		n -= got
		if len(out) > m.cfg.History {
			out = slices.Delete(out, 0, len(out)-m.cfg.History)
		}
	}
	return out, nil
}

// historyConsumer makes a short-lived consumer of the stored messages on
// filter from stream sequence start (0: from the first) and returns it
// with how many it holds. The caller deletes it (dropConsumer); the
// server does after 30 s idle if that fails.
func (m *Manager) historyConsumer(ctx context.Context, filter string, start uint64) (jetstream.Consumer, int, error) {
	cfg := jetstream.ConsumerConfig{
		FilterSubject: filter, DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy: jetstream.AckNonePolicy, MemoryStorage: true, InactiveThreshold: 30 * time.Second,
	}
	if start > 0 {
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, start
	}
	c, err := m.js.CreateConsumer(ctx, Stream, cfg)
	if err != nil {
		return nil, 0, err
	}
	return c, int(c.CachedInfo().NumPending), nil
}

// dropConsumer deletes a consumer made by historyConsumer.
func (m *Manager) dropConsumer(c jetstream.Consumer) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = m.js.DeleteConsumer(ctx, Stream, c.CachedInfo().Name)
}

// historyStart is the stream sequence where the newest Config.History
// messages on filter begin, found by bisection over the stream's
// sequences: how many messages lie from a sequence on is a new consumer's
// pending count. It costs about log2(stream length) short-lived consumers,
// and runs only when a conversation holds more than historyReadFactor
// times Config.History messages.
func (m *Manager) historyStart(ctx context.Context, filter string) (uint64, error) {
	info, err := m.stream.Info(ctx)
	if err != nil {
		return 0, err
	}
	lo, hi := info.State.FirstSeq, info.State.LastSeq
	for lo < hi {
		mid := lo + (hi-lo+1)/2
		c, n, err := m.historyConsumer(ctx, filter, mid)
		if err != nil {
			return 0, err
		}
		m.dropConsumer(c)
		if n >= m.cfg.History {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	return lo, nil
}

// Send publishes a message (KindMessage, stored in the history) or a typing
// notice (KindTyping, not stored) from this member and returns its id. A
// message is sent once JetStream has stored it; an error means it was not.
func (ms *Membership) Send(ctx context.Context, kind Kind, text string) (string, error) {
	ms.mu.Lock()
	left := ms.left
	ms.mu.Unlock()
	if left {
		return "", fmt.Errorf("%w: %s", ErrNotMember, ms.conv)
	}
	id := randomHex(12)
	return id, ms.m.publish(ctx, ms.conv, kind, id, ms.self, ms.sender, text)
}

// publish sends one message or notice on conv's subjects, from member
// from whose identity is sender.
func (m *Manager) publish(ctx context.Context, conv string, kind Kind, id string, from Member, sender identity.Identity, text string) error {
	if kind == KindMessage {
		if err := ValidText(text, m.cfg.MaxText); err != nil {
			return err
		}
	} else {
		text = ""
	}
	w := wireMsg{Kind: kind, ID: id, User: octets(from.User), Node: from.Node, Term: octets(from.Term), Text: octets(text), Time: time.Now().UTC(), Member: from.ID, From: senderOf(sender)}
	b, err := json.Marshal(w)
	if err != nil {
		return fmt.Errorf("conversation: encode: %w", err)
	}
	if kind != KindMessage {
		if err := m.nc.Publish(ctlSubject(conv, m.cfg.Node), b); err != nil {
			return fmt.Errorf("conversation: publish to %s: %w", conv, err)
		}
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, m.cfg.PublishTimeout)
	defer cancel()
	if _, err := m.js.PublishMsg(ctx, &nats.Msg{Subject: msgSubject(conv, m.cfg.Node), Data: b}, jetstream.WithMsgID(id), jetstream.WithExpectStream(Stream)); err != nil {
		return fmt.Errorf("conversation: publish to %s: %w", conv, err)
	}
	return nil
}

// Leave removes the member from the roster; the others are told. It is
// idempotent.
func (ms *Membership) Leave(ctx context.Context) error {
	ms.mu.Lock()
	if ms.left {
		ms.mu.Unlock()
		return nil
	}
	ms.left = true
	ms.held = nil
	ms.mu.Unlock()
	ms.joined.Store(false)
	ms.m.detachLocal(ms)
	if err := ms.m.kv.Delete(ctx, memberKey(ms.conv, ms.self.Node, ms.self.ID)); err != nil {
		return fmt.Errorf("conversation: leave %s: %w", ms.conv, err)
	}
	return nil
}

// ring is an invitation on a node's ring subject.
type ring struct {
	Conversation string `json:"conv"`
	Invitee      octets `json:"invitee"`
	User         octets `json:"user"`
	Node         string `json:"node"`
	Term         octets `json:"term"`
}

// Attach makes a session ringable for user's invitations until detach is
// called.
func (m *Manager) Attach(user string, sink Sink) (detach func()) {
	r := &ringer{sink: sink}
	m.mu.Lock()
	set := m.ringers[user]
	if set == nil {
		set = map[*ringer]struct{}{}
		m.ringers[user] = set
	}
	set[r] = struct{}{}
	m.mu.Unlock()
	return func() {
		m.mu.Lock()
		delete(m.ringers[user], r)
		if len(m.ringers[user]) == 0 {
			delete(m.ringers, user)
		}
		m.mu.Unlock()
	}
}

// Invite rings user's sessions wherever she is signed in, inviting her into
// ms's conversation. It returns how many sessions were rung; ErrNotOnline
// when none (not signed in, or every session blocks the inviter).
func (ms *Membership) Invite(ctx context.Context, user string) (int, error) {
	m := ms.m
	if err := m.recordInvite(ctx, ms.conv, ms.self.User, user); err != nil {
		return 0, err
	}
	nodes := []string{m.cfg.Node}
	if m.cfg.Locate != nil {
		nodes = m.cfg.Locate(user)
	}
	b, _ := json.Marshal(ring{Conversation: ms.conv, Invitee: octets(user), User: octets(ms.self.User), Node: ms.self.Node, Term: octets(ms.self.Term)})
	ctx, cancel := context.WithTimeout(ctx, m.cfg.PublishTimeout)
	defer cancel()
	total := 0
	for _, node := range nodes {
		if validNode(node) != nil {
			continue
		}
		reply, err := m.nc.RequestWithContext(ctx, ringPrefix+node, b)
		if err != nil {
			m.log.Debug("ring failed", "peer", node, "err", err)
			continue
		}
		n, _ := strconv.Atoi(string(reply.Data))
		total += n
	}
	if total == 0 {
		return 0, fmt.Errorf("%w: %s", ErrNotOnline, user)
	}
	return total, nil
}

// onRing rings the local sessions of an invitee and replies with how many
// took it.
func (m *Manager) onRing(msg *nats.Msg) {
	var r ring
	if err := json.Unmarshal(msg.Data, &r); err != nil || ValidName(r.Conversation) != nil {
		return
	}
	m.mu.Lock()
	var sinks []Sink
	for rg := range m.ringers[string(r.Invitee)] {
		sinks = append(sinks, rg.sink)
	}
	m.mu.Unlock()
	ev := &Event{Kind: KindInvite, Conversation: r.Conversation, User: string(r.User), Node: r.Node, Term: string(r.Term), Time: time.Now().UTC()}
	n := 0
	for _, s := range sinks {
		if s.Event(ev) {
			n++
		}
	}
	_ = msg.Respond([]byte(strconv.Itoa(n)))
}
