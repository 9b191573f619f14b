package conversation

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/msprelay/msprelay/identity"
	"github.com/msprelay/msprelay/msp"
)

// Owners and limits (issue 18): a conversation is owned by the user who
// created it; a private one admits only her and the users she invited;
// one user may have MaxOpenPerUser conversations open and be
// MaxSlotsPerUser members of one (counted after this node's caches caught
// up with the bucket, and serialised per user on a node, so that only
// creations on several nodes at the same instant can pass a cap, by one
// each); the MSP bridge takes messages only from
// verified members unless the operator opened it (Config.OpenBridge).

// sameUser compares two user names as MSP does (ISO 8859-1 case folding;
// strings.EqualFold would take any two 8-bit octets, invalid UTF-8, for
// equal).
func sameUser(a, b string) bool { return msp.EqualFold(a, b) }

// admits reports whether user may join the private conversation md: she
// owns it or was invited.
func (md *meta) admits(user string) bool {
	if sameUser(string(md.Creator), user) {
		return true
	}
	return slices.ContainsFunc(md.Invited, func(o octets) bool { return sameUser(string(o), user) })
}

// userLock takes the lock that serialises user's joins and creations on
// this node and returns its unlock.
func (m *Manager) userLock(user string) func() {
	mu := &m.userLocks[maphash.String(m.lockSeed, msp.Fold(user))%uint64(len(m.userLocks))]
	mu.Lock()
	return mu.Unlock
}

// catchUpWait bounds how long a creation waits for this node's caches to
// reach the bucket's latest revision before it counts from them anyway.
const catchUpWait = 2 * time.Second

// noteApplied records that the caches hold the bucket up to revision rev.
func (m *Manager) noteApplied(rev uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if rev > m.applied {
		m.applied = rev
		close(m.appliedCh)
		m.appliedCh = make(chan struct{})
	}
}

// catchUp waits (at most catchUpWait) until the caches hold every bucket
// write made before the call, so that counts taken from them include the
// conversations other nodes created a moment ago.
func (m *Manager) catchUp(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, catchUpWait)
	defer cancel()
	st, err := m.js.Stream(ctx, "KV_"+KVBucket)
	if err != nil {
		m.log.Debug("conversation bucket state unknown; counting from the cache", "err", err)
		return
	}
	last := st.CachedInfo().State.LastSeq
	for {
		m.mu.Lock()
		applied, ch := m.applied, m.appliedCh
		m.mu.Unlock()
		if applied >= last {
			return
		}
		select {
		case <-ch:
		case <-ctx.Done():
			m.log.Debug("conversation cache behind the bucket; counting from it anyway", "applied", applied, "last", last)
			return
		}
	}
}

// create records conversation conv, owned by user, unless the cluster or
// user is at its cap. If another node created it meanwhile, that record
// is returned. The caller holds user's userLock.
func (m *Manager) create(ctx context.Context, conv, user string, private bool) (meta, error) {
	m.catchUp(ctx)
	m.mu.Lock()
	nconv, open := len(m.metas), 0
	for _, md := range m.metas {
		if sameUser(string(md.Creator), user) {
			open++
		}
	}
	m.mu.Unlock()
	if nconv >= m.cfg.MaxConversations {
		return meta{}, fmt.Errorf("%w: the cluster has %d conversations", ErrFull, nconv)
	}
	if open >= m.cfg.MaxOpenPerUser {
		return meta{}, fmt.Errorf("%w: %s has %d conversations open (at most %d); they expire %v after their last member leaves",
			ErrTooMany, user, open, m.cfg.MaxOpenPerUser, m.cfg.Idle)
	}
	md := meta{Name: conv, Created: time.Now().UTC(), Creator: octets(user), Node: m.cfg.Node, Private: private}
	b, _ := json.Marshal(md)
	if _, err := m.kv.Create(ctx, metaPrefix+conv, b); err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) {
			return m.exists(ctx, conv)
		}
		return meta{}, fmt.Errorf("conversation: create %s: %w", conv, err)
	}
	// Counted at once, not when the watcher brings it back: the next
	// creation by this user must see it.
	m.mu.Lock()
	m.metas[conv] = md
	if _, ok := m.emptySince[conv]; !ok && len(m.roster[conv]) == 0 {
		m.emptySince[conv] = time.Now()
	}
	m.mu.Unlock()
	m.log.Info("conversation created", "conversation", conv, "user", user, "private", private)
	return md, nil
}

