package msp

import (
	"sync"
	"sync/atomic"
	"time"
)

// pipeline lets a connection's reader go on reading while earlier messages
// are handled (RFC 1312: "multiple messages can be sent over the same
// channel"). Each message gets a slot, run by a worker; slots are chained in
// arrival order so that each reply is written only after the one before it,
// and messages for the same recipient are chained so that each handler call
// starts only after the one before it returned.
//
// Ownership: the reader (conn.serve) owns the pipeline's fields, starts the
// workers, waits for dispatched slots (drain) before it writes anything else,
// and ends the workers (stop) before it closes the connection. A slot's run
// touches only its own slot, the previous slot's written signal, the
// channels it was given, and, under mu, the replies due: it queues its reply
// after the previous slot queued its own, and the one slot writing at a time
// writes every reply queued so far in one write, so writes never overlap
// and keep arrival order. A slot counts as finished (slots, sem, busy) only
// once its reply is on the wire.
//
// Slots run on the connection's workerPool (at most MaxPipeline workers).
// Workers take slots in arrival order and a slot only ever waits for earlier
// slots, which were taken first, so the pipeline always moves. The reader
// stops the pool when the connection ends (stop).
type pipeline struct {
	sem   chan struct{}            // a token per slot whose reply is not yet written
	slots sync.WaitGroup           // slots dispatched and not yet finished
	pool  *workerPool              // runs the slots, in arrival order
	last  *slot                    // the latest slot, nil before the first
	keys  map[string]chan struct{} // folded recipient → its latest slot's handled channel

	// Replies are written by whichever slot comes first; replies that
	// become due meanwhile wait in out and go in its next write, so
	// pipelined replies that finish together cost one write.
	mu      sync.Mutex // guards the fields below
	out     []byte     // replies due, in order, not yet written
	due     []*slot    // their slots, finished once out is written
	writing bool       // a slot is writing out; it alone touches c.nc
	spare   []byte     // the writer's previous buffer, to swap for out
	spareSl []*slot
}

// slot is one pipelined message with its writer and its reply buffer, in
// one allocation that is never reused (a handler may keep the message).
type slot struct {
	c        *conn
	p        *pipeline
	msg      bool // m is to be handled; false for a refusal the reader already decided
	m        Message
	w        responseWriter
	reply    []byte         // what to write, in buf; nil for nothing; set by the handler's Ack or Nack
	buf      *replyBuf      // lent by the server's pool until the reply is written
	after    chan struct{}  // the previous same-recipient handler returned; nil if none
	handled  chan struct{}  // closed when this handler returned
	prev     *slot          // the slot whose reply comes before this one's; nil once written, or if none
	written  sync.WaitGroup // done when this reply is in order in p.out (an embedded signal costs no allocation)
	panicked bool           // its handler panicked
	ordered  atomic.Bool    // handled is closed (by InOrder or on return)
}

// inOrder lets the next handler call for the same recipient start: the
// handler said its message holds its place (InOrder), or it returned.
func (sl *slot) inOrder() {
	if sl.ordered.CompareAndSwap(false, true) {
		close(sl.handled)
	}
}

// refusal makes a slot that only writes "-text\0" in its turn.
func (c *conn) refusal(text string) *slot {
	sl := &slot{buf: c.s.buffer()}
	sl.reply = appendReply(sl.buf[:0], false, text, MaxLen)
	return sl
}

