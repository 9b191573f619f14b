package switchboard

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/msprelay/msprelay/principal"
	"github.com/nats-io/nats.go"
)

// Batching of deliver requests to one node (docs/FEDERATION.md, "Batching").
//
// Each destination node has a peer that normally keeps at most maxInflight
// requests in flight. A delivery that finds a free slot is sent at once,
// alone, by its own goroutine: no added latency while the link is idle.
// When every slot is busy it waits in the peer's queue (FIFO, at most
// maxQueue); when a request in flight is answered, its sender hands the
// slot to the first waiting caller together with up to maxBatch queued
// deliveries, and that caller sends them as one request. The batcher has
// no goroutine of its own: the callers carry the requests.
//
// A reply waits for the slowest delivery in its request, which may be a
// client taking up to the ack timeout to acknowledge. So that such slow
// requests do not hold the link, a delivery arriving when nothing has been
// sent for staleAfter is sent at once, past maxInflight (up to
// maxInflightHard), taking the queue with it, ahead of itself.
//
// maxInflight 8 rather than 2: in mspbench's pipelined cross-node load
// (16 messages in flight) it raised the cross/local rate from 0.19-0.21x
// to 0.23-0.26x over three paired runs; 16 and 256 were no better.
const (
	maxInflight     = 8
	maxInflightHard = 256
	staleAfter      = 5 * time.Millisecond
	maxQueue        = 1024
	// maxPeers bounds the peer table; idle peers are dropped past it.
	maxPeers = 1024
)

// call is one forward waiting for its results. Its fields are written by
// the goroutine that sends its batch before done is signalled, and read
// by the caller after.
type call struct {
	ctx      context.Context // the caller's; a request of this call alone ends with it
	d        *Delivery
	ord      Orderer // told once the request carrying d is published; nil for none
	targets  []principal.Entry
	deadline time.Time
	res      []Result
	// batch is set (before done) when the caller must send it: the peer's
	// slot has been handed to it.
	batch []*call
	done  chan struct{} // one signal: results ready, or batch to send
}

// peer is the sending side towards one node.
type peer struct {
	node, subject string

	// mu guards inflight, lastSend and queue.
	mu       sync.Mutex
	inflight int
	lastSend time.Time // when the latest request was sent
	queue    []*call
}

func (f *federation) peer(node string) *peer {
	f.peersMu.Lock()
	defer f.peersMu.Unlock()
	if p := f.peers[node]; p != nil {
		return p
	}
	if len(f.peers) >= maxPeers {
		for n, p := range f.peers {
			p.mu.Lock()
			idle := p.inflight == 0 && len(p.queue) == 0
			p.mu.Unlock()
			if idle {
				delete(f.peers, n)
			}
		}
	}
	p := &peer{node: node, subject: DeliverSubject(node, f.sb.cfg.Node)}
	if len(f.peers) < maxPeers {
		f.peers[node] = p
	}
	return p
}

// failAll gives every target of targets a Failed result with err.
func failAll(node string, targets []principal.Entry, err error) []Result {
	out := make([]Result, len(targets))
	for i, e := range targets {
		out[i] = Result{User: e.User, Node: node, Term: e.Term, Status: Failed, Err: err}
	}
	return out
}

// forward asks node to deliver d to targets and returns one Result per
// target. Faults (no responders, timeout, a bad reply) become Failed
// results; the wait is bounded by the forward timeout (or ctx's deadline
// when sooner).
//
// ord, when not nil, is told once the request carrying d is published:
// from then on d holds its place in its recipient's order (the receiving
// node serves one node's deliveries for a recipient in arrival order).
func (f *federation) forward(ctx context.Context, node string, d *Delivery, targets []principal.Entry, ord Orderer) []Result {
	if err := principal.ValidNode(node); err != nil {
		return failAll(node, targets, ErrBadAddress)
	}
	if !f.nc.IsConnected() {
		// The request would wait out the timeout in the reconnect buffer.
		return failAll(node, targets, fmt.Errorf("%w: not connected to NATS", ErrNodeDown))
	}
	deadline := time.Now().Add(f.timeout)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	p := f.peer(node)
	if len(targets) > maxTargetsPerRequest {
		return failAll(node, targets, fmt.Errorf("%w: %d targets", ErrBadAddress, len(targets)))
	}
	p.mu.Lock()
	c := &call{ctx: ctx, d: d, targets: targets, deadline: deadline, ord: ord}
	now := time.Now()
	switch {
	case p.inflight < maxInflight && len(p.queue) == 0:
		p.inflight++
		p.lastSend = now
		p.mu.Unlock()
		f.send(p, []*call{c}, c)
		return c.res
	case p.inflight < maxInflightHard && now.Sub(p.lastSend) >= f.staleAfter:
		// The requests in flight are slow; send what waits, and this one.
		batch := p.take(now, c)
		p.inflight++
		p.lastSend = now
		p.mu.Unlock()
		f.send(p, batch, c)
		return c.res
	case len(p.queue) >= maxQueue:
		p.mu.Unlock()
		return failAll(node, targets, fmt.Errorf("%w: %d deliveries waiting for it", ErrNodeDown, maxQueue))
	}
	c.done = make(chan struct{}, 1)
	p.queue = append(p.queue, c)
	p.mu.Unlock()
	select {
	case <-c.done:
	case <-ctx.Done():
		p.mu.Lock()
		for i, q := range p.queue {
			if q == c {
				p.queue = append(p.queue[:i], p.queue[i+1:]...)
				p.mu.Unlock()
				return failAll(node, targets, fmt.Errorf("%w: %w", ErrNodeDown, ctx.Err()))
			}
		}
		p.mu.Unlock()
		// Already taken into a batch: its answer comes within the batch's
		// deadline, which is no later than ours; if the slot was handed to
		// us, we must send the batch.
		<-c.done
	}
	if c.batch != nil {
		f.send(p, c.batch, c)
	}
	return c.res
}

