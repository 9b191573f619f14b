package msp

import (
	"fmt"
	"hash/maphash"
	"net"
	"time"
)

// ServePacket reads MSP datagrams from pc and serves them until Shutdown or
// Close, then returns [ErrServerClosed]. Handlers run concurrently, at most
// MaxInflight at once. It closes pc when it returns, after its handlers have
// replied.
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

	sem := make(chan struct{}, intOr(s.MaxInflight, DefaultMaxInflight))
	handlers := newWorkerPool(cap(sem))
	buf := make([]byte, MaxLen+1) // one spare octet tells an oversized datagram
	var delay time.Duration
	var err error
	for {
		n, addr, rerr := pc.ReadFrom(buf)
		if rerr != nil {
			if s.shuttingDown() {
				err = ErrServerClosed
				break
			}
			if temporary(rerr) && s.backoff(&delay) {
				continue
			}
			err = fmt.Errorf("msp: read udp: %w", rerr)
			break
		}
		delay = 0
		s.servePacket(pc, addr, buf[:n], sem, handlers)
	}
	handlers.stop()
	s.mu.Lock()
	delete(s.packets, pc)
	s.mu.Unlock()
	pc.Close()
	return err
}

// servePacket handles one datagram: validation, the revision 'A' echo and
// the duplicate filter run on the read loop (they are cheap and must work
// even when handlers are slow); the handler runs on one of the workers.
// Invalid datagrams get no answer: RFC 1312 never sends '-' over UDP.
func (s *Server) servePacket(pc net.PacketConn, addr net.Addr, data []byte, sem chan struct{}, handlers *workerPool) {
	log := s.logger()
	// Before any parsing, so that a flood costs as little as possible.
	if !s.allowFrom(addr, "udp") {
		return
	}
	var m Message
	err := m.decode(data)
	if err == nil {
		err = s.admit(&m)
	}
	if err != nil {
		log.Debug("msp: dropped datagram", "remote", addr.String(), "err", err)
		return
	}
	key := dedupKey{src: addr.String()}
	dedupe := s.dedup != nil
	if m.Version == Version1 {
		// RFC 1159: "an answering datagram is sent back to the client
		// containing exactly the same data." Echo every copy, so a lost
		// echo is made good by the client's retransmission.
		if _, err := pc.WriteTo(data, addr); err != nil {
			log.Debug("msp: echo", "remote", key.src, "err", err)
		}
		key.sum = maphash.Bytes(s.seed, data)
	} else {
		key.cookie = Fold(m.Cookie)
		key.sum = messageSum(s.seed, &m)
		dedupe = dedupe && m.Cookie != ""
	}
	if dedupe {
		fresh, replay := s.dedup.begin(key, time.Now())
		if !fresh {
			if replay != nil {
				pc.WriteTo(fitReply(replay, len(data)), addr)
			}
			log.Debug("msp: duplicate datagram", "remote", key.src, "cookie", m.Cookie, "answered", replay != nil)
			return
		}
	}
	sem <- struct{}{}
	if !s.start() {
		<-sem
		if dedupe {
			s.dedup.abort(key)
		}
		return
	}
	handlers.run(func() {
		defer s.done()
		defer func() { <-sem }()
		w := &responseWriter{
			ctx:     s.ctx,
			network: "udp",
			local:   pc.LocalAddr(),
			remote:  addr,
			limit:   len(data), // never answer with more than was asked: no amplification
		}
		if m.Version == Version2 {
			w.owed = func(ack bool) bool { return ack && m.Recipient != "" }
			w.send = func(b []byte) error {
				if dedupe {
					s.dedup.answered(key, b)
				}
				_, err := pc.WriteTo(b, addr)
				return err
			}
		}
		s.handle(w, &m)
		w.finish(notHandledText)
		if dedupe {
			s.dedup.finish(key, time.Now())
		}
	})
}
