package msp

import (
	"container/list"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"
)

// busyReply is sent to a connection refused at MaxConns.
const busyReply = "-server busy\x00"

// notHandledText is the explanation of the Nack the server makes for a
// handler that returned without replying.
const notHandledText = "message not handled"

// conn is one admitted TCP connection. Its goroutine (conn.serve) owns nc and
// closes it; Shutdown, Close and eviction may close nc early, under s.mu,
// to end that goroutine.
type conn struct {
	s    *Server
	nc   net.Conn
	idle *list.Element // in s.idle while waiting for a message; guarded by s.mu

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
		s.accept(nc)
	}
}

// accept admits nc and starts its goroutine.
func (s *Server) accept(nc net.Conn) {
	if c := s.admitConn(nc); c != nil {
		go c.serve()
	}
}

// admitConn registers nc as a connection to serve (the caller must run
// c.serve), evicting the longest-idle connection at MaxConns. When every
// connection is busy it refuses nc with "server busy", closes it and
// returns nil.
func (s *Server) admitConn(nc net.Conn) *conn {
	s.init()
	c := &conn{s: s, nc: nc}
	s.mu.Lock()
	if s.shutting {
		s.mu.Unlock()
		nc.Close()
		return nil
	}
	if len(s.conns) >= intOr(s.MaxConns, DefaultMaxConns) {
		oldest := s.idle.Front()
		if oldest == nil {
			s.mu.Unlock()
			s.logger().Debug("msp: refusing connection, all busy", "remote", nc.RemoteAddr().String())
			nc.SetWriteDeadline(time.Now().Add(time.Second))
			nc.Write([]byte(busyReply))
			nc.Close()
			return nil
		}
		victim := oldest.Value.(*conn)
		s.idle.Remove(oldest)
		victim.idle = nil
		delete(s.conns, victim)
		victim.nc.Close()
		s.logger().Debug("msp: evicted idle connection", "remote", victim.nc.RemoteAddr().String())
	}
	s.conns[c] = struct{}{}
	c.idle = s.idle.PushBack(c)
	s.wg.Add(1)
	s.running.Add(1)
	s.mu.Unlock()
	return c
}

// setIdle marks c as waiting for a message; false means the server is
// shutting down and c should close instead.
func (c *conn) setIdle() bool {
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	if c.s.shutting {
		return false
	}
	if c.idle == nil {
		c.idle = c.s.idle.PushBack(c)
	}
	return true
}

// setActive marks c as having a message under way, so it is not evicted.
func (c *conn) setActive() {
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	if c.idle != nil {
		c.s.idle.Remove(c.idle)
		c.idle = nil
	}
}

// serve reads messages and replies until the client closes, a timeout, an
// undecodable message or shutdown; it closes nc.
func (c *conn) serve() {
	s := c.s
	defer s.done()
	defer func() {
		s.mu.Lock()
		if c.idle != nil {
			s.idle.Remove(c.idle)
			c.idle = nil
		}
		delete(s.conns, c)
		s.mu.Unlock()
		c.nc.Close()
	}()
	log := s.logger()
	for {
		size, err := c.readMessage()
		if err != nil {
			c.refuse(err)
			log.Debug("msp: tcp connection ends", "remote", c.nc.RemoteAddr().String(), "err", err)
			return
		}
		if !c.serveMessage(c.buf[:size]) {
			return
		}
		c.consume(size)
		if c.n > 0 {
			// The next message has begun arriving; finish it unless
			// shutting down.
			if s.shuttingDown() {
				return
			}
			continue
		}
		if !c.setIdle() {
			return
		}
	}
}

// refuse answers a framing error with "-reason\0" when the client may be
// waiting for a reply (anything but a revision 'A' message or a dead
// connection).
func (c *conn) refuse(err error) {
	var ne net.Error
	if errors.As(err, &ne) || errors.Is(err, net.ErrClosed) || c.n == 0 || c.buf[0] == Version1 {
		return
	}
	c.write(formatReply(false, reason(err), MaxLen))
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

// serveMessage validates and handles one framed message and reports whether
// the connection goes on.
func (c *conn) serveMessage(raw []byte) bool {
	s := c.s
	var m Message
	err := m.decode(raw)
	if err == nil {
		err = s.admit(&m)
	}
	if err != nil {
		if raw[0] != Version1 {
			c.write(formatReply(false, reason(err), MaxLen))
		}
		s.logger().Debug("msp: refused message", "network", "tcp", "remote", c.nc.RemoteAddr().String(), "err", err)
		// A policy refusal leaves the stream intact; anything else means
		// the client does not speak the protocol as we do.
		return errors.Is(err, ErrNoSender)
	}
	w := &responseWriter{
		ctx:     s.ctx,
		network: "tcp",
		local:   c.nc.LocalAddr(),
		remote:  c.nc.RemoteAddr(),
		limit:   MaxLen,
	}
	if m.Version == Version2 {
		w.owed = func(bool) bool { return true }
		w.send = c.write
	}
	panicked := s.handle(w, &m)
	w.finish(notHandledText)
	// RFC 1159: "The client closes the connection after sending the
	// message"; any data after it is discarded.
	return !panicked && m.Version == Version2
}

// readMessage reads until buf holds one complete message and returns its
// size. The wait for its first octet is bounded by IdleTimeout, the rest of
// it by ReadTimeout counted from that first octet.
func (c *conn) readMessage() (int, error) {
	s := c.s
	if c.n == 0 {
		c.nc.SetReadDeadline(time.Now().Add(durationOr(s.IdleTimeout, DefaultIdleTimeout)))
		if err := c.fill(); err != nil {
			return 0, err
		}
	}
	c.setActive()
	c.nc.SetReadDeadline(time.Now().Add(durationOr(s.ReadTimeout, DefaultReadTimeout)))
	want, err := partCount(c.buf[0])
	if err != nil {
		return 0, err
	}
	for {
		if c.scanned == 0 {
			c.scanned = 1
		}
		for ; c.scanned < c.n; c.scanned++ {
			if c.buf[c.scanned] != 0 {
				continue
			}
			c.nuls++
			if c.nuls == want {
				c.scanned++
				return c.scanned, nil
			}
		}
		if c.n == len(c.buf) {
			return 0, fmt.Errorf("%w: no complete message in %d octets", ErrTooLong, c.n)
		}
		if err := c.fill(); err != nil {
			return 0, fmt.Errorf("msp: message incomplete after %d octets: %w", c.n, err)
		}
	}
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
