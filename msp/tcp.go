package msp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"time"
)

// busyReply is sent to a connection refused at MaxConns.
const busyReply = "-server busy\x00"

// notHandledText is the explanation of the Nack the server makes for a
// handler that returned without replying.
const notHandledText = "message not handled"

// conn is one admitted TCP connection. Its goroutine (conn.serve, "the
// reader") owns nc and closes it; Shutdown, Close and eviction may close nc
// early, under s.mu, to end that goroutine. Pipelined messages are handled
// by goroutines the reader starts and waits for before it returns; they
// write replies to nc one at a time, in arrival order (see pipeline.go).
type conn struct {
	s    *Server
	nc   net.Conn
	idle connLinks // in s.idle while idle (see setWaiting); guarded by s.mu

	remote string // nc.RemoteAddr() as a string, made once (handlers ask per message); read only

	src    Source // the source this connection is counted against
	hasSrc bool   // false for non-IP addresses, which no per-source limit applies to
	peer   Peer   // who owns the sending socket, asked once at accept; read only

	// Guarded by s.mu: c is in s.partial while a message is under way
	// (first octet read, not yet complete), since started.
	partial connLinks
	started time.Time

	// Guarded by s.mu.
	waiting bool // the reader waits for a message's first octet
	busy    int  // pipelined messages whose replies are not yet written

	halt atomic.Bool // a pipelined handler panicked: read no more messages
	pipe *pipeline   // nil until a message is pipelined; owned by the reader

	buf     [MaxLen]byte // octets read and not yet consumed; a message never exceeds it
	n       int          // valid octets in buf
	scanned int          // octets of buf already searched for NULs
	nuls    int          // NULs found in buf[1:scanned]
}

// Serve accepts TCP connections on l and serves MSP on each until Shutdown or
// Close, then returns [ErrServerClosed]. It closes l when it returns.
func (s *Server) Serve(l net.Listener) error {
	s.init()
	defer l.Close()
	if s.Handler == nil {
		return errNoHandler
	}
	if !s.startServing(l, nil) {
		return ErrServerClosed
	}
	defer s.done()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, l)
		s.mu.Unlock()
	}()

	readers := s.newReaderPool()
	defer readers.stop()
	var delay time.Duration
	for {
		nc, err := l.Accept()
		if err != nil {
			if s.shuttingDown() {
				return ErrServerClosed
			}
			if temporary(err) && s.backoff(&delay) {
				s.logger().Warn("msp: accept", "err", err)
				continue
			}
			return fmt.Errorf("msp: accept: %w", err)
		}
		delay = 0
		if c := s.admitConn(nc); c != nil {
			readers.run(c)
		}
	}
}

// maxReaders is how many connection goroutines one Serve call keeps for
// later connections.
const maxReaders = 128

// readerPool runs connections' readers (conn.serve) on goroutines that
// go on to the next connection when theirs ends, at most max of them; past
// that a connection gets a goroutine of its own. A client sending one
// message per connection has its message handled inline, on the reader:
// a fresh goroutine grew its stack for the deep delivery path every time
// (stack copying was a few percent of the tcp1 path's CPU), and starting
// one cost an allocation.
//
// The Serve loop that owns the pool is the only caller of run and stop;
// idle counts readers waiting for a connection, as in workerPool (only
// readers add to it, only run takes from it). The goroutines count in
// s.wg, so Close waits for them; stop, when Serve returns, ends the idle
// ones, and the busy ones when their connection ends.
type readerPool struct {
	s     *Server
	conns chan *conn
	max   int
	n     int // readers started; owner only
	idle  atomic.Int32
}

func (s *Server) newReaderPool() *readerPool {
	return &readerPool{s: s, conns: make(chan *conn), max: maxReaders}
}

// run serves c on an idle reader, a new pooled one, or a goroutine of its
// own.
func (p *readerPool) run(c *conn) {
	switch {
	case p.idle.Load() > 0:
		p.idle.Add(-1)
		p.conns <- c
	case p.n < p.max:
		p.n++
		p.s.wg.Add(1)
		go p.loop(c)
	default:
		go c.serve()
	}
}

func (p *readerPool) loop(c *conn) {
	defer p.s.wg.Done()
	for {
		c.serve()
		p.idle.Add(1)
		var ok bool
		if c, ok = <-p.conns; !ok {
			return
		}
	}
}

// stop ends the readers once they are idle.
func (p *readerPool) stop() { close(p.conns) }

