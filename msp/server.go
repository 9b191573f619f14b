package msp

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/time/rate"

	"github.com/msprelay/msprelay/internal/limitlog"
)

// Defaults for the zero fields of [Server].
const (
	// DefaultReadTimeout bounds how long a whole TCP message may take to
	// arrive once its first octet has come. A message is at most 512
	// octets, which a client sends in one write, so this is a minimum data
	// rate of about 50 octets a second: a connection dribbling octets holds
	// its slot no longer than this (and under pressure no longer than
	// DefaultStallGrace, see [Server.StallGrace]).
	DefaultReadTimeout = 10 * time.Second
	// DefaultIdleTimeout: RFC 1312 lets the server close a connection a
	// client keeps open between messages; minutes let a client send a few in a row.
	DefaultIdleTimeout = 5 * time.Minute
	// DefaultWriteTimeout bounds writing one reply.
	DefaultWriteTimeout = 10 * time.Second
	// DefaultMaxConns caps concurrent TCP connections.
	DefaultMaxConns = 10000
	// DefaultMaxInflight caps concurrent UDP handler calls.
	DefaultMaxInflight = 1024
	// DefaultMaxPipeline caps the messages of one TCP connection handled
	// at once.
	DefaultMaxPipeline = 16
	// DefaultDedupWindow is how long a UDP message's identity (source
	// address, source port, cookie) is remembered after it was handled.
	// RFC 1312's example cookie is the send time to the second ("the
	// message was sent at 12:13:25 on the 6th of August, 1991"), so a
	// sender's next message carries a new cookie and a long window cannot
	// swallow it; the window only has to outlast a sender's retransmissions
	// ([Client] gives up after about 16 s, slow clients retry for minutes).
	// Five minutes matches the TCP idle timeout.
	DefaultDedupWindow = 5 * time.Minute
	// DefaultDedupEntries bounds the duplicate filter (about 100 octets an
	// entry, plus the reply for acknowledged messages).
	DefaultDedupEntries = 16384
)

// ErrServerClosed is returned by [Server.Serve], [Server.ServePacket] and
// [Server.ListenAndServe] after [Server.Shutdown] or [Server.Close].
var ErrServerClosed = errors.New("msp: server closed")

// errNoHandler is returned by Serve and ServePacket when Handler is nil.
var errNoHandler = errors.New("msp: Server.Handler is nil")

// Handler handles one valid message. ServeMSP calls w.Ack or w.Nack at most
// once; the reply, if the revision and transport owe one, is written when it
// does. A handler that returns without either gets a negative reply on TCP
// and silence on UDP. UDP messages are handled concurrently; so are up to
// [Server.MaxPipeline] messages of one TCP connection, except that messages
// of one connection for the same recipient (compared with [EqualFold]) are
// handled one after another in the order they arrived: the next starts when
// the one before returned, or earlier when it called InOrder on its writer
// (the server's writers implement interface{ InOrder() }).
type Handler interface {
	ServeMSP(w ResponseWriter, m *Message)
}

// HandlerFunc adapts a function to [Handler].
type HandlerFunc func(ResponseWriter, *Message)

// ServeMSP calls f(w, m).
func (f HandlerFunc) ServeMSP(w ResponseWriter, m *Message) { f(w, m) }

