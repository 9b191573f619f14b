package switchboard

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/msprelay/msprelay/principal"
)

// target is one terminal a delivery is addressed to on this node.
type target struct{ user, term string }

// deliverLocal delivers d to targets, all on this node, and returns one
// Result per target, in order (see deliverLocalInto).
func (s *Switchboard) deliverLocal(ctx context.Context, d *Delivery, ts []target) []Result {
	out := make([]Result, len(ts))
	s.deliverLocalInto(ctx, d, ts, out, nil)
	return out
}

// deliverLocalInto delivers d to targets, all on this node, and fills out
// (len(ts)) with one Result per target, in order. Targets are grouped by
// user, and each user's group is one attempt in the recent-id set: a
// repeat of d for her (a retransmission, the same message through another
// ingress node) is answered with the first attempt's result instead of
// being pushed again. Neither ts nor out is kept or handed to another
// goroutine, so callers may pass stack storage. ord (nil for none) is
// told once the one target's terminal queued d; with several targets it
// is never told.
func (s *Switchboard) deliverLocalInto(ctx context.Context, d *Delivery, ts []target, out []Result, ord Orderer) {
	if len(ts) == 1 {
		// One terminal, the usual case: no grouping.
		idx := [1]int{0}
		s.deliverUser(ctx, d, principal.CanonicalUser(ts[0].user), ts, idx[:], out, ord)
		return
	}
	s.deliverUsers(ctx, d, slices.Clone(ts), out)
}

// deliverUsers is deliverLocalInto for several targets: each user's group
// on its own goroutine. Those write into their own copy of the results.
func (s *Switchboard) deliverUsers(ctx context.Context, d *Delivery, ts []target, out []Result) {
	groups := map[string][]int{}
	var users []string
	for i, t := range ts {
		u := principal.CanonicalUser(t.user)
		if _, ok := groups[u]; !ok {
			users = append(users, u)
		}
		groups[u] = append(groups[u], i)
	}
	rs := make([]Result, len(ts))
	var wg sync.WaitGroup
	for _, u := range users {
		wg.Go(func() { s.deliverUser(ctx, d, u, ts, groups[u], rs, nil) })
	}
	wg.Wait()
	copy(out, rs)
}

// maxClaims bounds how often deliverUser retries after earlier attempts of
// the same message failed under its feet.
const maxClaims = 3

// deliverUser delivers d to the targets ts[idx] (all user's) and fills
// out[idx]. ord (nil for none) is told once d is queued for the one
// target.
func (s *Switchboard) deliverUser(ctx context.Context, d *Delivery, user string, ts []target, idx []int, out []Result, ord Orderer) {
	fill := func(st Status, err error) {
		for _, i := range idx {
			out[i] = Result{User: user, Node: s.cfg.Node, Term: ts[i].term, Status: st, Err: err}
		}
	}
	for range maxClaims {
		a, mine := s.recent.claim(user, d.ID, false)
		if !mine {
			st, ok := a.wait(ctx, s.repeatWait())
			switch {
			case !ok:
				fill(Failed, ErrTimeout)
				return
			case st == Delivered:
				fill(Delivered, ErrDuplicate)
				return
			case st == Queued:
				fill(Queued, ErrQueuedBefore)
				return
			}
			continue // the first attempt failed; try again ourselves
		}
		var one [1]Result
		rs := one[:]
		if len(idx) == 1 {
			// One terminal, the usual case: waiting for its ack on this
			// goroutine spares a goroutine (and its stack growth) per
			// message.
			rs[0] = s.deliverLine(ctx, d, user, ts[idx[0]].term, ord)
		} else {
			rs = s.deliverLines(ctx, d, user, ts, idx)
		}
		s.recent.finish(a, bestStatus(rs))
		for j, i := range idx {
			out[i] = rs[j]
		}
		return
	}
	fill(Failed, ErrTimeout)
}

