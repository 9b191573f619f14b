package switchboard

import (
	"context"
	"errors"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// This file holds the per-line inbound rate (issue 12: "3000 messages in
// 0.3 s pushed into one live session"). A line takes at most InboundRate
// messages a second live (InboundBurst at once). A message over the rate
// is not dropped: its result is Failed with ErrInboundRate, so the
// "right terminal" rule tries her next terminal and, if none takes it,
// the message goes to her mailbox like any message no terminal took
// (Send's reply: "+queued for alice (pts/1@n1 over the inbound rate)").
// Her mailbox then hands it to her at the line's rate: the drainer waits
// for the line's limiter instead of being refused by it, and leaves a
// fifth of the burst for live messages.

// Defaults of Config.InboundRate and Config.InboundBurst.
const (
	DefaultInboundRate  = 20.0
	DefaultInboundBurst = 50
)

// ErrInboundRate is the failure of a live delivery to a line that has had
// its share of messages for now.
var ErrInboundRate = errors.New("over the inbound rate")

// inboundWait bounds how long the mailbox's drainer waits for a line's
// rate to allow one more message before it gives the message back.
const inboundWait = time.Second

// inboundLogEvery spaces a line's log lines about messages over its rate.
const inboundLogEvery = 10 * time.Second

// inbound is one line's rate limiter and its count of messages over it.
type inbound struct {
	lim  *rate.Limiter
	keep float64 // tokens the mailbox's drainer leaves for live messages

	// mu guards over and logged.
	mu     sync.Mutex
	over   int       // messages over the rate since the last log line
	logged time.Time // when the last log line went out
}

// newInbound builds a line's limiter; nil when the limit is off.
func (s *Switchboard) newInbound() *inbound {
	if s.cfg.InboundRate < 0 {
		return nil
	}
	return &inbound{lim: rate.NewLimiter(rate.Limit(s.cfg.InboundRate), s.cfg.InboundBurst), keep: float64(s.cfg.InboundBurst / 5)}
}

// inbound returns the line's limiter, making it on first use; nil when the
// limit is off.
func (l *Line) inbound() *inbound {
	if in := l.in.Load(); in != nil {
		return in
	}
	in := l.sb.newInbound()
	if in == nil || l.in.CompareAndSwap(nil, in) {
		return in
	}
	return l.in.Load()
}

// admit takes one message live if the line's rate allows it now. Over the
// rate it counts the refusal and logs the count at most once per
// inboundLogEvery.
func (l *Line) admit() bool {
	in := l.inbound()
	if in == nil || in.lim.Allow() {
		return true
	}
	now := time.Now()
	in.mu.Lock()
	in.over++
	n, due := in.over, now.Sub(in.logged) >= inboundLogEvery
	if due {
		in.over, in.logged = 0, now
	}
	in.mu.Unlock()
	if due {
		l.sb.log.Info("messages over a line's inbound rate go to the mailbox", "user", l.user, "term", l.term, "count", n,
			"rate", l.sb.cfg.InboundRate, "burst", l.sb.cfg.InboundBurst)
	}
	return false
}

// pace waits, at most inboundWait, until the line's rate allows one more
// message while leaving keep tokens for live messages; the mailbox's
// drainer calls it so that queued messages arrive at the line's rate
// without starving live ones (a backlog drained right after sign-in must
// not turn the next live message into "+queued"). It reports false when
// the wait would be longer.
func (l *Line) pace(ctx context.Context) bool {
	in := l.inbound()
	if in == nil {
		return true
	}
	deadline := time.Now().Add(inboundWait)
	for {
		now := time.Now()
		tokens := in.lim.TokensAt(now)
		if tokens >= in.keep+1 && in.lim.AllowN(now, 1) {
			return true
		}
		wait := time.Duration((in.keep + 1 - tokens) / float64(in.lim.Limit()) * float64(time.Second))
		wait = max(wait, time.Millisecond)
		if now.Add(wait).After(deadline) {
			return false
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return false
		case <-t.C:
		}
	}
}