// Server serves MSP over TCP and UDP. Its exported fields are read when
// serving starts and must not change after. The zero value with a Handler is
// ready to use.
//
// Ownership: Serve owns each accepted connection and the goroutine serving
// it, and closes both; that goroutine owns the goroutines handling the
// connection's pipelined messages and waits for them before it closes the
// connection. ServePacket owns the handler goroutines it starts. A
// listener or packet conn passed to Serve or ServePacket is closed when that
// call returns. Close waits for every goroutine the server started.
type Server struct {
	// Addr is the address ListenAndServe binds, ":18" when empty.
	Addr string
	// Handler is called for every valid message; required.
	Handler Handler
	// Logger receives diagnostics; nil discards them.
	Logger *slog.Logger
	// ReadTimeout bounds one TCP message from its first octet to its last.
	ReadTimeout time.Duration
	// IdleTimeout closes a TCP connection with no message under way.
	IdleTimeout time.Duration
	// WriteTimeout bounds writing one reply.
	WriteTimeout time.Duration
	// MaxConns caps TCP connections. At the cap the connection idle longest
	// (waiting for a message's first octet with no message in flight, a
	// new silent one included) is closed to admit the new one, else the
	// one whose message has been arriving longest if that is longer than
	// StallGrace and it owes no reply; if there is neither, the new one is
	// told "-server busy" and closed.
	MaxConns int
	// MaxInflight caps concurrent UDP handler calls; past it the server
	// stops reading datagrams until a call returns (the datagrams of the
	// batch already read wait in their buffers).
	MaxInflight int
	// PacketBatch is how many datagrams ServePacket reads, and how many
	// answers it writes, with one system call when serving a
	// *net.UDPConn; zero means DefaultPacketBatch, 1 reads and writes one
	// datagram at a time with ReadFrom and WriteTo.
	PacketBatch int
	// MaxPipeline caps the messages of one TCP connection being handled at
	// once; past it the server stops reading that connection until the
	// earliest reply is written. Replies always go out in the order the
	// messages came; a pipelined message's reply is written once its
	// handler has returned and the earlier replies are out. A connection's
	// messages are handled inline, costing no goroutine, until the octets
	// of a further message are already there when one has been read. 1
	// handles each connection's messages strictly one after another.
	MaxPipeline int
	// DedupWindow is how long a handled UDP message is remembered; negative
	// turns duplicate suppression off.
	DedupWindow time.Duration
	// DedupEntries caps the remembered UDP messages; the oldest go first.
	DedupEntries int
	// StripControl removes forbidden octets instead of refusing the message.
	StripControl bool
	// RequireSender refuses revision 'B' messages with an empty SENDER.
	RequireSender bool

	// MaxConnsPerIP caps the TCP connections of one source (an IPv4
	// address or an IPv6 /64); past it a new one is told "-too many
	// connections from your address" and closed. Zero means
	// DefaultMaxConnsPerIP, negative no cap.
	MaxConnsPerIP int
	// RatePerIP is the sustained messages a second one source may send,
	// TCP and UDP together; past it a TCP message gets "-too many messages
	// from your address, slow down" and a datagram is dropped (RFC 1312
	// sends no '-' over UDP). Zero means DefaultRatePerIP, negative no
	// limit.
	RatePerIP float64
	// RateBurst is how many messages a source may send at once before
	// RatePerIP applies; zero means DefaultRateBurst.
	RateBurst int
	// MaxSources bounds the per-source table; zero means
	// DefaultMaxSources. Sources with no open connection are forgotten
	// least recently seen first.
	MaxSources int
	// Identify tells who sent a message from this host: network is "tcp"
	// or "udp", local the server's end (for UDP, the address the packet
	// conn is bound to, maybe unspecified), remote the sender. It is
	// called once per TCP connection, when it is accepted, and once per
	// datagram, before any limit applies; it must be fast and safe for
	// concurrent use. The Peer it returns is what [ResponseWriter.Peer]
	// reports, and keys the per-source limits: a local sender counts per
	// account (Peer.UID), local senders it cannot name share one source,
	// other hosts count per address (Peer.Local false). Nil treats every
	// loopback sender as that one unnamed local source. The node sets it
	// to a sockowner.Resolver.
	Identify func(network string, local, remote netip.AddrPort) Peer
	// StallGrace: at MaxConns with no idle connection, a connection whose
	// message has been under way longer than this is closed to admit the
	// new one. Zero means DefaultStallGrace, negative never.
	StallGrace time.Duration

	initOnce sync.Once
	ctx      context.Context    // handed to handlers; cancelled by Close
	cancel   context.CancelFunc // cancels ctx
	log      *slog.Logger       // Logger, or a discarding one
	seed     maphash.Seed       // keys the message hashes of the dedup cache
	dedup    *dedupCache        // nil when DedupWindow < 0; has its own lock
	src      *sources           // per-source limits; has its own lock
	limits   *limitlog.Log      // rate-limited logging of limits; has its own lock
	stats    counters           // what the limits did
	bufs     sync.Pool          // of *replyBuf, lent to format one TCP reply; has its own lock
	connPool sync.Pool          // of *conn whose reader has ended, zeroed; has its own lock

	wg      sync.WaitGroup // every goroutine the server started, and the serve loops
	running atomic.Int64   // how many of those are running, for Shutdown to poll

	mu        sync.Mutex                  // guards the fields below
	shutting  bool                        // Shutdown or Close called
	listeners map[net.Listener]struct{}   // being served by Serve
	packets   map[net.PacketConn]struct{} // being served by ServePacket
	conns     map[*conn]struct{}          // admitted TCP connections
	idle      connList                    // conns waiting for a message, longest first
	partial   connList                    // conns reading a message, earliest start first
}

