package mailbox

import (
	"context"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// This file is the look queue: how a node finds out whether the users it
// signs in have mail, without a goroutine or a store request per user in
// flight.
//
// Every sign-in looks (her mail may have waited while she was away), and
// a node may sign thousands in at once (a restart, a wave of logins). A
// drainer that is not running and is poked joins lookQ, once, and costs
// nothing more than its place there. maxLooks lookers (goroutines of the
// Mailbox, started by Start, ended by Close) take from the queue: one
// drainer at a time while the queue is short (one subject-filtered count
// of her mailbox), or, once censusAt or more wait, all of them with one
// census of the stream (the sweep's request: the subjects that hold mail,
// whose size grows with the mail in the cluster, not with the users asked
// about). Only a drainer whose mailbox holds mail, or whose look failed,
// starts its goroutine (run), which drains and polls as before.
//
// Why: a 30-node cluster signing 100,000 users in used to start four
// stream-info requests per sign-in at once, thousands in flight per node;
// they timed out while the store still answered each, the retries piled
// on, and the store node grew past 5 GiB.

// maxLooks bounds the looks into mailboxes one node has in flight, the
// lookers' and the running drainers' together: enough to keep the store
// busy, too few to queue there.
const maxLooks = 4

// censusAt is the queue length from which one census answers every
// drainer waiting for a look: a census costs one request however many
// users wait, but more than one user's count when few do.
const censusAt = 32

// queueLookLocked puts d in the look queue unless it is there already.
// m.mu must be held.
func (d *drainer) queueLookLocked() {
	if d.queued {
		return
	}
	d.queued = true
	d.m.lookQ = append(d.m.lookQ, d)
	select {
	case d.m.lookReady <- struct{}{}:
	default:
	}
}

// takeLooks takes the next work from the look queue: one drainer, or all
// of them once censusAt wait. Drainers stopped meanwhile are dropped.
func (m *Mailbox) takeLooks() []*drainer {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 1
	if len(m.lookQ) >= censusAt {
		n = len(m.lookQ)
	}
	var out []*drainer
	for len(m.lookQ) > 0 && len(out) < n {
		d := m.lookQ[0]
		m.lookQ[0] = nil
		m.lookQ = m.lookQ[1:]
		d.queued = false
		if !d.stopped && !d.running {
			out = append(out, d)
		}
	}
	if len(m.lookQ) == 0 {
		m.lookQ = nil // let a wave's backing array go
	} else {
		select {
		case m.lookReady <- struct{}{}: // another looker can take the rest
		default:
		}
	}
	return out
}

// lookLoop is one looker; Start runs maxLooks of them in m.wg. It ends with
// the mailbox.
func (m *Mailbox) lookLoop() {
	for {
		select {
		case <-m.ctx.Done():
			return
		case <-m.lookReady:
		}
		for m.ctx.Err() == nil {
			batch := m.takeLooks()
			if len(batch) == 0 {
				break
			}
			if len(batch) == 1 {
				has, err := batch[0].hasMail(m.ctx)
				m.looked(batch[0], has, err)
				continue
			}
			withMail, err := m.censusTurn()
			for _, d := range batch {
				_, has := withMail[d.token]
				m.looked(d, has, err)
			}
		}
	}
}

// lookTurn waits, bounded by wait, for one of the node's maxLooks turns
// to ask the store, and returns the store operation's context (bounded by
// StoreTimeout from the turn) and the function that ends the turn.
func (m *Mailbox) lookTurn(wait context.Context) (context.Context, func(), error) {
	select {
	case m.looks <- struct{}{}:
	case <-wait.Done():
		return nil, nil, wait.Err()
	}
	ctx, cancel := m.storeCtx()
	return ctx, func() { cancel(); <-m.looks }, nil
}

// censusTurn is census within the node's bound on looks in flight.
func (m *Mailbox) censusTurn() (map[string]struct{}, error) {
	ctx, done, err := m.lookTurn(m.ctx)
	if err != nil {
		return nil, err
	}
	defer done()
	return m.census(ctx)
}

// census returns the tokens of the users whose mailboxes hold mail, from
// one stream-info request on every mailbox subject (paged by the server),
// and notes whether any one-subject mailbox of earlier versions holds mail.
func (m *Mailbox) census(ctx context.Context) (map[string]struct{}, error) {
	if err := m.connected(); err != nil {
		return nil, err
	}
	st, _, err := m.handles(ctx)
	if err != nil {
		return nil, err
	}
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(SubjectPrefix+">"))
	if err != nil {
		return nil, err
	}
	withMail := make(map[string]struct{})
	legacy := false
	for subj, c := range info.State.Subjects {
		if c == 0 {
			continue
		}
		token, _, below := strings.Cut(strings.TrimPrefix(subj, SubjectPrefix), ".")
		withMail[token] = struct{}{}
		legacy = legacy || !below // a one-subject mailbox of earlier versions
	}
	// Before anyone acts on it: the looks that follow must count what this
	// census saw.
	m.legacy.Store(legacy)
	return withMail, nil
}

// looked acts on a look a looker made for d: mail (or a store that did not
// answer) starts d's goroutine, which drains (or retries); an empty
// mailbox leaves d idle, but a wake-up notice of a stored message asks
// for a second look wakeRecheck later (the notice can come before the
// stream has stored the message).
func (m *Mailbox) looked(d *drainer, has bool, err error) {
	if err != nil && m.ctx.Err() == nil {
		m.storeFailed() // the others signed in here may miss notices too
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed || d.stopped || d.running {
		return
	}
	switch {
	case has || err != nil:
		d.startLocked()
	case d.recheck:
		d.recheck = false
		time.AfterFunc(wakeRecheck, d.poke) // poke never blocks, even after Close
	}
}