// admitConn registers nc as a connection to serve (the caller must run
// c.serve), evicting the longest-idle connection at MaxConns. When every
// connection is busy it refuses nc with "server busy", closes it and
// returns nil.
func (s *Server) admitConn(nc net.Conn) *conn {
	s.init()
	c := s.newConn()
	c.s, c.nc = s, nc
	// A connection's socket keeps its owner for life, so the owner is
	// asked once, here, and the answer serves every message.
	c.peer, c.src, c.hasSrc = s.identify("tcp", nc.LocalAddr(), nc.RemoteAddr())
	if c.hasSrc && !s.src.addConn(c.src, s.maxConnsPerIP()) {
		s.stats.refusedPerIP.Add(1)
		s.limits.Hit("msp: limit reached: connections per source", "remote", nc.RemoteAddr().String(), "source", c.src.String())
		refuseConn(nc, perIPReply)
		s.freeConn(c)
		return nil
	}
	s.mu.Lock()
	if s.shutting {
		s.mu.Unlock()
		c.dropSource()
		nc.Close()
		s.freeConn(c)
		return nil
	}
	if len(s.conns) >= intOr(s.MaxConns, DefaultMaxConns) {
		victim := s.evictableLocked()
		if victim == nil {
			s.mu.Unlock()
			c.dropSource()
			s.stats.refusedBusy.Add(1)
			s.limits.Hit("msp: limit reached: connections (all busy)", "remote", nc.RemoteAddr().String())
			refuseConn(nc, busyReply)
			s.freeConn(c)
			return nil
		}
		delete(s.conns, victim)
		victim.nc.Close()
	}
	s.conns[c] = struct{}{}
	s.idle.pushBack(c)
	s.wg.Add(1)
	s.running.Add(1)
	s.mu.Unlock()
	c.remote = AddrString(nc.RemoteAddr())
	return c
}

// newConn takes a conn from the server's pool: a conn carries its
// 512-octet read buffer, and a client sending one message per connection
// would otherwise cost one per message.
func (s *Server) newConn() *conn {
	if c, ok := s.connPool.Get().(*conn); ok {
		return c
	}
	return new(conn)
}

// freeConn zeroes c and gives it back to the pool. The caller is c's
// reader, last: c is off every list of the server, its pipeline's workers
// have ended, and nothing else holds it (a handler that kept a message
// holds its slot or request, whose writer has copied what it needs from c
// and, being finished, never calls back into it).
func (s *Server) freeConn(c *conn) {
	*c = conn{}
	s.connPool.Put(c)
}

// evictableLocked picks the connection to close to admit a new one at
// MaxConns: the one idle longest, else the one whose message has been under
// way longest if that is longer than StallGrace (a slow sender or a
// slowloris: either way it has had its chance), else none. It takes the
// victim off those lists; the caller holds s.mu.
func (s *Server) evictableLocked() *conn {
	if victim := s.idle.front(); victim != nil {
		s.idle.remove(victim)
		s.stats.evictedIdle.Add(1)
		s.log.Debug("msp: evicted idle connection", "remote", victim.nc.RemoteAddr().String())
		return victim
	}
	if s.StallGrace < 0 {
		return nil
	}
	grace := durationOr(s.StallGrace, DefaultStallGrace)
	// Earliest start first; a connection with replies still owed is
	// skipped, so that no delivered message loses its '+'.
	var victim *conn
	for c := s.partial.front(); c != nil && victim == nil; c = c.partial.next {
		if time.Since(c.started) < grace {
			return nil
		}
		if c.busy == 0 {
			victim = c
		}
	}
	if victim == nil {
		return nil
	}
	s.partial.remove(victim)
	s.stats.evictedStalled.Add(1)
	s.limits.Hit("msp: limit reached: stalled message evicted", "remote", victim.nc.RemoteAddr().String())
	return victim
}

// maxConnsPerIP is MaxConnsPerIP with its default; 0 means no cap.
func (s *Server) maxConnsPerIP() int {
	switch {
	case s.MaxConnsPerIP < 0:
		return 0
	case s.MaxConnsPerIP == 0:
		return DefaultMaxConnsPerIP
	}
	return s.MaxConnsPerIP
}

// refuseConn tells a connection we do not admit why, briefly, and closes it.
func refuseConn(nc net.Conn, reply string) {
	nc.SetWriteDeadline(time.Now().Add(time.Second))
	nc.Write([]byte(reply))
	nc.Close()
}

// dropSource uncounts c from its source; called once, when c ends or is
// not admitted.
func (c *conn) dropSource() {
	if c.hasSrc {
		c.s.src.dropConn(c.src)
	}
}

// errStopped ends reading when the server shuts down or a pipelined handler
// panicked.
var errStopped = errors.New("msp: connection stops reading")

// setWaiting records that the reader is about to wait for a message's first
// octet and sets the deadline for that wait: IdleTimeout when nothing is in
// flight (and c becomes idle, so evictable), none otherwise (finished makes
// c idle when the last reply is written). The deadline is set under s.mu so
// that Shutdown, which sets an immediate one on waiting readers, never has
// it overwritten. False means c should stop reading instead.
func (c *conn) setWaiting() bool {
	s := c.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.shutting || c.halt.Load() {
		return false
	}
	c.waiting = true
	if c.busy > 0 {
		c.nc.SetReadDeadline(time.Time{})
		return true
	}
	c.makeIdle()
	return true
}

