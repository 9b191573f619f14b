package msp

import (
	"context"
	"fmt"
	"hash/maphash"
	"log/slog"
	"net"
	"net/netip"
	"time"
)

// DefaultPacketBatch is how many datagrams [Server.ServePacket] reads, and
// how many replies it writes, with one system call on a *net.UDPConn.
const DefaultPacketBatch = 32

// ServePacket reads MSP datagrams from pc and serves them until Shutdown or
// Close, then returns [ErrServerClosed]. Handlers run concurrently, at most
// MaxInflight at once. It closes pc when it returns, after its handlers have
// replied and the replies are written.
//
// On a *net.UDPConn on Linux it reads up to PacketBatch datagrams per
// system call (recvmmsg) and sends the replies, echoes and repeated
// replies in batches (sendmmsg, see packetWriter), with the addresses in
// buffers it keeps; elsewhere, or with PacketBatch 1, a *net.UDPConn is
// read with ReadMsgUDPAddrPort and answered with WriteToUDPAddrPort. Any
// other net.PacketConn is read with ReadFrom and answered with WriteTo,
// one datagram at a time.
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
	local    net.Addr                  // pc's address, for ResponseWriter.LocalAddr
	localAP  netip.AddrPort            // the same, for Identify
	sem      chan struct{}             // a token per handler call in flight, at most MaxInflight
	handlers *workerPool               // runs the handler calls
	out      *packetWriter             // sends every datagram the server answers with
	next     *packetJob                // the read loop's: decoded into, replaced once handed to a worker
	names    map[netip.AddrPort]string // the read loop's: recent senders' addresses as strings, at most maxNames
}

// maxNames bounds packetServer.names.
const maxNames = 1024

// name is from as a string (addrPortString), made once per sender socket
// seen recently: the node names every message's source, and a client that
// keeps its socket (as a long-running one does) would otherwise cost an
// allocation per datagram. The table is cleared when full.
func (ps *packetServer) name(from netip.AddrPort) string {
	if n, ok := ps.names[from]; ok {
		return n
	}
	if len(ps.names) >= maxNames {
		clear(ps.names)
	}
	n := addrPortString(from)
	ps.names[from] = n
	return n
}