// dispatch hands sl (a message, or a refusal) to the connection's workers,
// first waiting while MaxPipeline slots are unwritten.
func (c *conn) dispatch(sl *slot) {
	p := c.pipe
	if p == nil {
		n := intOr(c.s.MaxPipeline, DefaultMaxPipeline)
		p = &pipeline{
			sem:  make(chan struct{}, n),
			pool: newWorkerPool(n),
			keys: make(map[string]chan struct{}),
		}
		c.pipe = p
	}
	p.sem <- struct{}{}
	sl.c, sl.p, sl.prev = c, p, p.last
	sl.written.Add(1)
	p.last = sl
	if sl.msg {
		// The whole recipient, whatever the terminal: an empty RecipTerm
		// or "*" may reach the same terminal as a named one.
		key := Fold(sl.m.Recipient)
		sl.after = p.keys[key]
		sl.handled = make(chan struct{})
		p.keys[key] = sl.handled
		if len(p.keys) > 2*cap(p.sem) {
			p.prune()
		}
	}
	c.s.mu.Lock()
	c.busy++
	c.s.mu.Unlock()
	p.slots.Add(1)
	p.pool.run(sl)
}

// stop ends the workers; the reader calls it last, after drain.
func (c *conn) stop() {
	if c.pipe != nil {
		c.pipe.pool.stop()
	}
}

// prune forgets recipients whose latest handler has returned; at most
// cap(p.sem) have not, so the map stays small.
func (p *pipeline) prune() {
	for k, ch := range p.keys {
		select {
		case <-ch:
			delete(p.keys, k)
		default:
		}
	}
}

// run handles one slot on a worker: the handler call once the same
// recipient's previous call returned, then the reply once the previous
// reply is written.
func (sl *slot) run() {
	c, p := sl.c, sl.p
	if sl.msg {
		if sl.after != nil {
			<-sl.after
		}
		// The reply waits for its turn; Ack and Nack only keep it.
		c.initWriter(&sl.w, &sl.m, sl)
		sl.w.order = sl
		sl.panicked = c.s.handle(&sl.w, &sl.m)
		sl.w.finish(notHandledText)
		sl.inOrder()
	}
	if sl.prev != nil {
		sl.prev.written.Wait()
		sl.prev = nil // so that no slot keeps a chain of earlier ones alive
	}
	p.mu.Lock()
	if sl.reply != nil {
		p.out = append(p.out, sl.reply...)
		c.s.release(sl.buf)
		sl.reply, sl.buf = nil, nil // a kept message keeps its slot, not the buffer
	}
	p.due = append(p.due, sl)
	sl.written.Done() // the next reply may queue behind this one
	if p.writing {
		p.mu.Unlock() // the slot writing now takes this reply in its next write
		return
	}
	p.writing = true
	for len(p.due) > 0 {
		out, due := p.out, p.due
		p.out, p.due = p.spare[:0], p.spareSl[:0]
		p.mu.Unlock()
		if len(out) > 0 {
			c.write(out)
		}
		for i, d := range due {
			due[i] = nil
			<-p.sem
			c.finished(d.panicked)
			p.slots.Done()
		}
		p.mu.Lock()
		p.spare, p.spareSl = out[:0], due[:0]
	}
	p.writing = false
	p.mu.Unlock()
}

// sendReply keeps a pipelined handler call's reply until its turn; sl is
// that call's [replySink].
func (sl *slot) sendReply(ack bool, text string, limit int) error {
	sl.buf = sl.c.s.buffer()
	sl.reply = appendReply(sl.buf[:0], ack, text, limit)
	return nil
}

// finished records that a slot's reply is written. After a handler panic
// the connection reads no more: its '-' reply and the earlier ones are
// written, and so are the replies of messages read before the panic (they
// may have been delivered), then it closes. A reader waiting for a message
// is woken for that or for Shutdown; otherwise the connection becomes idle
// when nothing is left in flight.
func (c *conn) finished(panicked bool) {
	if panicked {
		c.halt.Store(true)
	}
	s := c.s
	s.mu.Lock()
	defer s.mu.Unlock()
	c.busy--
	if !c.waiting {
		return
	}
	switch {
	case s.shutting || c.halt.Load():
		c.nc.SetReadDeadline(time.Now())
	case c.busy == 0:
		c.makeIdle()
	}
}

// drain waits until every pipelined message is handled and its reply
// written, so the reader may write or close.
func (c *conn) drain() {
	if c.pipe != nil {
		c.pipe.slots.Wait()
	}
}