// makeIdle starts c's idle time; the caller holds s.mu.
func (c *conn) makeIdle() {
	c.nc.SetReadDeadline(time.Now().Add(durationOr(c.s.IdleTimeout, DefaultIdleTimeout)))
	if !c.idle.in {
		c.s.idle.pushBack(c)
	}
}

// setActive marks c as having a message under way: no longer waiting or
// idle and, if the message is partial (not all there yet), stalled once it
// takes longer than StallGrace.
func (c *conn) setActive(partial bool) {
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	c.waiting = false
	c.s.idle.remove(c)
	if partial && !c.partial.in {
		c.started = time.Now()
		c.s.partial.pushBack(c)
	}
}

// setComplete records that c's message has fully arrived.
func (c *conn) setComplete() {
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	c.s.partial.remove(c)
}

// serve reads messages and replies until the client closes, a timeout, an
// undecodable message or shutdown; it waits for the handlers it started and
// closes nc.
func (c *conn) serve() {
	s := c.s
	defer s.done()
	defer func() {
		c.drain()
		c.stop()
		s.mu.Lock()
		s.idle.remove(c)
		s.partial.remove(c)
		delete(s.conns, c)
		s.mu.Unlock()
		c.nc.Close()
		c.dropSource()
		s.freeConn(c)
	}()
	log := s.logger()
	for {
		size, err := c.readMessage()
		if err != nil {
			c.drain()
			c.refuse(err)
			if log.Enabled(context.Background(), slog.LevelDebug) { // the arguments cost allocations, per connection
				log.Debug("msp: tcp connection ends", "remote", c.remote, "err", err)
			}
			return
		}
		if c.halt.Load() || !c.serveMessage(c.buf[:size]) {
			return
		}
		c.consume(size)
		// When the next message has begun arriving, finish it unless
		// shutting down; otherwise readMessage waits for one.
		if c.n > 0 && s.shuttingDown() {
			return
		}
	}
}

// refuse answers a framing error with "-reason\0" when the client may be
// waiting for a reply (anything but a revision 'A' message or a dead
// connection).
func (c *conn) refuse(err error) {
	if c.n == 0 || c.buf[0] == Version1 {
		return // checked first: errors.As costs an allocation
	}
	var ne net.Error
	if errors.As(err, &ne) || errors.Is(err, net.ErrClosed) {
		return
	}
	c.writeReply(false, reason(err), MaxLen)
}

// reason is err's text without the package prefix, as a reply explanation.
func reason(err error) string {
	return strings.TrimPrefix(err.Error(), "msp: ")
}

// write sends a reply within WriteTimeout.
func (c *conn) write(b []byte) error {
	c.nc.SetWriteDeadline(time.Now().Add(durationOr(c.s.WriteTimeout, DefaultWriteTimeout)))
	_, err := c.nc.Write(b)
	return err
}

// serveMessage validates one framed message and handles it, inline or
// pipelined, and reports whether the connection goes on.
func (c *conn) serveMessage(raw []byte) bool {
	s := c.s
	if !s.allowFrom(c.src, c.hasSrc, "tcp") {
		s.limitHit("tcp", c.src, netip.AddrPort{}, c.nc.RemoteAddr())
		if raw[0] == Version1 {
			// Revision 'A' owes no reply and ends the connection anyway.
			c.drain()
			return false
		}
		// Framing is intact, so the connection goes on; the sender is
		// told to slow down.
		if c.pipe != nil {
			c.dispatch(c.refusal(rateLimitedReply))
		} else {
			c.writeReply(false, rateLimitedReply, MaxLen)
		}
		return true
	}
	// Inline until the client shows it pipelines (another message's
	// octets already here), so a one-message client costs no goroutine.
	// Revision 'A' is always inline: it is a connection's last message.
	inline := raw[0] == Version1 || c.pipe == nil && (c.n == len(raw) || intOr(s.MaxPipeline, DefaultMaxPipeline) == 1)
	var (
		r  *request
		sl *slot
		m  *Message
	)
	if inline {
		r = new(request)
		m = &r.m
	} else {
		sl = &slot{msg: true}
		m = &sl.m
	}
	err := m.decode(raw)
	if err == nil {
		err = s.admit(m)
	}
	if err != nil {
		if log := s.logger(); log.Enabled(context.Background(), slog.LevelDebug) {
			log.Debug("msp: refused message", "network", "tcp", "remote", c.remote, "err", err)
		}
		// A policy refusal leaves the stream intact; anything else means
		// the client does not speak the protocol as we do.
		if errors.Is(err, ErrNoSender) {
			if c.pipe != nil {
				c.dispatch(c.refusal(reason(err)))
			} else {
				c.writeReply(false, reason(err), MaxLen)
			}
			return true
		}
		c.drain()
		if raw[0] != Version1 {
			c.writeReply(false, reason(err), MaxLen)
		}
		return false
	}
	if m.Version == Version1 {
		// RFC 1159: "The client closes the connection after sending the
		// message"; any data after it is discarded.
		c.drain()
		c.handleInline(r)
		return false
	}
	if inline {
		return !c.handleInline(r)
	}
	c.dispatch(sl)
	return true
}