func (s *Server) newPacketServer(pc net.PacketConn, bc batchConn, size int) *packetServer {
	n := intOr(s.MaxInflight, DefaultMaxInflight)
	local := pc.LocalAddr()
	localAP, _ := addrPort(local)
	return &packetServer{
		s:        s,
		pc:       pc,
		local:    local,
		localAP:  localAP,
		sem:      make(chan struct{}, n),
		handlers: newWorkerPool(n),
		out:      newPacketWriter(pc, bc, size, s.logger()),
		names:    make(map[netip.AddrPort]string),
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

// readEach reads one datagram at a time into one buffer, which serve is
// done with when it returns: with ReadMsgUDPAddrPort on a *net.UDPConn
// (no allocation for the address), with ReadFrom on any other
// net.PacketConn.
func (ps *packetServer) readEach() error {
	buf := make([]byte, MaxLen+1) // one spare octet tells an oversized datagram
	uc, _ := ps.pc.(*net.UDPConn)
	var delay time.Duration
	for {
		var (
			n    int
			from netip.AddrPort
			addr net.Addr
			rerr error
		)
		if uc != nil {
			n, _, _, from, rerr = uc.ReadMsgUDPAddrPort(buf, nil)
		} else {
			n, addr, rerr = ps.pc.ReadFrom(buf)
		}
		if rerr != nil {
			if err := ps.readErr(rerr, &delay); err != nil {
				return err
			}
			continue
		}
		delay = 0
		if addr != nil {
			ps.serve(addr, buf[:n])
		} else {
			ps.serveFrom(from, nil, buf[:n])
		}
	}
}

// readBatches reads up to size datagrams per call into size buffers of
// MaxLen+1 octets (the spare octet tells an oversized datagram). The
// buffers are read into again on the next call, which is safe because
// serve keeps no reference to a datagram once it returns: decoding copies
// the parts into the Message's own string, the dedup key holds a hash, and
// a revision 'A' echo is copied into a buffer of the writer's.
func (ps *packetServer) readBatches(bc batchConn, size int) error {
	ms := make([]inDatagram, size)
	mem := make([]byte, size*(MaxLen+1))
	for i := range ms {
		ms[i].buf = mem[i*(MaxLen+1) : (i+1)*(MaxLen+1) : (i+1)*(MaxLen+1)]
	}
	var delay time.Duration
	for {
		n, rerr := bc.readBatch(ms)
		if rerr != nil {
			if err := ps.readErr(rerr, &delay); err != nil {
				return err
			}
			continue
		}
		delay = 0
		for i := range ms[:n] {
			if ms[i].from.IsValid() {
				ps.serveFrom(ms[i].from, nil, ms[i].buf[:ms[i].n])
			}
		}
	}
}

// packetJob is one datagram's message while it is handled: the message, its
// writer and what the reply needs, in one allocation. Once handed to a
// worker it is never reused, so a handler may keep the message; a job whose
// datagram the read loop answered or dropped is decoded into again.
type packetJob struct {
	ps        *packetServer
	from      netip.AddrPort // the sender
	addr      net.Addr       // the sender, when the conn is of another kind than UDP; else nil
	remoteStr string         // from as a string, set when handed to a worker
	peer      Peer           // who owns the sending socket
	limit     int            // the datagram's size: no reply may be larger (no amplification)
	key       dedupKey
	dedupe    bool // the duplicate filter has k pending
	m         Message
	w         responseWriter
}

// dest is where an answer to j's datagram goes.
func (j *packetJob) dest(b []byte, buf *replyBuf) outDatagram {
	return outDatagram{b: b, to: j.from, addr: j.addr, buf: buf}
}

// serve handles one datagram from addr, as ReadFrom reports it.
func (ps *packetServer) serve(addr net.Addr, data []byte) {
	from, _ := addrPort(addr)
	ps.serveFrom(from, addr, data)
}

// serveFrom handles one datagram from from (or, when from is not a UDP
// address, from addr): the sender's identity, the rate limit, validation,
// the revision 'A' echo and the duplicate filter run on the read loop, and
// what they settle is answered (or dropped) there, without a worker hop
// and without an allocation of its own: they are cheap and must work even
// when handlers are slow. The handler runs on one of the workers. Invalid
// datagrams get no answer: RFC 1312 never sends '-' over UDP. data is not
// used after serveFrom returns.
func (ps *packetServer) serveFrom(from netip.AddrPort, addr net.Addr, data []byte) {
	s := ps.s
	log := s.logger()
	// Before any parsing, so that a flood costs as little as possible. The
	// owner is asked per datagram, never remembered: UDP has no TIME_WAIT,
	// so another user may bind the same address and port the moment a
	// sender closes its socket.
	var (
		peer Peer
		k    Source
		ok   bool
	)
	if from.IsValid() {
		peer, k, ok = sourceOfAddrPort(s.Identify, "udp", ps.localAP, from)
	} else {
		peer, k, ok = s.identify("udp", ps.local, addr)
	}
	if !s.allowFrom(k, ok, "udp") {
		s.limitHit("udp", k, from, addr)
		return
	}
	j := ps.next
	if j == nil {
		j = new(packetJob)
		ps.next = j
	} else {
		*j = packetJob{}
	}
	j.ps, j.from, j.addr, j.limit, j.peer = ps, from, addr, len(data), peer
	m := &j.m
	err := m.decode(data)
	if err == nil {
		err = s.admit(m)
	}
	if err != nil {
		if log.Enabled(context.Background(), slog.LevelDebug) {
			log.Debug("msp: dropped datagram", "remote", j.remoteString(), "err", err)
		}
		return
	}
	if from.IsValid() {
		j.key.src = from
	} else {
		j.key.other = addr.String()
	}
	j.dedupe = s.dedup != nil
	if m.Version == Version1 {
		// RFC 1159: "an answering datagram is sent back to the client
		// containing exactly the same data." Echo every copy, so a lost
		// echo is made good by the client's retransmission.
		buf := ps.out.buffer()
		ps.out.send(j.dest(append(buf[:0], data...), buf))
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
				ps.out.send(j.dest(fitReply(replay, len(data)), nil))
			}
			if log.Enabled(context.Background(), slog.LevelDebug) {
				log.Debug("msp: duplicate datagram", "remote", j.remoteString(), "cookie", m.Cookie, "answered", replay != nil)
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
	if from.IsValid() {
		j.remoteStr = ps.name(from)
	}
	ps.next = nil // the worker's now, and the handler's
	ps.handlers.run(j)
}

// remoteString names j's sender in logs.
func (j *packetJob) remoteString() string {
	if j.addr != nil {
		return AddrString(j.addr)
	}
	return addrPortString(j.from)
}

// run calls the handler on a worker.
func (j *packetJob) run() {
	ps := j.ps
	s := ps.s
	defer s.done()
	defer func() { <-ps.sem }()
	w := &j.w
	w.ctx, w.network, w.local, w.remote, w.remoteAP, w.limit, w.peer = s.ctx, "udp", ps.local, j.addr, j.from, j.limit, j.peer
	w.remoteStr = j.remoteStr
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
// only for a message to a particular user. It is formatted into a buffer
// of the writer's; a reply the duplicate filter keeps (to answer
// retransmissions) is sent from the filter's copy.
func (j *packetJob) sendReply(ack bool, text string, limit int) error {
	if !ack || j.m.Recipient == "" {
		return nil
	}
	out := j.ps.out
	buf := out.buffer()
	if j.dedupe {
		b := j.ps.s.dedup.answered(j.key, appendReply(buf[:0], true, text, limit))
		out.release(buf)
		return out.send(j.dest(b, nil))
	}
	return out.send(j.dest(appendReply(buf[:0], true, text, limit), buf))
}