// init fills in what the zero value lacks; it starts nothing.
func (s *Server) init() {
	s.initOnce.Do(func() {
		s.ctx, s.cancel = context.WithCancel(context.Background())
		s.log = s.Logger
		if s.log == nil {
			s.log = slog.New(slog.DiscardHandler)
		}
		s.seed = maphash.MakeSeed()
		s.bufs.New = func() any { return new(replyBuf) }
		if s.DedupWindow >= 0 {
			s.dedup = newDedupCache(durationOr(s.DedupWindow, DefaultDedupWindow), intOr(s.DedupEntries, DefaultDedupEntries))
		}
		every := rate.Limit(s.RatePerIP)
		switch {
		case s.RatePerIP == 0:
			every = DefaultRatePerIP
		case s.RatePerIP < 0:
			every = 0
		}
		s.src = newSources(intOr(s.MaxSources, DefaultMaxSources), every, intOr(s.RateBurst, DefaultRateBurst), &s.stats.forgotten)
		s.limits = limitlog.New(s.log, 0)
		s.listeners = make(map[net.Listener]struct{})
		s.packets = make(map[net.PacketConn]struct{})
		s.conns = make(map[*conn]struct{})
		s.idle = newConnList(func(c *conn) *connLinks { return &c.idle })
		s.partial = newConnList(func(c *conn) *connLinks { return &c.partial })
	})
}

func durationOr(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

func intOr(n, def int) int {
	if n > 0 {
		return n
	}
	return def
}

// buffer lends a reply buffer from s's pool; release gives it back.
func (s *Server) buffer() *replyBuf { return s.bufs.Get().(*replyBuf) }

// release returns a buffer from buffer; nothing may use it after.
func (s *Server) release(b *replyBuf) { s.bufs.Put(b) }

func (s *Server) logger() *slog.Logger {
	s.init()
	return s.log
}

// startServing registers a goroutine and, if not nil, the listener or packet
// conn it serves, in one step, so Shutdown either sees both or makes the
// goroutine not start; the caller must call s.done when it ends.
func (s *Server) startServing(l net.Listener, pc net.PacketConn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.shutting {
		return false
	}
	if l != nil {
		s.listeners[l] = struct{}{}
	}
	if pc != nil {
		s.packets[pc] = struct{}{}
	}
	s.wg.Add(1)
	s.running.Add(1)
	return true
}

// start registers a goroutine unless the server is shutting down; the
// caller must call s.done when it ends.
func (s *Server) start() bool { return s.startServing(nil, nil) }

// done ends what start registered.
func (s *Server) done() {
	s.running.Add(-1)
	s.wg.Done()
}

func (s *Server) shuttingDown() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.shutting
}

// Listen binds TCP and UDP on the same address so one MSP port serves both.
// On Linux the networks "tcp" and "udp" with an empty host listen on IPv4 and
// IPv6 at once. With port 0 it binds TCP first and then UDP on the port TCP
// got, trying a few times if that UDP port is taken. The caller owns both.
func Listen(addr string) (net.Listener, net.PacketConn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, nil, fmt.Errorf("msp: listen %q: %w", addr, err)
	}
	const attempts = 10
	for i := 0; ; i++ {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, nil, fmt.Errorf("msp: listen tcp %s: %w", addr, err)
		}
		udpAddr := addr
		if port == "" || port == "0" {
			udpAddr = net.JoinHostPort(host, strconv.Itoa(l.Addr().(*net.TCPAddr).Port))
		}
		pc, err := net.ListenPacket("udp", udpAddr)
		if err == nil {
			return l, pc, nil
		}
		l.Close()
		if udpAddr == addr || !errors.Is(err, syscall.EADDRINUSE) || i+1 == attempts {
			return nil, nil, fmt.Errorf("msp: listen udp %s: %w", udpAddr, err)
		}
	}
}

// ListenAndServe binds s.Addr (":18" when empty) for TCP and UDP with
// [Listen] and serves both until Shutdown or Close, returning
// [ErrServerClosed] then. If either side fails, both are stopped and the
// first failure is returned.
func (s *Server) ListenAndServe() error {
	addr := s.Addr
	if addr == "" {
		addr = ":18"
	}
	if s.shuttingDown() {
		return ErrServerClosed
	}
	l, pc, err := Listen(addr)
	if err != nil {
		return err
	}
	errc := make(chan error, 2)
	go func() { errc <- s.Serve(l) }()
	go func() { errc <- s.ServePacket(pc) }()
	first := <-errc
	if !errors.Is(first, ErrServerClosed) {
		l.Close()
		pc.Close()
	}
	second := <-errc
	if errors.Is(first, ErrServerClosed) && !errors.Is(second, ErrServerClosed) {
		return second
	}
	return first
}

// Addrs reports the local addresses of every listener and packet conn being
// served.
func (s *Server) Addrs() []net.Addr {
	s.init()
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []net.Addr
	for l := range s.listeners {
		out = append(out, l.Addr())
	}
	for pc := range s.packets {
		out = append(out, pc.LocalAddr())
	}
	return out
}

