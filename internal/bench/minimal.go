package bench

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/msprelay/msprelay/msp"
)

// minimalServer is the floor a node is compared against: RFC 1312 framing
// over TCP (several messages per connection, one reply each), msp.Parse,
// and "+" with no delivery at all; over UDP a single loop that parses each
// datagram and answers "+". It is written with net directly, not with
// msp.Server, so that the node's whole stack (server, switchboard, session
// push) is what the ratio measures.
//
// Ownership: the server owns its listener, packet conn, accepted conns and
// their goroutines; Close closes all of them and waits.
type minimalServer struct {
	l  net.Listener
	pc net.PacketConn
	wg sync.WaitGroup

	plus, minus []byte // the replies, read-only

	// mu guards conns and closed.
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
}

func startMinimal() (*minimalServer, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("bench: minimal server: %w", err)
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		l.Close()
		return nil, fmt.Errorf("bench: minimal server: %w", err)
	}
	s := &minimalServer{l: l, pc: pc, conns: map[net.Conn]struct{}{}, plus: []byte("+\x00"), minus: []byte("-\x00")}
	s.wg.Go(s.accept)
	s.wg.Go(s.packets)
	return s, nil
}

func (s *minimalServer) tcpAddr() string { return s.l.Addr().String() }
func (s *minimalServer) udpAddr() string { return s.pc.LocalAddr().String() }

func (s *minimalServer) accept() {
	for {
		c, err := s.l.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return // closed
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			return
		}
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		s.wg.Go(func() { s.serve(c) })
	}
}

// serve frames revision 'B' messages (the revision octet and seven NULs),
// parses each and replies.
func (s *minimalServer) serve(c net.Conn) {
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		c.Close()
	}()
	readFramed(c, s.minus, func(msg []byte) bool {
		reply := s.plus
		if _, err := msp.Parse(msg); err != nil {
			reply = s.minus
		}
		_, err := c.Write(reply)
		return err == nil && reply[0] != '-'
	})
}

// readFramed reads revision 'B' messages from c (the revision octet and
// seven NULs make one) and hands each to handle, which may keep none of
// it and returns false to end the connection. A message longer than
// msp.MaxLen gets minus and ends it. Both baselines frame this way, so
// neither pays for framing the other does not.
func readFramed(c net.Conn, minus []byte, handle func(msg []byte) bool) {
	var buf [msp.MaxLen]byte
	n, scanned, nuls := 0, 1, 0
	for {
		c.SetReadDeadline(time.Now().Add(time.Minute))
		k, err := c.Read(buf[n:])
		if k == 0 && err != nil {
			return
		}
		n += k
		for scanned < n {
			if buf[scanned] == 0 {
				nuls++
			}
			scanned++
			if nuls < 7 {
				continue
			}
			if !handle(buf[:scanned]) {
				return
			}
			n = copy(buf[:], buf[scanned:n])
			scanned, nuls = 1, 0
		}
		if n == len(buf) {
			c.Write(minus)
			return
		}
	}
}

// packets is the raw UDP reply loop.
func (s *minimalServer) packets() {
	buf := make([]byte, msp.MaxLen+1)
	for {
		n, addr, err := s.pc.ReadFrom(buf)
		if err != nil {
			return // closed
		}
		if m, err := msp.Parse(buf[:n]); err == nil && m.Recipient != "" {
			s.pc.WriteTo(s.plus, addr)
		}
	}
}

func (s *minimalServer) Close() {
	s.mu.Lock()
	s.closed = true
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.l.Close()
	s.pc.Close()
	s.wg.Wait()
}
