package mailbox

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/msprelay/msprelay/switchboard"
)

// drainer hands one user's queued messages to her lines on this node while
// she has any. Every node where she is signed in may run one, and they all
// pull from one durable consumer per user, which gives each message to
// exactly one of them, one at a time (MaxAckPending 1), in order.
//
// An idle user costs no goroutine, timer or NATS interest: the drainer is a
// small record in the Mailbox's maps while she has lines here, and its
// goroutine (run) exists only while her mailbox holds messages or a wake-up
// is being checked. Her durable consumer is created only once a look into
// the stream (a subject-filtered count, no consumer; a second one while
// one-subject mailboxes of earlier versions exist) finds mail. The
// Mailbox's one wake-up subscription on every mailbox subject pokes the
// drainer of the user a stored message is for.
//
// The Mailbox owns drainers: LineUp makes one (and pokes it) when her
// first line signs in here, LineDown cancels it when her last line signs
// out, Close cancels them all and waits. poke starts run in the mailbox's
// WaitGroup; Mailbox.mu guards running, so that at most one run exists per
// drainer and none starts after Close. A drainer delivers only through
// lines, the switchboard's callback.
//
// The fields below lines are guarded by m.mu. cancel and wake exist only
// while run does: an idle drainer is a few words.
type drainer struct {
	m     *Mailbox
	user  string // canonical
	token string // UserToken(user), her key in Mailbox.byToken
	lines switchboard.Lines

	running bool               // run's goroutine exists
	queued  bool               // in Mailbox.lookQ, waiting for a look
	stopped bool               // LineDown or Close: start no run again
	recheck bool               // a wake-up asked for a second look; run takes it
	cancel  context.CancelFunc // ends the running run's context
	wake    chan struct{}      // cap 1: look into the mailbox now; run's
}

// poke makes the drainer look into her mailbox soon: it wakes the running
// goroutine or queues a look (look.go), which starts the goroutine if she
// has mail. It never blocks for long (m.mu only).
func (d *drainer) poke() {
	d.m.mu.Lock()
	defer d.m.mu.Unlock()
	d.pokeLocked()
}

