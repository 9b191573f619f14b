package switchboard

import (
	"context"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// drainer hands one user's queued messages to her lines on this node while
// she has any. Every node where she is signed in runs one, and they all
// pull from one durable consumer per user, which gives each message to
// exactly one of them, one at a time (MaxAckPending 1), in order.
//
// The mailbox owns drainers: lineUp starts one (in the mailbox's WaitGroup)
// when her first line signs in here, lineDown cancels it when her last line
// signs out, close cancels them all and waits.
type drainer struct {
	m      *mailbox
	user   string // canonical
	cancel context.CancelFunc
	wake   chan struct{} // cap 1: look into the mailbox now
}

// lineUp notes that user has a line here: it starts her drainer, or wakes
// the running one (a new line may take messages the others could not).
func (m *mailbox) lineUp(user string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return
	}
	if d := m.drains[user]; d != nil {
		d.poke()
		return
	}
	ctx, cancel := context.WithCancel(m.ctx)
	d := &drainer{m: m, user: user, cancel: cancel, wake: make(chan struct{}, 1)}
	m.drains[user] = d
	m.wg.Go(func() { d.run(ctx) })
}

// lineDown notes that user's last line here signed out: her drainer stops.
// A message it is delivering right now is handed back to the mailbox.
func (m *mailbox) lineDown(user string) {
	m.mu.Lock()
	d := m.drains[user]
	delete(m.drains, user)
	m.mu.Unlock()
	if d != nil {
		d.cancel()
	}
}

// poke wakes user's drainer, if she has one here.
func (m *mailbox) poke(user string) {
	m.mu.Lock()
	d := m.drains[user]
	m.mu.Unlock()
	if d != nil {
		d.poke()
	}
}

func (d *drainer) poke() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// consumerName is the durable consumer of user's mailbox.
func consumerName(user string) string { return "mbox-" + UserToken(user) }

// consumerInactive is how long a user's consumer outlives her last drainer.
const consumerInactive = 24 * time.Hour

// maxDrainRound bounds how many messages one round of drain hands out
// before the drainer looks at its context and wake-ups again.
const maxDrainRound = 256

// run is the drainer's goroutine. It listens on her mailbox subject, so a
// message stored for her wakes it at once (that closes the race with a
// sender whose node has not yet heard that she signed in), and otherwise
// polls every PollEvery for messages JetStream gave back after a node died.
func (d *drainer) run(ctx context.Context) {
	m := d.m
	log := m.log.With("user", d.user)
	sub, err := m.nc.Subscribe(MailboxSubject(d.user), func(*nats.Msg) { d.poke() })
	if err != nil {
		log.Warn("mailbox wake-up subscription failed; polling only", "err", err)
	} else {
		defer sub.Unsubscribe()
		_ = m.nc.FlushTimeout(m.cfg.StoreTimeout)
	}
	tick := time.NewTicker(m.cfg.PollEvery)
	defer tick.Stop()
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
		if cons == nil {
			cons, err = d.consumer(ctx)
			if err != nil && ctx.Err() == nil {
				report("mailbox consumer not ready; retrying", err)
			}
		}
		if cons != nil {
			if err := d.drain(ctx, cons); err != nil && ctx.Err() == nil {
				// Find or create the consumer again next time: it may have
				// been removed, or its stream recreated.
				report("draining mailbox", err)
				cons = nil
			} else if err == nil && failing {
				log.Info("draining mailbox again")
				failing = false
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-d.wake:
		case <-tick.C:
		}
	}
}

// consumer creates (or finds) her durable consumer.
func (d *drainer) consumer(ctx context.Context) (jetstream.Consumer, error) {
	ctx, cancel := d.m.storeCtx()
	defer cancel()
	if err := d.m.setup(ctx); err != nil {
		return nil, err
	}
	return d.m.js.CreateOrUpdateConsumer(ctx, MailboxStream, jetstream.ConsumerConfig{
		Durable:           consumerName(d.user),
		Description:       "msprelay: drains one user's mailbox on the nodes where she is signed in",
		FilterSubject:     MailboxSubject(d.user),
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
		if ctx.Err() != nil || d.m.sb.pickLine(d.user, "") == nil {
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
			if strings.Contains(err.Error(), "MaxAckPending") {
				return nil // another node is handing her a message right now
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

// handle delivers one queued message and settles it with JetStream: Ack
// once a line took it (or it is a repeat already delivered here), Term when
// she refused it (blocked sender) or it cannot be decoded, Nak otherwise so
// that she gets it later, here or on another node.
func (d *drainer) handle(ctx context.Context, msg jetstream.Msg) {
	log := d.m.log.With("user", d.user)
	del, _, err := decodeDelivery(msg.Data())
	if err != nil {
		log.Error("dropping undecodable queued message", "err", err)
		_ = msg.Term()
		return
	}
	sb := d.m.sb
	a, mine := sb.recent.claim(d.user, del.ID, true)
	if !mine {
		st, ok := a.wait(ctx, sb.cfg.AckTimeout+d.m.cfg.StoreTimeout)
		if ok && st == Delivered {
			log.Debug("queued message already delivered here", "id", del.ID)
			d.settle(ctx, msg, true)
			return
		}
		_ = msg.NakWithDelay(time.Second) // being delivered here right now; look again soon
		return
	}
	l := sb.pickLine(d.user, del.RecipTerm)
	if l == nil {
		sb.recent.finish(a, Failed)
		_ = msg.Nak()
		return
	}
	r := l.deliver(del, false)
	sb.recent.finish(a, r.Status)
	switch r.Status {
	case Delivered:
		log.Debug("queued message delivered", "id", del.ID, "term", l.term, "acked", r.Acked)
		d.settle(ctx, msg, true)
	case Refused:
		if r.Reason == ErrBusy.Error() {
			// She turned busy under our feet: keep it for later.
			_ = msg.NakWithDelay(time.Second)
			return
		}
		log.Info("queued message refused by recipient; dropped", "id", del.ID, "term", l.term, "reason", r.Reason)
		d.settle(ctx, msg, false)
	default:
		_ = msg.NakWithDelay(200 * time.Millisecond)
	}
}

// settle acknowledges (ok) or terminates a message and waits for the
// server's confirmation, so that the next fetch does not see it again.
func (d *drainer) settle(ctx context.Context, msg jetstream.Msg, ok bool) {
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
