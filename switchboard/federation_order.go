package switchboard

import (
	"strings"
	"sync"

	"github.com/msprelay/msprelay/principal"
)

// This file keeps, on the receiving node of cross-node deliveries, the
// order in which one node's deliveries for one recipient arrived (issue
// 21: "per-recipient order is kept by the queue, not by waiting"). A
// delivery waits only until the one before it for the same recipient from
// the same node holds its place in her terminal's queue (or is done), not
// for its acknowledgement; the acknowledgements are then awaited together.
//
// Requests are read in arrival order by the subscription's goroutine
// (dispatch) but served on goroutines of their own, so each request gets
// a ticket there (arrival): it registers its deliveries' places once the
// request before it from the same node has registered its own, which is
// quick (decoding, no waiting on clients), and only then is released.

// placement is one delivery's place in its recipient's order: placed is
// closed once it holds its place (InOrder) or is done, whichever comes
// first. It implements Orderer.
type placement struct {
	once   sync.Once
	placed chan struct{}
}

// InOrder implements Orderer.
func (p *placement) InOrder() { p.once.Do(func() { close(p.placed) }) }

// orderKey names one recipient's order of deliveries from one node.
type orderKey struct{ src, user string }

// arrivals is the receiving side's bookkeeping; the federation owns it.
type arrivals struct {
	// mu guards the fields below.
	mu sync.Mutex
	// registered holds, per sending node, the channel closed once the
	// latest request from it has registered its deliveries' places; an
	// entry is removed by the request that made it, once registered.
	registered map[string]chan struct{}
	// latest holds, per recipient and sending node, the place of the
	// latest delivery registered; an entry is removed once that delivery
	// is placed, so the table holds only deliveries in flight.
	latest map[orderKey]*placement
}

// ticket is what dispatch gives one request, in arrival order.
type ticket struct {
	src  string        // the sending node, "" when the subject names none
	prev chan struct{} // closed once the request before it registered; nil if none
	mine chan struct{} // closed once this one registered
}

// arrive hands out the next ticket of the request on subject. The
// subscription's goroutine calls it, in arrival order.
func (a *arrivals) arrive(f *federation, subject string) ticket {
	src, _, _ := strings.Cut(strings.TrimPrefix(subject, "msp.node."+f.sb.cfg.Node+".deliver."), ".")
	t := ticket{src: src, mine: make(chan struct{})}
	a.mu.Lock()
	if a.registered == nil {
		a.registered = map[string]chan struct{}{}
	}
	t.prev = a.registered[src]
	a.registered[src] = t.mine
	a.mu.Unlock()
	return t
}

// register gives each single-target delivery of items its place behind
// the previous one for the same recipient from t's node, once the request
// before t registered, and releases the next request. It returns, per
// item, the place to wait for before delivering (nil: none) and the
// item's own place (nil for items that keep no order: refused ones and
// those with several targets). It must be called exactly once per ticket,
// refused requests too (items nil).
func (a *arrivals) register(t ticket, items []wireItem) (wait, own []*placement) {
	if t.prev != nil {
		<-t.prev
	}
	if len(items) > 0 {
		wait, own = make([]*placement, len(items)), make([]*placement, len(items))
	}
	a.mu.Lock()
	for i := range items {
		it := &items[i]
		if it.err != nil || len(it.targets) != 1 {
			continue
		}
		k := orderKey{src: t.src, user: principal.CanonicalUser(it.targets[0].user)}
		p := &placement{placed: make(chan struct{})}
		if a.latest == nil {
			a.latest = map[orderKey]*placement{}
		}
		wait[i], own[i] = a.latest[k], p
		a.latest[k] = p
	}
	if a.registered[t.src] == t.mine {
		delete(a.registered, t.src)
	}
	a.mu.Unlock()
	close(t.mine)
	return wait, own
}

// placed marks p placed and forgets it when it is still the latest of its
// recipient, so the table keeps only deliveries in flight.
func (a *arrivals) placed(t ticket, user string, p *placement) {
	p.InOrder()
	k := orderKey{src: t.src, user: principal.CanonicalUser(user)}
	a.mu.Lock()
	if a.latest[k] == p {
		delete(a.latest, k)
	}
	a.mu.Unlock()
}
