package msp

import (
	"context"
	"fmt"
	"hash/maphash"
	"log/slog"
	"net"
	"time"

	"golang.org/x/net/ipv4"
)

// DefaultPacketBatch is how many datagrams [Server.ServePacket] reads, and
// how many replies it writes, with one system call on a *net.UDPConn.
const DefaultPacketBatch = 32

// ServePacket reads MSP datagrams from pc and serves them until Shutdown or
// Close, then returns [ErrServerClosed]. Handlers run concurrently, at most
// MaxInflight at once. It closes pc when it returns, after its handlers have
// replied and the replies are written.
//
// On a *net.UDPConn it reads up to PacketBatch datagrams per system call
// (recvmmsg on Linux) and a writer goroutine it owns sends the replies,
// echoes and repeated replies in batches (sendmmsg); any other
// net.PacketConn is read with ReadFrom and answered with WriteTo, one
// datagram at a time.
func (s *Server) ServePacket(pc net.PacketConn) error {
	s.init()
	if s.Handler == nil {
		pc.Close()
		return errNoHandler
	}
	if !s.startServing(nil, pc) {
		pc.Close()
		return ErrServerClosed
	}
	defer s.done()

	size := intOr(s.PacketBatch, DefaultPacketBatch)
	bc := batchConnOf(pc, size)
	ps := s.newPacketServer(pc, bc, size)
	var err error
	if bc != nil {
		err = ps.readBatches(bc, size)
	} else {
		err = ps.readEach()
	}
	ps.handlers.stop()
	ps.out.stop()
	s.mu.Lock()
	delete(s.packets, pc)
	s.mu.Unlock()
	pc.Close()
	return err
}

// packetServer is the state of one ServePacket call. Its read loop (the
// goroutine running ServePacket) owns it; the handler workers and the
// writer it starts are stopped and waited for before ServePacket returns.
type packetServer struct {
	s        *Server
	pc       net.PacketConn
	local    net.Addr      // pc's address, for ResponseWriter.LocalAddr
	sem      chan struct{} // a token per handler call in flight, at most MaxInflight
	handlers *workerPool   // runs the handler calls
	out      *packetWriter // sends every datagram the server answers with
}

func (s *Server) newPacketServer(pc net.PacketConn, bc batchConn, size int) *packetServer {
	n := intOr(s.MaxInflight, DefaultMaxInflight)
	return &packetServer{
		s:        s,
		pc:       pc,
		local:    pc.LocalAddr(),
		sem:      make(chan struct{}, n),
		handlers: newWorkerPool(n),
		out:      newPacketWriter(pc, bc, size, s.logger()),
	}
}

// readErr decides what a read error means: nil to read on (after a
// backoff for a temporary error), else the error ServePacket returns.
func (ps *packetServer) readErr(rerr error, delay *time.Duration) error {
	s := ps.s
	switch {
	case s.shuttingDown():
		return ErrServerClosed
	case temporary(rerr) && s.backoff(delay):
		return nil
	}
	return fmt.Errorf("msp: read udp: %w", rerr)
}

// readEach reads one datagram at a time with ReadFrom into one buffer,
// which serve is done with when it returns.
func (ps *packetServer) readEach() error {
	buf := make([]byte, MaxLen+1) // one spare octet tells an oversized datagram
	var delay time.Duration
	for {
		n, addr, rerr := ps.pc.ReadFrom(buf)
		if rerr != nil {
			if err := ps.readErr(rerr, &delay); err != nil {
				return err
			}
			continue
		}
		delay = 0
		ps.serve(addr, buf[:n])
	}
}

// readBatches reads up to size datagrams per call into size buffers of
// MaxLen+1 octets (the spare octet tells an oversized datagram). The
// buffers are read into again on the next call, which is safe because
// serve keeps no reference to a datagram once it returns: decoding copies
// the parts into the Message's own string, the dedup key holds a hash, and
// a revision 'A' echo is copied into a buffer of the writer's.
func (ps *packetServer) readBatches(bc batchConn, size int) error {
	ms := make([]ipv4.Message, size)
	mem := make([]byte, size*(MaxLen+1))
	for i := range ms {
		b := mem[i*(MaxLen+1) : (i+1)*(MaxLen+1) : (i+1)*(MaxLen+1)]
		ms[i].Buffers = [][]byte{b}
	}
	var delay time.Duration
	for {
		n, rerr := bc.ReadBatch(ms, 0)
		if rerr != nil {
			if err := ps.readErr(rerr, &delay); err != nil {
				return err
			}
			continue
		}
		delay = 0
		for i := range ms[:n] {
			if addr := ms[i].Addr; addr != nil {
				ps.serve(addr, ms[i].Buffers[0][:ms[i].N])
			}
			ms[i].Addr = nil
		}
	}
}