// deliverLine delivers d to user's line at term on this node; ord (nil for
// none) is told once the line's terminal queued d.
func (s *Switchboard) deliverLine(ctx context.Context, d *Delivery, user, term string, ord Orderer) Result {
	l := s.localLine(user, term)
	if l == nil {
		return Result{User: user, Node: s.cfg.Node, Term: term, Status: Failed, Err: ErrTerminalGone}
	}
	return l.deliver(ctx, d, true, ord)
}

// deliverLines delivers d to user's lines ts[idx] at once, so the wait is
// the slowest acknowledgement, not their sum.
func (s *Switchboard) deliverLines(ctx context.Context, d *Delivery, user string, ts []target, idx []int) []Result {
	rs := make([]Result, len(idx))
	terms := make([]string, len(idx)) // the goroutines get no reference to ts
	for j, i := range idx {
		terms[j] = ts[i].term
	}
	var wg sync.WaitGroup
	for j := range terms {
		wg.Go(func() { rs[j] = s.deliverLine(ctx, d, user, terms[j], nil) })
	}
	wg.Wait()
	return rs
}

// repeatWait bounds how long a repeat waits for the attempt in flight: its
// client's acknowledgement, then perhaps a requeue into the mailbox.
func (s *Switchboard) repeatWait() time.Duration { return s.cfg.AckTimeout + s.cfg.StoreTimeout }

// bestStatus is what a group of results means for the recent-id set:
// delivered anywhere beats queued beats anything else.
func bestStatus(rs []Result) Status {
	best := Failed
	for _, r := range rs {
		switch {
		case r.Status == Delivered:
			return Delivered
		case r.Status == Queued:
			best = Queued
		}
	}
	return best
}

// deliver hands d to the line's terminal, applying the busy rule first. An
// acknowledging client has AckTimeout to acknowledge; if it does not (or
// its session ends first), the message goes to the mailbox when requeue is
// set and the policy queues (Queued), else the result is Failed. The wait
// also ends with ctx: a delivery served for another node lasts no longer
// than the deadline its ingress node gave it. Live deliveries (requeue
// set) are held to the line's inbound rate. ord (nil for none) is told as
// soon as the terminal has queued d, before the wait for its
// acknowledgement: d then holds its place in the terminal's order, so the
// caller's next message for the same recipient need not wait (issue 21).
func (l *Line) deliver(ctx context.Context, d *Delivery, requeue bool, ord Orderer) Result {
	l.mu.Lock()
	st, out := l.entry.State, l.out
	l.mu.Unlock()
	r := Result{User: l.user, Node: l.sb.cfg.Node, Term: l.term}
	switch {
	case out:
		r.Status, r.Err = Failed, ErrTerminalGone
		return r
	case st == principal.Busy:
		r.Status, r.Err = Refused, busyErr(l.t)
		return r
	case requeue && !l.admit():
		// A live delivery over the line's rate fails, so that it goes to
		// her next terminal or her mailbox (inbound.go).
		r.Status, r.Err = Failed, ErrInboundRate
		return r
	}
	at, ok := l.t.(AckTerminal)
	if !ok {
		r.Status, r.Err = Delivered, deliveredNote(l.t)
		if err := l.t.Deliver(ctx, d); err != nil {
			r.Status, r.Err = classify(err), err
		}
		return r
	}
	done := l.sb.ackChan()
	acks, err := at.DeliverAcked(ctx, d, done)
	switch {
	case err != nil:
		l.sb.ackChans.Put(done)
		r.Status, r.Err = classify(err), err
		return r
	case !acks:
		l.sb.ackChans.Put(done)
		r.Status = Delivered
		return r
	}
	if ord != nil {
		ord.InOrder()
	}
	t := time.NewTimer(l.sb.cfg.AckTimeout)
	defer t.Stop()
	reason := ErrNotAcked
	select {
	case err := <-done:
		// Its one value is in: nobody else holds done now. (After a
		// timeout it is dropped instead, since the value may still come.)
		l.sb.ackChans.Put(done)
		if err == nil {
			r.Status, r.Acked = Delivered, true
			return r
		}
		reason = fmt.Errorf("%w: %w", ErrNotAcked, err)
	case <-t.C:
	case <-ctx.Done():
		// The ingress stops waiting now; the value done may still get is
		// dropped with done, as after a timeout.
		reason = fmt.Errorf("%w: %w", ErrNotAcked, ctx.Err())
	}
	l.sb.log.Info("message not acknowledged", "user", l.user, "term", l.term, "id", d.ID, "reason", reason)
	if requeue && l.sb.queues() {
		if _, err := l.sb.mbox.Put(d, l.user); err != nil {
			reason = fmt.Errorf("%w; %w", reason, err)
		} else {
			r.Status, r.Err = Queued, reason
			return r
		}
	}
	r.Status, r.Err = Failed, reason
	return r
}

