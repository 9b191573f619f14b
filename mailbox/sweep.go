package mailbox

import (
	"time"
)

// This file is the mailbox sweep: the wake-up of the users signed in here
// for mail that may have been stored without this node hearing its notice.
//
// The notice of a stored message is a core NATS message (the wake-up
// subscription hears the publish into the stream). It is lost when it
// cannot reach this node, as when this node's site was cut off from the
// site that stored the message while the node's own NATS connection stayed
// up (so reconnectLoop sees nothing). A drainer that found her mailbox
// empty sleeps until the next notice, so such mail would wait for her next
// sign-in. A sweep looks for it: one stream-info request listing the
// mailbox subjects that hold messages (paged by the server; its size is
// the number of subjects with mail in the whole cluster, nothing for a
// user without mail) and a poke for each user signed in here whose
// mailbox is among them. The poke runs the drainer's usual look and drain,
// so the ack and duplicate rules are those of any other wake-up.
//
// Sweeps are requested by Sweep (the node calls it when gossip members
// come back), by a store operation that failed (the store may be taking
// mail this node does not hear of; the sweep retries until the store
// answers), and every SweepEvery as a backstop. Requests coalesce: one
// pending sweep at a time, at most one every minSweepGap.

// DefaultSweepEvery is the backstop sweep period for a zero
// Config.SweepEvery.
const DefaultSweepEvery = time.Minute

// minSweepGap is the least time between two sweeps, however many causes
// ask: a flapping member or a failing store must not become a storm.
const minSweepGap = 2 * time.Second

// maxSweepRetry bounds the backoff of a sweep that failed.
const maxSweepRetry = 30 * time.Second

// Sweep asks for a sweep soon: every user signed in here whose mailbox
// holds mail is woken. why is logged. It never blocks; requests made
// while one is pending are merged into it.
func (m *Mailbox) Sweep(why string) {
	select {
	case m.sweepReq <- why:
	default:
	}
}

// sweepLoop runs the sweeps until the mailbox closes. Start runs it in
// m.wg.
func (m *Mailbox) sweepLoop() {
	var every <-chan time.Time
	if m.cfg.SweepEvery > 0 {
		t := time.NewTicker(m.cfg.SweepEvery)
		defer t.Stop()
		every = t.C
	}
	var retry *time.Timer // set while a failed sweep waits to be retried
	var retryC <-chan time.Time
	backoff := minSweepGap
	var last time.Time
	for {
		why := ""
		select {
		case <-m.ctx.Done():
			if retry != nil {
				retry.Stop()
			}
			return
		case why = <-m.sweepReq:
		case <-every:
			why = "periodic"
		case <-retryC:
			why = "retry after store error"
		}
		if wait := minSweepGap - time.Since(last); !last.IsZero() && wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-m.ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
		last = time.Now()
		n, err := m.sweep()
		if err != nil {
			m.log.Debug("mailbox sweep failed; retrying", "why", why, "err", err, "in", backoff)
			if retry == nil {
				retry = time.NewTimer(backoff)
				retryC = retry.C
			} else {
				retry.Reset(backoff)
			}
			backoff = min(2*backoff, maxSweepRetry)
			continue
		}
		backoff = minSweepGap
		if retry != nil {
			retry.Stop()
		}
		retryC = nil
		retry = nil
		if n > 0 {
			m.log.Info("mailbox sweep woke users with mail", "why", why, "users", n)
		}
	}
}

// sweep pokes the drainer of every user signed in here whose mailbox holds
// mail and returns how many it poked. With nobody signed in here it asks
// the store nothing.
func (m *Mailbox) sweep() (int, error) {
	m.mu.Lock()
	nobody := len(m.byToken) == 0
	m.mu.Unlock()
	if nobody {
		return 0, nil
	}
	withMail, err := m.censusTurn()
	if err != nil {
		return 0, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for token := range withMail {
		d := m.byToken[token]
		switch {
		case d == nil || d.stopped || m.closed:
			continue
		case d.running:
			d.pokeLocked()
		default:
			d.startLocked() // the census was her look
		}
		n++
	}
	return n, nil
}

// storeFailed is called when a store operation failed: the store may be
// taking mail this node does not hear of (it is cut off from the rest, or
// they elect), so a sweep follows, retried until the store answers.
func (m *Mailbox) storeFailed() { m.Sweep("store error") }