// pokeLocked is poke with m.mu held.
func (d *drainer) pokeLocked() {
	if d.m.closed || d.stopped {
		return
	}
	if !d.running {
		d.queueLookLocked()
		return
	}
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// startLocked starts run in the mailbox's WaitGroup. m.mu must be held,
// and neither Close nor LineDown may have come.
func (d *drainer) startLocked() {
	d.running = true
	ctx, cancel := context.WithCancel(d.m.ctx)
	wake := make(chan struct{}, 1)
	wake <- struct{}{} // the look that started run found mail: look and drain
	d.cancel, d.wake = cancel, wake
	d.m.wg.Go(func() { d.run(ctx, wake) })
}

// wakeLocked is pokeLocked for the notice of a stored message: core
// subscribers can hear of a publish before the stream has stored it, so
// the drainer looks again wakeRecheck later if the first look finds
// nothing. A sign-in needs no second look: what was stored before it is
// there, and what is stored after it comes with its own notice.
func (d *drainer) wakeLocked() {
	d.recheck = true
	d.pokeLocked()
}

// takeRecheck reports, once, whether a wake-up asked for a second look.
func (d *drainer) takeRecheck() bool {
	d.m.mu.Lock()
	defer d.m.mu.Unlock()
	r := d.recheck
	d.recheck = false
	return r
}

// stopLocked keeps the drainer from starting again and ends its run, if
// any. m.mu must be held.
func (d *drainer) stopLocked() {
	d.stopped = true
	if d.cancel != nil {
		d.cancel()
	}
}

// stopIfIdle ends run's life when no wake-up is waiting: it reports true
// when run must return. A wake-up that came meanwhile keeps it going.
func (d *drainer) stopIfIdle(ctx context.Context) bool {
	d.m.mu.Lock()
	defer d.m.mu.Unlock()
	if len(d.wake) > 0 && ctx.Err() == nil && !d.m.closed && !d.stopped {
		return false
	}
	d.running = false
	d.cancel()
	d.cancel, d.wake = nil, nil
	return true
}

// consumerName is the durable consumer of user's mailbox.
func consumerName(user string) string { return "mbox-" + UserToken(user) }

// consumerInactive is how long a user's consumer outlives her last drainer.
const consumerInactive = 24 * time.Hour

// wakeRecheck is how soon after a wake-up the drainer looks again.
const wakeRecheck = 250 * time.Millisecond

// maxDrainRound bounds how many messages one round of drain hands out
// before the drainer looks at its context and wake-ups again.
const maxDrainRound = 256

// run is the drainer's goroutine, started by poke. It looks into her
// mailbox and, while it holds messages, drains it, polling every PollEvery
// for messages JetStream gives back after a node died. It returns once
// her mailbox is found empty with no wake-up in the last wakeRecheck (a
// wake-up may come before the stream has stored the message that caused
// it: core subscribers can hear of a publish first), or when ctx ends.
func (d *drainer) run(ctx context.Context, wake chan struct{}) {
	m := d.m
	log := m.log.With("user", d.user)
	var tick *time.Ticker // made on the first round that finds mail
	defer func() {
		if tick != nil {
			tick.Stop()
		}
	}()
	var tickC <-chan time.Time
	again := time.NewTimer(wakeRecheck)
	again.Stop()
	defer again.Stop()
	recheck := false // a wake-up notice is less than wakeRecheck old
	var cons jetstream.Consumer
	failing := false // warn once per outage, not once per poll
	report := func(what string, err error) {
		lvl := slog.LevelDebug
		if !failing {
			lvl = slog.LevelWarn
		}
		failing = true
		log.Log(ctx, lvl, what, "err", err)
	}
	for {
		select {
		case <-wake: // this look answers it
		default:
		}
		if d.takeRecheck() {
			recheck = true
			again.Reset(wakeRecheck) // Go 1.23 timers: no stale tick survives Reset
		}
		has, err := d.hasMail(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			report("mailbox not readable; retrying", err)
			m.storeFailed() // the others signed in here may miss notices too
		case err == nil && !has && !recheck:
			if d.stopIfIdle(ctx) {
				return
			}
			continue // woken meanwhile: look again
		case err == nil && has:
			if cons == nil {
				cons, err = d.consumer(ctx)
				if err != nil && ctx.Err() == nil {
					report("mailbox consumer not ready; retrying", err)
				}
			}
			if cons != nil {
				if err := d.drain(ctx, cons); err != nil && ctx.Err() == nil {
					// Find or create the consumer again next time: it may
					// have been removed, or its stream recreated.
					report("draining mailbox", err)
					cons = nil
				} else if err == nil && failing {
					log.Info("draining mailbox again")
					failing = false
				}
			}
		}
		if err != nil || has {
			if tick == nil {
				tick = time.NewTicker(m.cfg.PollEvery)
				tickC = tick.C
			}
		}
		select {
		case <-ctx.Done():
			d.stopIfIdle(ctx)
			return
		case <-wake:
			// Put the wake-up back for the look at the top of the loop.
			select {
			case wake <- struct{}{}:
			default:
			}
		case <-again.C:
			recheck = false
		case <-tickC:
		}
	}
}

// hasMail reports whether her mailbox holds any message, counting the
// stream's subjects without a consumer: a user without mail costs the
// store nothing. It waits its turn among the node's looks (maxLooks),
// bounded by ctx (her drainer's life); StoreTimeout counts from the turn.
func (d *drainer) hasMail(ctx context.Context) (bool, error) {
	ctx, done, err := d.m.lookTurn(ctx)
	if err != nil {
		return false, err
	}
	defer done()
	st, _, err := d.m.handles(ctx)
	if err != nil {
		return false, err
	}
	subjects, err := d.m.count(ctx, st, d.user, true)
	if err != nil {
		return false, err
	}
	for _, n := range subjects {
		if n > 0 {
			return true, nil
		}
	}
	return false, nil
}

// consumer creates (or finds) her durable consumer.
func (d *drainer) consumer(ctx context.Context) (jetstream.Consumer, error) {
	ctx, cancel := d.m.storeCtx()
	defer cancel()
	if err := d.m.setup(ctx); err != nil {
		return nil, err
	}
	return d.m.js.CreateOrUpdateConsumer(ctx, Stream, jetstream.ConsumerConfig{
		Durable:     consumerName(d.user),
		Description: "msprelay: drains one user's mailbox on the nodes where she is signed in",
		// Her messages, per sender, and those an earlier version queued
		// on her one subject: upgrading loses none.
		FilterSubjects:    []string{Subject(d.user), Subject(d.user) + ".>"},
		DeliverPolicy:     jetstream.DeliverAllPolicy,
		AckPolicy:         jetstream.AckExplicitPolicy,
		AckWait:           d.m.cfg.AckWait,
		MaxAckPending:     1,
		MaxDeliver:        -1,
		InactiveThreshold: consumerInactive,
		Replicas:          d.m.cfg.Replicas,
	})
}

// drain hands out her messages one at a time until the mailbox is empty,
// no line here takes messages, or the round is over.
func (d *drainer) drain(ctx context.Context, cons jetstream.Consumer) error {
	for range maxDrainRound {
		if ctx.Err() != nil || !d.lines.Accepting() {
			return nil
		}
		batch, err := cons.FetchNoWait(1)
		if err != nil {
			return err
		}
		got := false
		for msg := range batch.Messages() {
			got = true
			d.handle(ctx, msg)
		}
		if err := batch.Error(); err != nil {
			if d.consumerAlive(ctx, cons) {
				// Most often MaxAckPending: another node is handing her a
				// message right now. Look again on the next wake-up.
				d.m.log.Debug("mailbox fetch refused; consumer fine", "user", d.user, "err", err)
				return nil
			}
			return err
		}
		if !got {
			return nil
		}
	}
	d.poke() // more may be waiting: come back after a look at ctx
	return nil
}

// consumerAlive reports, after a failed fetch, whether her consumer still
// exists, so that the drainer keeps it rather than creating it anew.
// JetStream refuses a fetch while her one message in hand (MaxAckPending 1)
// is out with another node's drainer with a status that carries no error
// code, so the consumer's state is asked instead of the error's text.
func (d *drainer) consumerAlive(ctx context.Context, cons jetstream.Consumer) bool {
	ctx, cancel := context.WithTimeout(ctx, d.m.cfg.StoreTimeout)
	defer cancel()
	_, err := cons.Info(ctx)
	return err == nil
}

// handle delivers one queued message through her lines and settles it
// with JetStream: Ack once a line took it (or it is a repeat already
// delivered here), Term when she refused it (blocked sender) or it cannot
// be decoded, Nak otherwise so that she gets it later, here or on another
// node.
func (d *drainer) handle(ctx context.Context, msg jetstream.Msg) {
	log := d.m.log.With("user", d.user)
	del, err := switchboard.DecodeQueued(msg.Data())
	if err != nil {
		log.Error("dropping undecodable queued message", "err", err)
		_ = msg.Term()
		return
	}
	d.m.bindOrigin(del, msg.Subject())
	del.Queued = true // sinks show it as queued, with the time it was sent
	r := d.lines.Deliver(ctx, del)
	switch {
	case r.Status == switchboard.Delivered:
		log.Debug("queued message delivered", "id", del.ID, "term", r.Term, "acked", r.Acked, "note", r.Err)
		d.settle(msg, true)
	case errors.Is(r.Err, switchboard.ErrBusy), errors.Is(r.Err, switchboard.ErrInFlight):
		// She turned busy under our feet, or this node is delivering the
		// same id right now: keep it and look again soon.
		d.nakLater(msg, time.Second)
	case r.Status == switchboard.Refused:
		log.Info("queued message refused by recipient; dropped", "id", del.ID, "term", r.Term, "reason", r.Err)
		d.settle(msg, false)
	case errors.Is(r.Err, switchboard.ErrNoTerminal):
		_ = msg.Nak() // no line here takes it now: free for another node at once
	default:
		d.nakLater(msg, 200*time.Millisecond)
	}
}

// nakLater gives msg back to JetStream for delay and wakes the drainer
// once it can be fetched again: nothing else would (the wake-up for it was
// spent), so it would wait for the next poll, PollEvery away.
func (d *drainer) nakLater(msg jetstream.Msg, delay time.Duration) {
	_ = msg.NakWithDelay(delay)
	time.AfterFunc(delay+delay/4, d.poke) // poke never blocks, even after the drainer ended
}

// settle acknowledges (ok) or terminates a message and waits for the
// server's confirmation, so that the next fetch does not see it again.
func (d *drainer) settle(msg jetstream.Msg, ok bool) {
	if !ok {
		_ = msg.Term()
		return
	}
	ctx, cancel := d.m.storeCtx()
	defer cancel()
	if err := msg.DoubleAck(ctx); err != nil {
		// The message comes back after AckWait; the recent-id set and the
		// client's own check by id keep it from being shown twice.
		d.m.log.Warn("mailbox ack failed", "user", d.user, "err", err)
	}
}