// ackChan lends a channel for one acknowledgement (AckTerminal).
func (s *Switchboard) ackChan() chan error {
	if c, ok := s.ackChans.Get().(chan error); ok {
		return c
	}
	return make(chan error, 1)
}

func classify(err error) Status {
	if errors.Is(err, ErrBlocked) || errors.Is(err, ErrBusy) {
		return Refused
	}
	return Failed
}

// pickLine chooses the line of user on this node that takes a queued
// message: the named terminal if it is here and not busy, else her most
// recently active line that is not busy. nil means none can take it now.
func (s *Switchboard) pickLine(user, term string) *Line {
	if term != "" && term != "*" {
		if l := s.localLine(user, term); l != nil && l.accepting() {
			return l
		}
	}
	user = principal.CanonicalUser(user)
	s.mu.Lock()
	var cands []*Line
	for k, l := range s.lines {
		if k.user == user {
			cands = append(cands, l)
		}
	}
	s.mu.Unlock()
	var best *Line
	var bestAt time.Time
	for _, l := range cands {
		l.mu.Lock()
		ok, at := !l.out && l.entry.State != principal.Busy, l.entry.LastActive
		l.mu.Unlock()
		if ok && (best == nil || at.After(bestAt)) {
			best, bestAt = l, at
		}
	}
	return best
}

// accepting reports whether the line takes messages now (signed in, not busy).
func (l *Line) accepting() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return !l.out && l.entry.State != principal.Busy
}

// userLines is the Lines callback for one user's lines on this node.
type userLines struct {
	s    *Switchboard
	user string // canonical
}

// Accepting reports whether one of her lines here takes messages now.
func (u userLines) Accepting() bool { return u.s.pickLine(u.user, "") != nil }

// Deliver hands a queued message to the line pickLine chooses. A repeat
// of an id being delivered here right now waits for that attempt: its
// success answers Delivered with ErrDuplicate, anything else Failed with
// ErrInFlight. No line to take it is Failed with ErrNoTerminal.
func (u userLines) Deliver(ctx context.Context, d *Delivery) Result {
	s := u.s
	a, mine := s.recent.claim(u.user, d.ID, true)
	if !mine {
		st, ok := a.wait(ctx, s.repeatWait())
		r := Result{User: u.user, Node: s.cfg.Node, Term: d.RecipTerm, Status: Failed, Err: ErrInFlight}
		if ok && st == Delivered {
			r.Status, r.Err = Delivered, ErrDuplicate
		}
		return r
	}
	l := s.pickLine(u.user, d.RecipTerm)
	if l == nil {
		s.recent.finish(a, Failed)
		return Result{User: u.user, Node: s.cfg.Node, Term: d.RecipTerm, Status: Failed, Err: ErrNoTerminal}
	}
	if !l.pace(ctx) {
		s.recent.finish(a, Failed)
		return Result{User: u.user, Node: s.cfg.Node, Term: l.term, Status: Failed, Err: ErrInboundRate}
	}
	r := l.deliver(ctx, d, false, nil)
	s.recent.finish(a, r.Status)
	return r
}
