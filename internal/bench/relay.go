package bench

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/msprelay/msprelay/msp"
)

// minimalRelay is the floor of the node's job (issue 21): it takes an MSP
// message (TCP, several per connection, or UDP), pushes it to ONE receiving
// client that is a separate process, and answers "+" to the sender only
// once that client has acknowledged the message by id. It does nothing
// else: no directory, no sessions, no mailbox, no limits beyond two bounds
// on what waits for an acknowledgement. Its writes to the client are
// buffered and flushed when the queue is empty (everything queued while a
// write was under way goes out in the next write); the client reads what
// has arrived, acknowledges it in one write, and reads again.
//
// Framing between the relay and its client (both directions on one
// loopback TCP connection):
//
//	relay -> client: id (4 octets, big endian) | length (2 octets, big
//	                 endian) | the MSP message as the sender sent it
//	client -> relay: id (4 octets, big endian), one per acknowledged
//	                 message, several per write
//
// Ownership: the relay owns its listeners, the client connection, the
// sender connections, the client child process (when it started one) and
// every goroutine; Close closes and stops all of them and waits.
type minimalRelay struct {
	l   net.Listener // MSP over TCP
	pc  *net.UDPConn // MSP over UDP
	cl  net.Listener // where the client connects, once
	cc  net.Conn     // the client connection, set by attach
	kid *child       // the client process, nil when the caller attaches its own client
	wg  sync.WaitGroup

	plus, minus []byte // the replies, read-only

	wake chan struct{} // capacity 1: out became non-empty
	done chan struct{} // closed by Close

	// mu guards out, nextID, waiting, conns and closed.
	mu      sync.Mutex
	out     []byte // frames queued for the client
	nextID  uint32
	waiting map[uint32]relayWaiter
	conns   map[*relayConn]struct{}
	closed  bool
}

// relayWaiter is who gets the "+" for a message: a TCP sender connection,
// or, when c is nil, a UDP sender's address.
type relayWaiter struct {
	c    *relayConn
	addr netip.AddrPort
}

// relayConn is one TCP sender connection. pending counts its messages
// waiting for an acknowledgement (guarded by the relay's mu).
type relayConn struct {
	c       net.Conn
	pending int
}

// Bounds on what waits for an acknowledgement: a sender connection may
// have relayMaxPerConn messages outstanding, the relay relayMaxWaiting in
// all; beyond them a message gets "-" (TCP) or no answer (UDP).
const (
	relayMaxPerConn = 1024
	relayMaxWaiting = 1 << 16
)

// relayFrameHeader is the length of a push frame's header.
const relayFrameHeader = 6

// relayClientEnv carries the relay's client address to a ChildRelayClient
// child.
const relayClientEnv = "MSPBENCH_RELAY_CLIENT"

// listenRelay opens the relay's listeners on 127.0.0.1; attach then waits
// for the client to connect and starts serving.
func listenRelay() (*minimalRelay, error) {
	r := &minimalRelay{plus: []byte("+\x00"), minus: []byte("-\x00"), wake: make(chan struct{}, 1),
		done: make(chan struct{}), waiting: map[uint32]relayWaiter{}, conns: map[*relayConn]struct{}{}}
	var err error
	if r.l, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		return nil, fmt.Errorf("bench: minimal relay: %w", err)
	}
	if r.cl, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		r.l.Close()
		return nil, fmt.Errorf("bench: minimal relay: %w", err)
	}
	if r.pc, err = net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}); err != nil {
		r.l.Close()
		r.cl.Close()
		return nil, fmt.Errorf("bench: minimal relay: %w", err)
	}
	return r, nil
}

// startMinimalRelay starts the relay with its receiving client in a child
// process (ChildRelayClient). The caller closes it.
func startMinimalRelay() (*minimalRelay, error) {
	r, err := listenRelay()
	if err != nil {
		return nil, err
	}
	if r.kid, err = startChild(ChildRelayClient, relayClientEnv+"="+r.clientAddr()); err != nil {
		r.Close()
		return nil, err
	}
	if err := r.attach(); err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}

func (r *minimalRelay) tcpAddr() string    { return r.l.Addr().String() }
func (r *minimalRelay) udpAddr() string    { return r.pc.LocalAddr().String() }
func (r *minimalRelay) clientAddr() string { return r.cl.Addr().String() }