// packetJob is one datagram's message while it is handled: the message, its
// writer and what the reply needs, in one allocation. It is never reused,
// so a handler may keep the message.
type packetJob struct {
	ps     *packetServer
	addr   net.Addr // the sender
	peer   Peer     // who owns the sending socket
	limit  int      // the datagram's size: no reply may be larger (no amplification)
	key    dedupKey
	dedupe bool // the duplicate filter has k pending
	m      Message
	w      responseWriter
}

// serve handles one datagram: validation, the revision 'A' echo and the
// duplicate filter run on the read loop (they are cheap and must work even
// when handlers are slow); the handler runs on one of the workers.
// Invalid datagrams get no answer: RFC 1312 never sends '-' over UDP. data
// is not used after serve returns.
func (ps *packetServer) serve(addr net.Addr, data []byte) {
	s := ps.s
	log := s.logger()
	// Before any parsing, so that a flood costs as little as possible. The
	// owner is asked per datagram, never remembered: UDP has no TIME_WAIT,
	// so another user may bind the same address and port the moment a
	// sender closes its socket.
	peer, k, ok := s.identify("udp", ps.local, addr)
	if !s.allowFrom(k, ok, addr, "udp") {
		return
	}
	j := &packetJob{ps: ps, addr: addr, limit: len(data), peer: peer}
	m := &j.m
	err := m.decode(data)
	if err == nil {
		err = s.admit(m)
	}
	if err != nil {
		if log.Enabled(context.Background(), slog.LevelDebug) {
			log.Debug("msp: dropped datagram", "remote", addr.String(), "err", err)
		}
		return
	}
	j.key.src, j.key.other = sourceKeyOf(addr)
	j.dedupe = s.dedup != nil
	if m.Version == Version1 {
		// RFC 1159: "an answering datagram is sent back to the client
		// containing exactly the same data." Echo every copy, so a lost
		// echo is made good by the client's retransmission.
		buf := ps.out.buffer()
		ps.out.send(append(buf[:0], data...), addr, buf)
		j.key.sum = maphash.Bytes(s.seed, data)
	} else {
		j.key.cookie = Fold(m.Cookie)
		j.key.sum = messageSum(s.seed, m)
		j.dedupe = j.dedupe && m.Cookie != ""
	}
	if j.dedupe {
		fresh, replay := s.dedup.begin(j.key, time.Now())
		if !fresh {
			if replay != nil {
				ps.out.send(fitReply(replay, len(data)), addr, nil)
			}
			if log.Enabled(context.Background(), slog.LevelDebug) {
				log.Debug("msp: duplicate datagram", "remote", addr.String(), "cookie", m.Cookie, "answered", replay != nil)
			}
			return
		}
	}
	ps.sem <- struct{}{}
	if !s.start() {
		<-ps.sem
		if j.dedupe {
			s.dedup.abort(j.key)
		}
		return
	}
	ps.handlers.run(j)
}

// run calls the handler on a worker.
func (j *packetJob) run() {
	ps := j.ps
	s := ps.s
	defer s.done()
	defer func() { <-ps.sem }()
	w := &j.w
	w.ctx, w.network, w.local, w.remote, w.limit, w.peer = s.ctx, "udp", ps.local, j.addr, j.limit, j.peer
	if j.m.Version == Version2 {
		w.sink = j
	}
	s.handle(w, &j.m)
	w.finish(notHandledText)
	if j.dedupe {
		s.dedup.finish(j.key, time.Now())
	}
}

// sendReply answers a revision 'B' datagram: RFC 1312 sends only '+', and
// only for a message to a particular user. A reply the duplicate filter
// keeps (to answer retransmissions) is a slice of its own; any other is
// formatted into a buffer of the writer's.
func (j *packetJob) sendReply(ack bool, text string, limit int) error {
	if !ack || j.m.Recipient == "" {
		return nil
	}
	out := j.ps.out
	if j.dedupe {
		b := formatReply(true, text, limit)
		j.ps.s.dedup.answered(j.key, b)
		return out.send(b, j.addr, nil)
	}
	buf := out.buffer()
	return out.send(appendReply(buf[:0], true, text, limit), j.addr, buf)
}
