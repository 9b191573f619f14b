package switchboard

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// replyMux is the ingress side's one reply subscription for deliver
// requests, as nats.go keeps one for Request: each request publishes with
// a reply subject of its own under the mux's prefix and waits for the
// message that arrives there. The switchboard publishes itself, rather
// than call Request, to learn when a request is on the connection: from
// then on the deliveries it carries hold their place in their
// recipients' order (NATS keeps one connection's messages in order, and
// the receiving node serves them in arrival order: federation_order.go),
// so the next message for the same recipient need not wait for this one's
// answer (issue 21).
//
// Ownership: the federation owns the mux; the subscription is made on
// first use and ended by close. mu guards the fields below it.
type replyMux struct {
	mu      sync.Mutex
	prefix  string // "<inbox>." once subscribed
	sub     *nats.Subscription
	next    uint64
	waiting map[string]chan *nats.Msg // reply token -> its waiter (cap 1)
	closed  bool
}

// noRespondersStatus is the status NATS gives, in a header-only message
// to the reply subject, when nobody subscribes to the request's subject.
const noRespondersStatus = "503"

// open subscribes the mux on first use and registers a waiter; it
// returns the reply subject and the channel the reply arrives on.
func (r *replyMux) open(nc *nats.Conn) (string, string, chan *nats.Msg, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return "", "", nil, nats.ErrConnectionClosed
	}
	if r.sub == nil {
		prefix := nc.NewInbox() + "."
		sub, err := nc.Subscribe(prefix+"*", r.deliver)
		if err != nil {
			return "", "", nil, fmt.Errorf("switchboard: subscribe for replies: %w", err)
		}
		r.prefix, r.sub = prefix, sub
		r.waiting = map[string]chan *nats.Msg{}
	}
	r.next++
	token := strconv.FormatUint(r.next, 36)
	ch := make(chan *nats.Msg, 1)
	r.waiting[token] = ch
	return r.prefix + token, token, ch, nil
}

// deliver hands a reply to its waiter; one nobody waits for (late, or
// answered twice) is dropped. It runs on the subscription's goroutine.
func (r *replyMux) deliver(m *nats.Msg) {
	r.mu.Lock()
	token, ok := strings.CutPrefix(m.Subject, r.prefix)
	ch := r.waiting[token]
	if !ok {
		ch = nil
	}
	delete(r.waiting, token)
	r.mu.Unlock()
	if ch != nil {
		ch <- m
	}
}

// forget drops token's waiter.
func (r *replyMux) forget(token string) {
	r.mu.Lock()
	delete(r.waiting, token)
	r.mu.Unlock()
}

// close ends the subscription; later requests fail at once.
func (r *replyMux) close() {
	r.mu.Lock()
	sub := r.sub
	r.sub, r.closed, r.waiting = nil, true, nil
	r.mu.Unlock()
	if sub != nil {
		_ = sub.Unsubscribe()
	}
}

// request publishes body on subject and waits, at most wait (and while
// ctx, when not nil, lasts), for the reply; published runs right after the
// publish succeeded. The errors are those of nats.Conn.Request:
// nats.ErrNoResponders, nats.ErrTimeout, ctx's error, or the publish's.
func (r *replyMux) request(nc *nats.Conn, ctx context.Context, subject string, body []byte, wait time.Duration, published func()) (*nats.Msg, error) {
	reply, token, ch, err := r.open(nc)
	if err != nil {
		return nil, err
	}
	if err := nc.PublishRequest(subject, reply, body); err != nil {
		r.forget(token)
		return nil, err
	}
	published()
	t := time.NewTimer(wait)
	defer t.Stop()
	var done <-chan struct{}
	if ctx != nil {
		done = ctx.Done()
	}
	select {
	case m := <-ch:
		if len(m.Data) == 0 && m.Header.Get("Status") == noRespondersStatus {
			return nil, nats.ErrNoResponders
		}
		return m, nil
	case <-t.C:
		r.forget(token)
		return nil, nats.ErrTimeout
	case <-done:
		r.forget(token)
		return nil, ctx.Err()
	}
}