// request is a message handled inline with its writer, in one allocation
// that is never reused (a handler may keep the message).
type request struct {
	m Message
	w responseWriter
}

// handleInline calls the handler on the reader's goroutine, with nothing in
// flight, so a reply goes straight to the wire; it reports whether the
// handler panicked.
func (c *conn) handleInline(r *request) bool {
	c.initWriter(&r.w, &r.m, c)
	panicked := c.s.handle(&r.w, &r.m)
	r.w.finish(notHandledText)
	return panicked
}

// sendReply writes an inline handler call's reply at once; c is that
// call's [replySink].
func (c *conn) sendReply(ack bool, text string, limit int) error {
	return c.writeReply(ack, text, limit)
}

// writeReply formats a reply into a buffer lent by the server's pool and
// writes it at once. A buffer of the connection's own would cost every
// connection, idle ones too, another 511 octets.
func (c *conn) writeReply(ack bool, text string, limit int) error {
	buf := c.s.buffer()
	err := c.write(appendReply(buf[:0], ack, text, limit))
	c.s.release(buf)
	return err
}

// initWriter readies m's ResponseWriter; sink takes a revision 'B' reply.
func (c *conn) initWriter(w *responseWriter, m *Message, sink replySink) {
	w.ctx, w.network, w.local, w.remote, w.remoteStr, w.limit = c.s.ctx, "tcp", c.nc.LocalAddr(), c.nc.RemoteAddr(), c.remote, MaxLen
	w.peer = c.peer
	if m.Version == Version2 {
		w.sink = sink
	}
}

// readMessage reads until buf holds one complete message and returns its
// size. The wait for its first octet is bounded by IdleTimeout counted from
// when nothing is in flight (see setWaiting), the rest of
// it by ReadTimeout counted from that first octet.
//
// A message that is already whole (it came in one read, or with the one
// before it) is never partial: it needs no ReadTimeout deadline and no
// place in s.partial, which saves a deadline update and a trip through
// s.mu or two per message. When buf already held octets, the reader was
// not waiting, so there is no state to change at all.
func (c *conn) readMessage() (int, error) {
	s := c.s
	fresh := c.n == 0
	if fresh {
		if !c.setWaiting() {
			return 0, errStopped
		}
		if err := c.fill(); err != nil {
			return 0, err
		}
	}
	want, err := partCount(c.buf[0])
	if err != nil {
		if fresh {
			c.setActive(false)
		}
		return 0, err
	}
	if size, whole := c.scan(want); whole {
		if fresh {
			c.setActive(false)
		}
		return size, nil
	}
	c.setActive(true)
	c.nc.SetReadDeadline(time.Now().Add(durationOr(s.ReadTimeout, DefaultReadTimeout)))
	for {
		if c.n == len(c.buf) {
			return 0, fmt.Errorf("%w: no complete message in %d octets", ErrTooLong, c.n)
		}
		if err := c.fill(); err != nil {
			return 0, fmt.Errorf("msp: message incomplete after %d octets: %w", c.n, err)
		}
		if size, whole := c.scan(want); whole {
			c.setComplete()
			return size, nil
		}
	}
}

// scan looks for the want-th NUL after the revision octet in the octets
// not searched yet, and reports the size of the message it ends.
func (c *conn) scan(want int) (size int, whole bool) {
	if c.scanned == 0 {
		c.scanned = 1
	}
	for c.scanned < c.n {
		i := bytes.IndexByte(c.buf[c.scanned:c.n], 0)
		if i < 0 {
			c.scanned = c.n
			break
		}
		c.scanned += i + 1
		c.nuls++
		if c.nuls == want {
			return c.scanned, true
		}
	}
	return 0, false
}

// fill reads more octets into buf, which must have room.
func (c *conn) fill() error {
	n, err := c.nc.Read(c.buf[c.n:])
	c.n += n
	switch {
	case n > 0:
		return nil
	case err == nil:
		return io.ErrNoProgress
	}
	return err
}

// consume drops the first size octets (one message) from buf.
func (c *conn) consume(size int) {
	c.n = copy(c.buf[:], c.buf[size:c.n])
	c.scanned, c.nuls = 0, 0
}

// connCount is the number of admitted TCP connections.
func (s *Server) connCount() int {
	s.init()
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}