// attach accepts the one client connection (within 30 s) and starts the
// relay's goroutines.
func (r *minimalRelay) attach() error {
	r.cl.(*net.TCPListener).SetDeadline(time.Now().Add(30 * time.Second))
	cc, err := r.cl.Accept()
	r.cl.Close() // one client only
	if err != nil {
		return fmt.Errorf("bench: minimal relay: waiting for its client: %w", err)
	}
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		cc.Close()
		return errors.New("bench: minimal relay: closed")
	}
	r.cc = cc
	r.mu.Unlock()
	r.wg.Go(r.accept)
	r.wg.Go(r.packets)
	r.wg.Go(r.pushes)
	r.wg.Go(r.acks)
	return nil
}

func (r *minimalRelay) accept() {
	for {
		c, err := r.l.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return // closed
		}
		rc := &relayConn{c: c}
		r.mu.Lock()
		if r.closed {
			r.mu.Unlock()
			c.Close()
			return
		}
		r.conns[rc] = struct{}{}
		r.mu.Unlock()
		r.wg.Go(func() { r.serve(rc) })
	}
}

// serve frames revision 'B' messages as minimalServer.serve does and
// queues each for the client; the replies come from acks.
func (r *minimalRelay) serve(rc *relayConn) {
	c := rc.c
	defer func() {
		r.mu.Lock()
		delete(r.conns, rc)
		r.mu.Unlock()
		c.Close()
	}()
	readFramed(c, r.minus, func(msg []byte) bool {
		if _, err := msp.Parse(msg); err == nil && r.enqueue(msg, relayWaiter{c: rc}) {
			return true
		}
		// Replies are in order: the '-' follows the '+' of every earlier
		// message only if those are written first, so this connection
		// simply ends here.
		c.SetWriteDeadline(time.Now().Add(ioTimeout))
		c.Write(r.minus)
		return false
	})
}

// packets reads datagrams without allocating an address for each.
func (r *minimalRelay) packets() {
	buf := make([]byte, msp.MaxLen+1)
	for {
		n, addr, err := r.pc.ReadFromUDPAddrPort(buf)
		if err != nil {
			return // closed
		}
		if m, err := msp.Parse(buf[:n]); err == nil && m.Recipient != "" {
			r.enqueue(buf[:n], relayWaiter{addr: addr})
		}
	}
}

// enqueue appends msg's push frame to the client's queue and records who
// waits for its acknowledgement; false when a bound is reached.
func (r *minimalRelay) enqueue(msg []byte, w relayWaiter) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed || len(r.waiting) >= relayMaxWaiting || (w.c != nil && w.c.pending >= relayMaxPerConn) {
		return false
	}
	r.nextID++
	id := r.nextID
	r.waiting[id] = w
	if w.c != nil {
		w.c.pending++
	}
	wasEmpty := len(r.out) == 0
	r.out = binary.BigEndian.AppendUint32(r.out, id)
	r.out = binary.BigEndian.AppendUint16(r.out, uint16(len(msg)))
	r.out = append(r.out, msg...)
	if wasEmpty {
		select {
		case r.wake <- struct{}{}:
		default:
		}
	}
	return true
}

// pushes writes everything queued for the client in one write whenever
// the queue is not empty: while one write is under way, the next batch
// gathers.
func (r *minimalRelay) pushes() {
	var spare []byte
	for {
		select {
		case <-r.wake:
		case <-r.done:
			return
		}
		r.mu.Lock()
		b := r.out
		r.out = spare[:0]
		r.mu.Unlock()
		if len(b) == 0 {
			continue
		}
		r.cc.SetWriteDeadline(time.Now().Add(ioTimeout))
		if _, err := r.cc.Write(b); err != nil {
			return // the client is gone; Close cleans up
		}
		spare = b
	}
}

// acks reads the client's acknowledgements and answers each message's
// sender: the acknowledgements of one read are matched under one lock, and
// each TCP sender gets its "+"s in one write.
func (r *minimalRelay) acks() {
	buf := make([]byte, 4096)
	n := 0
	type reply struct {
		c     *relayConn
		count int
	}
	var tcp []reply
	var udp []netip.AddrPort
	var plusses []byte
	for {
		k, err := r.cc.Read(buf[n:])
		if k == 0 && err != nil {
			return
		}
		n += k
		whole := n - n%4
		tcp, udp = tcp[:0], udp[:0]
		r.mu.Lock()
		for i := 0; i < whole; i += 4 {
			id := binary.BigEndian.Uint32(buf[i:])
			w, ok := r.waiting[id]
			if !ok {
				continue // not ours, or acknowledged already
			}
			delete(r.waiting, id)
			if w.c == nil {
				udp = append(udp, w.addr)
				continue
			}
			w.c.pending--
			i := slices.IndexFunc(tcp, func(q reply) bool { return q.c == w.c })
			if i < 0 {
				tcp = append(tcp, reply{c: w.c})
				i = len(tcp) - 1
			}
			tcp[i].count++
		}
		r.mu.Unlock()
		n = copy(buf, buf[whole:n])
		for _, a := range udp {
			r.pc.WriteToUDPAddrPort(r.plus, a)
		}
		for _, q := range tcp {
			plusses = plusses[:0]
			for range q.count {
				plusses = append(plusses, r.plus...)
			}
			// A sender that does not read stalls the relay at most this
			// long; it is a benchmark floor, not a server.
			q.c.c.SetWriteDeadline(time.Now().Add(ioTimeout))
			if _, err := q.c.c.Write(plusses); err != nil {
				q.c.c.Close()
			}
		}
	}
}

