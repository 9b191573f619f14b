package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/msprelay/msprelay/principal"
	"github.com/msprelay/msprelay/sessionclient"
	"github.com/msprelay/msprelay/sessionproto"
)

// Reconnection bounds (issue 20, "Clients that stay"): the first retry
// comes after about minBackoff, each next one waits twice as long, up to
// maxBackoff. Each wait is jittered (a uniform fraction in [1/2, 1] of the
// nominal delay) so that the listeners of a restarted node do not all come
// back in the same instant.
const (
	minBackoff = 200 * time.Millisecond
	maxBackoff = 10 * time.Second
)

// backoff is the bounded, jittered, doubling delay between reconnection
// attempts. It belongs to one goroutine.
type backoff struct {
	min, max time.Duration
	cur      time.Duration // nominal delay of the next wait; 0 means min
}

// next returns the delay to wait now and doubles the nominal delay.
func (b *backoff) next() time.Duration {
	if b.cur < b.min {
		b.cur = b.min
	}
	d := b.cur
	b.cur = min(2*b.cur, b.max)
	half := d / 2
	return half + rand.N(half+1)
}

// reset starts over at min, after a session has been established.
func (b *backoff) reset() { b.cur = 0 }

// keeper keeps one signed-in session to a node: it signs in the first time
// and, when the session ends for a reason that a retry can mend (the node
// restarted, the network went away, the node shut down), signs in again
// with backoff and calls rejoin so that the caller can watch its users and
// rejoin its rooms again. It belongs to the command's goroutine.
type keeper struct {
	sf     *sessionFlags
	term   string
	state  principal.State
	opts   []sessionclient.SignInOption
	e      env
	json   bool                                                                          // say so on stdout as JSON lines too
	rejoin func(context.Context, *sessionclient.Client) error                            // after every sign-in after the first; may be nil
	jsonln func(v any) error                                                             // writes a JSON line to stdout (when json)
	dial   func(context.Context) (*sessionclient.Client, *sessionclient.SignedIn, error) // sf.connect, unless a test sets it
	bo     backoff
}

func newKeeper(sf *sessionFlags, term string, state principal.State, e env, opts ...sessionclient.SignInOption) *keeper {
	k := &keeper{sf: sf, term: term, state: state, opts: opts, e: e, bo: backoff{min: minBackoff, max: maxBackoff}}
	k.dial = func(ctx context.Context) (*sessionclient.Client, *sessionclient.SignedIn, error) {
		return k.sf.connect(ctx, k.term, k.state, k.opts...)
	}
	return k
}

// connectionEvent is the JSON line `msp listen --json` and `msp chat
// --json` print when the connection to the node is lost or back.
type connectionEvent struct {
	Type  string `json:"type"`  // "connection"
	Event string `json:"event"` // "lost" or "reconnected"
	Node  string `json:"node,omitempty"`
	Error string `json:"error,omitempty"` // why it was lost, for people
	Code  int    `json:"code,omitempty"`  // the session protocol's numeric code, when there was one
}

// retryable reports whether a session that ended with err is worth signing
// in again: not when the user is refused (authentication, a reserved
// terminal) nor when another client took this terminal (OUT OTH), which
// would make two clients take it from each other forever.
func retryable(err error) bool {
	switch {
	case errors.Is(err, sessionclient.ErrKicked), errors.Is(err, sessionclient.ErrSignedOut), errors.Is(err, sessionclient.ErrClientClosed),
		errors.Is(err, sessionproto.ErrAuthFailed),
		sessionproto.IsCode(err, sessionproto.CodeAuthFailed), sessionproto.IsCode(err, sessionproto.CodeTermReserved),
		sessionproto.IsCode(err, sessionproto.CodeBadUser), sessionproto.IsCode(err, sessionproto.CodeBadTerm),
		sessionproto.IsCode(err, sessionproto.CodeBadVersion):
		return false
	}
	return true
}

// lost says, once, that the session ended with cause and that msp is
// reconnecting.
func (k *keeper) lost(cause error) {
	fmt.Fprintf(k.e.stderr, "msp: lost connection to node (%s); reconnecting…\n", safeUTF8(peopleError(cause)))
	if k.json && k.jsonln != nil {
		ev := connectionEvent{Type: "connection", Event: "lost", Error: peopleError(cause)}
		var se *sessionproto.Error
		if errors.As(cause, &se) {
			ev.Code = se.Code
		}
		_ = k.jsonln(ev)
	}
}

// reconnect signs in again, waiting between attempts with backoff, until it
// succeeds (it then says "reconnected"), ctx ends, or the node refuses the
// user for good. The rejoin hook runs on the new session before it is
// returned; a failing rejoin counts as a failed attempt.
func (k *keeper) reconnect(ctx context.Context) (*sessionclient.Client, *sessionclient.SignedIn, error) {
	for {
		t := time.NewTimer(k.bo.next())
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, nil, ctx.Err()
		case <-t.C:
		}
		c, si, err := k.dial(ctx)
		if err == nil && k.rejoin != nil {
			if err = k.rejoin(ctx, c); err != nil {
				c.Close()
			}
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil, nil, ctx.Err()
			}
			if !retryable(err) {
				return nil, nil, err
			}
			continue
		}
		k.bo.reset()
		fmt.Fprintf(k.e.stderr, "msp: reconnected to %s as %s at %s\n", safeUTF8(si.Node), show(si.User), show(si.Term))
		if k.json && k.jsonln != nil {
			_ = k.jsonln(connectionEvent{Type: "connection", Event: "reconnected", Node: si.Node})
		}
		return c, si, nil
	}
}