// Shutdown stops the server gracefully: it stops accepting connections and
// reading datagrams, closes idle TCP connections, lets in-flight handlers
// finish and their replies be written, then closes the rest. It returns nil
// when all of that is done, or ctx's error if ctx ends first (then call
// Close). Serve and ServePacket return [ErrServerClosed].
func (s *Server) Shutdown(ctx context.Context) error {
	s.stop(false)
	const maxPoll = 50 * time.Millisecond
	poll := time.Millisecond
	t := time.NewTimer(poll)
	defer t.Stop()
	for s.running.Load() > 0 {
		select {
		case <-ctx.Done():
			return fmt.Errorf("msp: shutdown: %w", ctx.Err())
		case <-t.C:
		}
		poll = min(2*poll, maxPoll)
		t.Reset(poll)
	}
	s.wg.Wait()
	return nil
}

// Close stops the server at once: listeners, packet conns and connections are
// closed and handlers' contexts cancelled. It waits for every goroutine the
// server started, so handlers must honour their context; do not call it from
// a handler. Close is idempotent.
func (s *Server) Close() error {
	s.stop(true)
	s.cancel()
	s.wg.Wait()
	return nil
}

// stop marks the server as shutting down and closes its listeners. Hard
// also closes packet conns and every connection; otherwise packet read loops
// are only woken (in-flight handlers still reply through them), idle
// connections are closed, and the readers of connections with pipelined
// messages in flight are woken so those connections close once the replies
// are written.
func (s *Server) stop(hard bool) {
	s.init()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.shutting = true
	for l := range s.listeners {
		l.Close()
	}
	for pc := range s.packets {
		if hard {
			pc.Close()
		} else {
			pc.SetReadDeadline(time.Now())
		}
	}
	if hard {
		for c := range s.conns {
			c.nc.Close()
		}
		return
	}
	for c := range s.conns {
		switch {
		case c.idle.in:
			c.nc.Close()
		case c.waiting:
			// Handlers are in flight: their replies still go out, so only
			// the reader, blocked waiting for another message, is woken.
			c.nc.SetReadDeadline(time.Now())
		}
	}
}

// temporary reports whether an accept or read error is worth retrying.
func temporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

// backoff sleeps before retrying after a temporary error, doubling up to a
// second, and reports false if the server began shutting down meanwhile.
func (s *Server) backoff(d *time.Duration) bool {
	*d = min(max(2**d, 5*time.Millisecond), time.Second)
	select {
	case <-time.After(*d):
	case <-s.ctx.Done():
	}
	return !s.shuttingDown()
}

// handle calls the handler, turning a panic into a logged error so that no
// input can bring the server down; it reports whether the handler panicked.
func (s *Server) handle(w *responseWriter, m *Message) (panicked bool) {
	defer func() {
		if r := recover(); r != nil {
			s.logger().Error("msp: handler panicked", "network", w.network, "remote", w.RemoteAddrString(), "panic", r)
			panicked = true
		}
	}()
	s.Handler.ServeMSP(w, m)
	return false
}

// allowFrom applies the per-source message rate to one message from
// source k (ok false: no source, no limit), counting what it refuses; the
// caller logs a refusal with limitHit (not here, so that the sender's
// address is only formatted for a refusal).
func (s *Server) allowFrom(k Source, ok bool, network string) bool {
	if !ok || s.src.allow(k) {
		return true
	}
	if network == "udp" {
		s.stats.rateUDP.Add(1)
	} else {
		s.stats.rateTCP.Add(1)
	}
	return false
}

// limitHit logs a message refused by allowFrom, from from or, when that
// is not valid, addr.
func (s *Server) limitHit(network string, k Source, from netip.AddrPort, addr net.Addr) {
	kind := "msp: limit reached: rate per source (tcp)"
	if network == "udp" {
		kind = "msp: limit reached: rate per source (udp)"
	}
	if s.limits.Suppress(kind) {
		return // a flood of refusals costs no allocation
	}
	remote := ""
	if from.IsValid() {
		remote = addrPortString(from)
	} else if addr != nil {
		remote = AddrString(addr)
	}
	s.limits.Hit(kind, "remote", remote, "source", k.String())
}

// admit checks the framing-independent rules the server adds to
// [Message.Validate]: optional stripping and the SENDER policy. It prepares m
// for the handler (CR LF line ends).
func (s *Server) admit(m *Message) error {
	if s.StripControl {
		m.Sanitize()
	}
	if err := m.Validate(); err != nil {
		return err
	}
	if s.RequireSender && m.Version == Version2 && m.Sender == "" {
		return fmt.Errorf("%w: SENDER is required here", ErrNoSender)
	}
	m.Text = NormalizeNewlines(m.Text)
	return nil
}