// take removes from the head of p's queue what the next request carries:
// at most maxBatch deliveries (with last, when not nil, at the end) of at
// most maxTargetsPerRequest targets together. Deliveries past their
// deadline are answered ErrTimeout on the way. p.mu must be held.
func (p *peer) take(now time.Time, last *call) []*call {
	var next []*call
	n := 0
	if last != nil {
		n = len(last.targets)
	}
	for len(p.queue) > 0 && len(next) < maxBatch-1 {
		c := p.queue[0]
		if !c.deadline.After(now) {
			p.queue = p.queue[1:]
			c.res = failAll(p.node, c.targets, ErrTimeout)
			c.done <- struct{}{} // buffered, and signalled once
			continue
		}
		if n+len(c.targets) > maxTargetsPerRequest {
			break
		}
		n += len(c.targets)
		next = append(next, c)
		p.queue = p.queue[1:]
	}
	if len(p.queue) == 0 {
		p.queue = nil // let the backing array go
	}
	if last != nil {
		next = append(next, last)
	}
	return next
}

// send sends batch (holding one of p's slots) on behalf of leader, one of
// its calls; fills every call's results, signals the others, and then
// hands the slot on to the queue or frees it.
func (f *federation) send(p *peer, batch []*call, leader *call) {
	f.request(p, batch)
	for _, c := range batch {
		if c != leader {
			c.done <- struct{}{}
		}
	}
	now := time.Now()
	p.mu.Lock()
	next := p.take(now, nil)
	if len(next) == 0 {
		p.inflight--
	} else {
		p.lastSend = now
	}
	p.mu.Unlock()
	if len(next) > 0 {
		next[0].batch = next
		next[0].done <- struct{}{}
	}
}

// request sends one request frame for batch and fills each call's res.
// The request lives until the earliest deadline of the batch.
func (f *federation) request(p *peer, batch []*call) {
	fail := func(err error) {
		for _, c := range batch {
			c.res = failAll(p.node, c.targets, err)
		}
	}
	deadline := batch[0].deadline
	for _, c := range batch[1:] {
		if c.deadline.Before(deadline) {
			deadline = c.deadline
		}
	}
	wait := time.Until(deadline)
	if wait <= 0 {
		fail(ErrTimeout)
		return
	}
	buf := f.bufs.get()
	*buf = appendRequest(*buf, batch, time.Now())
	msg, err := f.roundTrip(p.subject, *buf, batch, wait)
	f.bufs.put(buf)
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		fail(ErrNodeDown)
		return
	case errors.Is(err, nats.ErrTimeout) || errors.Is(err, context.DeadlineExceeded):
		fail(ErrTimeout)
		return
	case err != nil:
		fail(fmt.Errorf("%w: %w", ErrNodeDown, err))
		return
	}
	if len(msg.Data) > 0 && msg.Data[0] == '{' {
		// A node from before the binary format: it could not read the
		// request and delivered nothing.
		f.refusals.Hit("node answers in the JSON federation format; it must be upgraded",
			"peer", p.node, "peer_version", "json", "version", wireVersion)
		fail(fmt.Errorf("%w: node %s speaks the JSON format, this node version %d", ErrWireVersion, p.node, wireVersion))
		return
	}
	r := wireReader{b: msg.Data}
	node, errText, n := replyHeader(&r)
	switch {
	case errors.Is(r.err, ErrWireVersion):
		f.refusals.Hit("node answers in another federation version; every node must run the same",
			"peer", p.node, "peer_version", int(msg.Data[1]), "version", wireVersion)
		fail(fmt.Errorf("bad reply from %s: %w", p.node, r.err))
		return
	case r.err != nil:
		fail(fmt.Errorf("bad reply from %s: %w", p.node, r.err))
		return
	case node != p.node:
		// Only node's own user can read this request and so learn where
		// to answer; a reply naming another node is not its answer.
		f.sb.log.Warn("ignoring deliver reply from the wrong node", "asked", p.node, "replied", node)
		fail(fmt.Errorf("bad reply from %s: answered by %q", p.node, node))
		return
	case errText != "":
		fail(fmt.Errorf("bad reply from %s: %s", p.node, errText))
		return
	case n != len(batch):
		fail(fmt.Errorf("bad reply from %s: %d results for %d deliveries", p.node, n, len(batch)))
		return
	}
	for _, c := range batch {
		c.res = make([]Result, len(c.targets))
		decodeResults(&r, p.node, c.targets, c.res)
		if r.err != nil {
			fail(fmt.Errorf("bad reply from %s: %w", p.node, r.err))
			return
		}
	}
}

// roundTrip sends one request and waits for its reply until deadline
// (wait from now). A request carrying one caller's delivery also ends
// when that caller's context does, as a plain request would; a batch
// serves several callers and lasts until its deadline. Once the request
// is published, every call in it with an Orderer is told (replyMux).
func (f *federation) roundTrip(subject string, body []byte, batch []*call, wait time.Duration) (*nats.Msg, error) {
	var ctx context.Context
	if len(batch) == 1 && batch[0].ctx != nil && batch[0].ctx.Done() != nil {
		ctx = batch[0].ctx
	}
	return f.replies.request(f.nc, ctx, subject, body, wait, func() {
		for _, c := range batch {
			if c.ord != nil {
				c.ord.InOrder()
			}
		}
	})
}