// recordInvite adds invitee to the invitation list of conv when it is
// private; only its owner may invite there (ErrNotOwner). A public
// conversation needs no list.
func (m *Manager) recordInvite(ctx context.Context, conv, inviter, invitee string) error {
	var err error
	for range 3 { // another invitation may change the record meanwhile
		md, rev, gerr := m.getMeta(ctx, conv)
		if gerr != nil {
			return gerr
		}
		switch {
		case !md.Private:
			return nil
		case !sameUser(string(md.Creator), inviter):
			return fmt.Errorf("%w: %s is private to %s", ErrNotOwner, conv, string(md.Creator))
		case md.admits(invitee):
			return nil
		case len(md.Invited) >= MaxInvited:
			return fmt.Errorf("%w: %s has invited %d users", ErrFull, conv, len(md.Invited))
		}
		md.Invited = append(md.Invited, octets(invitee))
		b, _ := json.Marshal(md)
		if _, err = m.kv.Update(ctx, metaPrefix+conv, b, rev); err == nil {
			return nil
		}
	}
	return fmt.Errorf("conversation: invite to %s: %w", conv, err)
}

// Post sends a message into conversation name from outside it (the MSP
// bridge): it is stored and reaches every member. id should be stable for
// retransmissions of one message (JetStream drops the repeats). It returns
// how many members the conversation has.
//
// Only a verified sender (sender.Verified()) who is a member (a session of
// hers is in it) may post, ErrMembersOnly for anyone else, unless the
// conversation is in Config.OpenBridge: then anyone may, and the members
// see whether the sender was verified. from is the name shown (the
// claimed SENDER) and its terminal; its Node must be this node.
func (m *Manager) Post(ctx context.Context, name string, from Member, sender identity.Identity, id, text string) (int, error) {
	if err := ValidName(name); err != nil {
		return 0, err
	}
	conv := CanonicalName(name)
	if _, err := m.exists(ctx, conv); err != nil {
		return 0, err
	}
	members, err := m.members(ctx, conv)
	if err != nil {
		return 0, err
	}
	if !slices.Contains(m.cfg.OpenBridge, conv) &&
		(!sender.Verified() || !slices.ContainsFunc(members, func(mb Member) bool { return sameUser(mb.User, sender.User) })) {
		return 0, fmt.Errorf("%w: %s", ErrMembersOnly, conv)
	}
	if len(members) == 0 {
		return 0, nil
	}
	if from.ID == "" {
		from.ID = "post-" + id
	}
	from.Node = m.cfg.Node
	if err := m.publish(ctx, conv, KindMessage, id, from, sender, text); err != nil {
		return 0, err
	}
	return len(members), nil
}

// RosterFor is Roster as user may see it: the members of a private
// conversation are listed only to its owner, its invited users and its
// members (ErrNotInvited for anyone else).
func (m *Manager) RosterFor(ctx context.Context, name, user string) ([]Member, error) {
	if err := ValidName(name); err != nil {
		return nil, err
	}
	conv := CanonicalName(name)
	md, err := m.exists(ctx, conv)
	if err != nil {
		return nil, err
	}
	members, err := m.members(ctx, conv)
	if err != nil {
		return nil, err
	}
	if md.Private && !md.admits(user) && !slices.ContainsFunc(members, func(mb Member) bool { return sameUser(mb.User, user) }) {
		return nil, fmt.Errorf("%w: %s", ErrNotInvited, conv)
	}
	return members, nil
}

// exists reads conv's record from the bucket (not the cache, which may
// lag).
func (m *Manager) exists(ctx context.Context, conv string) (meta, error) {
	md, _, err := m.getMeta(ctx, conv)
	return md, err
}