// Close stops the relay, its client process and every goroutine. It may
// be called more than once.
func (r *minimalRelay) Close() {
	r.mu.Lock()
	already := r.closed
	r.closed = true
	for rc := range r.conns {
		rc.c.Close()
	}
	cc := r.cc
	r.mu.Unlock()
	if already {
		return
	}
	close(r.done)
	r.l.Close()
	r.cl.Close()
	r.pc.Close()
	if cc != nil {
		cc.Close()
	}
	if r.kid != nil {
		r.kid.close()
	}
	r.wg.Wait()
}

// ErrRelayFrame: the relay's client read a push it cannot take.
var ErrRelayFrame = errors.New("bench relay client: bad push")

// runRelayClient is the ChildRelayClient child's client: it reads pushes
// from the relay on in, decodes each message (as a client must to show it)
// and acknowledges it by id on ack, all the acknowledgements of what one
// read brought in one write. It returns nil when in ends between frames.
func runRelayClient(in io.Reader, ack io.Writer) error {
	br := bufio.NewReaderSize(in, 64<<10)
	var acks []byte
	defer func() { // what was taken before a bad push is acknowledged still
		if len(acks) > 0 {
			ack.Write(acks)
		}
	}()
	for {
		hdr, err := br.Peek(relayFrameHeader)
		if err != nil {
			switch {
			case len(hdr) == 0 && (errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed)):
				return nil
			case errors.Is(err, io.EOF):
				err = io.ErrUnexpectedEOF
			}
			return fmt.Errorf("bench relay client: %w", err)
		}
		id := binary.BigEndian.Uint32(hdr)
		size := int(binary.BigEndian.Uint16(hdr[4:]))
		if size > msp.MaxLen+1 {
			return fmt.Errorf("%w: %d octets", ErrRelayFrame, size)
		}
		if _, err := br.Discard(relayFrameHeader); err != nil {
			return fmt.Errorf("bench relay client: %w", err)
		}
		msg, err := br.Peek(size)
		if err != nil {
			return fmt.Errorf("bench relay client: %w", err)
		}
		if _, err := msp.Parse(msg); err != nil {
			return fmt.Errorf("%w: push %d: %w", ErrRelayFrame, id, err)
		}
		br.Discard(size)
		acks = binary.BigEndian.AppendUint32(acks, id)
		// Acknowledge before a read could block: when nothing more is
		// buffered, or only part of the next frame.
		if next := br.Buffered(); next < relayFrameHeader || next < relayFrameHeader+peekSize(br) {
			if _, err := ack.Write(acks); err != nil {
				return fmt.Errorf("bench relay client: %w", err)
			}
			acks = acks[:0]
		}
	}
}

// peekSize is the length of the buffered frame header's message.
func peekSize(br *bufio.Reader) int {
	hdr, err := br.Peek(relayFrameHeader)
	if err != nil {
		return 0
	}
	return int(binary.BigEndian.Uint16(hdr[4:]))
}

// relayClientChild is RunChild's ChildRelayClient mode: dial the relay
// named by relayClientEnv and serve it in a goroutine; stop closes the
// connection and waits for it.
func relayClientChild() (stop func(), err error) {
	addr := os.Getenv(relayClientEnv)
	c, err := net.DialTimeout("tcp", addr, ioTimeout)
	if err != nil {
		return nil, fmt.Errorf("bench relay client: %s=%q: %w", relayClientEnv, addr, err)
	}
	done := make(chan struct{})
	go func() { // ends when c is closed, by stop or by the relay
		defer close(done)
		if err := runRelayClient(c, c); err != nil {
			fmt.Fprintln(os.Stderr, err)
		}
	}()
	return func() { c.Close(); <-done }, nil
}