// getMeta reads conv's record and its revision from the bucket.
func (m *Manager) getMeta(ctx context.Context, conv string) (meta, uint64, error) {
	if m.kv == nil {
		return meta{}, 0, ErrClosed
	}
	e, err := m.kv.Get(ctx, metaPrefix+conv)
	if err != nil {
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return meta{}, 0, fmt.Errorf("%w: %s", ErrNoConversation, conv)
		}
		return meta{}, 0, fmt.Errorf("conversation: %s: %w", conv, err)
	}
	var md meta
	if err := json.Unmarshal(e.Value(), &md); err != nil {
		return meta{}, 0, fmt.Errorf("conversation: %s: record: %w", conv, err)
	}
	return md, e.Revision(), nil
}

// wireSender is identity.Identity on the conversation subjects and in the
// history, compact: the claimed name is wireMsg.User, the node wireMsg.Node.
type wireSender struct {
	User   octets `json:"u,omitempty"` // proved user
	Method string `json:"m,omitempty"` // identity.Method's name
	Source string `json:"s,omitempty"` // where it entered
}

// senderOf is id on the wire.
func senderOf(id identity.Identity) *wireSender {
	if id.User == "" && id.Method == identity.None && id.Source == "" {
		return nil
	}
	return &wireSender{User: octets(id.User), Method: id.Method.String(), Source: id.Source}
}

// wireMsg is a message or typing notice on the conversation subjects.
type wireMsg struct {
	Kind   Kind      `json:"kind"`
	ID     string    `json:"id"`
	User   octets    `json:"user"`
	Node   string    `json:"node"`
	Term   octets    `json:"term"`
	Text   octets    `json:"text,omitempty"`
	Time   time.Time `json:"time"`
	Member string    `json:"member"` // the sender's member id, to skip its own echo
	// From is the sender's identity as the publishing node established
	// it; User above is the name shown (the claim). Absent in messages of
	// older nodes, which are therefore unverified.
	From *wireSender `json:"from,omitempty"`
}

// event is w as members are told it. The identity is the publishing
// node's word (wireMsg.Node), which is the only node that may vouch for
// it: the node is where the sender's session or MSP client was.
func (w *wireMsg) event(conv string) Event {
	ev := Event{Kind: w.Kind, Conversation: conv, ID: w.ID, User: string(w.User), Node: w.Node, Term: string(w.Term), Text: string(w.Text), Time: w.Time}
	ev.Sender = identity.Identity{Claimed: string(w.User), Node: w.Node}
	if f := w.From; f != nil {
		ev.Sender.User, ev.Sender.Source = string(f.User), f.Source
		ev.Sender.Method, _ = identity.ParseMethod(f.Method)
	}
	return ev
}

// msgSubject is where node publishes conv's messages; node credentials
// let a node publish only on its own (broker.NodePermissions).
func msgSubject(conv, node string) string { return msgPrefix + conv + "." + node }

// ctlSubject is where node publishes conv's typing notices.
func ctlSubject(conv, node string) string { return ctlPrefix + conv + "." + node }

// bound is w as members are told it, believing its node and sender only
// as far as the subject's node vouches: the subject (msgSubject) is the
// one part of a message node credentials bind, so a message whose node
// field names another node than its subject is shown from the subject's
// node, unverified (Method none, the claim kept), and logged at debug.
func (m *Manager) bound(w *wireMsg, conv, subject string) Event {
	node := subject[strings.LastIndexByte(subject, '.')+1:]
	ev := w.event(conv)
	if w.Node == node && validNode(node) == nil {
		return ev
	}
	m.log.Debug("conversation message claims another node than its subject; shown unverified",
		"conversation", conv, "subject", subject, "claimed_node", w.Node, "claimed_user", string(w.User))
	ev.Node = node
	ev.Sender = identity.Identity{Claimed: string(w.User), Node: node}
	return ev
}

// Exists reports whether conversation name exists, from this node's cache.
func (m *Manager) Exists(name string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, ok := m.metas[CanonicalName(name)]
	return ok
}
