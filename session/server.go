package session

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/msprelay/msprelay/conversation"
	"github.com/msprelay/msprelay/internal/limitlog"
	"github.com/msprelay/msprelay/msp"
	"github.com/msprelay/msprelay/presence"
	"github.com/msprelay/msprelay/sessionproto"
	"github.com/msprelay/msprelay/switchboard"
)

// Defaults for zero Config fields.
const (
	DefaultIdleTimeout  = 3 * time.Minute
	DefaultLoginTimeout = 30 * time.Second
	DefaultWriteTimeout = 10 * time.Second
	DefaultSendTimeout  = 10 * time.Second
	DefaultMaxSessions  = 1024
	DefaultMaxList      = 256
	DefaultMaxNames     = 16
	DefaultOutQueue     = 128
	DefaultAckWindow    = 128
	DefaultQueueWait    = 250 * time.Millisecond
	DefaultParkAfter    = 2 * time.Second
	// maxMaxList keeps a full list reply under sessionproto.MaxServerPayload.
	maxMaxList = 512
	// lingerTimeout bounds how long a closing session reads (and discards)
	// what the client still sends, so that the client sees the last line
	// instead of a reset.
	lingerTimeout = 2 * time.Second
)

// ErrServerClosed is returned by Serve after Shutdown or Close.
var ErrServerClosed = errors.New("session: server closed")

// Config configures a Server.
type Config struct {
	// Switchboard attaches signed-in sessions as lines and routes SND;
	// required.
	Switchboard *switchboard.Switchboard
	// Directory answers WHO and feeds watch pushes; required. It must be the
	// directory the switchboard writes to.
	Directory *presence.Directory
	// Logger receives the server's logs; nil means slog.Default().
	Logger *slog.Logger
	// Node is this node's name; empty means Directory.Name(), and any other
	// value must equal it.
	Node string
	// IdleTimeout closes a signed-in session that sent nothing for this long
	// (PNG counts). Zero means DefaultIdleTimeout.
	IdleTimeout time.Duration
	// LoginTimeout bounds the time from connect to a completed sign-in.
	LoginTimeout time.Duration
	// WriteTimeout drops a client that cannot take one write for this long.
	WriteTimeout time.Duration
	// SendTimeout bounds one SND's delivery.
	SendTimeout time.Duration
	// MaxSessions caps connections (signed in or not) on each kind of
	// listener: Unix sockets together, network listeners together, so
	// that strangers on the network cannot lock local users out.
	MaxSessions int
	// MaxPending caps the connections of each kind of listener that have
	// not signed in yet; past it a new connection gets 600. Zero means
	// DefaultMaxPending.
	MaxPending int
	// FailedSignInRate is the sustained failed sign-ins a second allowed
	// from one network source (IPv4 address or IPv6 /64); a source past
	// it, and past FailedSignInBurst, is refused with 911 without its
	// answer being checked. Zero means DefaultFailedSignInRate, negative
	// no limit.
	FailedSignInRate float64
	// FailedSignInBurst is how many failed sign-ins a source may make at
	// once; zero means DefaultFailedSignInBurst.
	FailedSignInBurst int
	// Identify tells which local account owns a TCP session client's
	// socket (see msp.Server.Identify), so that the failed sign-in throttle
	// counts a local sender per account, however many loopback addresses
	// she binds; local senders it cannot name share one source. Nil counts
	// every loopback client as that one source.
	Identify func(network string, local, remote netip.AddrPort) msp.Peer
	// MaxList caps each watch and block list of a session (at most 512).
	MaxList int
	// MaxNames caps the alias names of a session.
	MaxNames int
	// OutQueue caps the frames (messages, pushes) queued for one client;
	// past it a delivery waits up to QueueWait for room and is then refused
	// with switchboard.ErrTerminalSlow (and goes to the mailbox). The
	// queue's slots are allocated when the session starts, so this is also
	// most of an idle session's memory.
	OutQueue int
	// AckWindow caps the messages pushed to one acknowledging (MSPS2)
	// client and not yet acknowledged: the window of messages in flight
	// to one terminal (issue 21). They are pushed in order without
	// waiting for each other's ACK; past the window a delivery is refused
	// with switchboard.ErrTerminalSlow (and goes to the mailbox). Zero
	// means DefaultAckWindow.
	AckWindow int
	// QueueWait bounds how long a delivery to a client whose queue is full
	// waits for room: flow control, so that a burst to one busy client
	// slows its senders (their replies wait) instead of sending what it
	// cannot take yet to the mailbox. Zero means DefaultQueueWait; a
	// negative value refuses at once.
	QueueWait time.Duration
	// ParkAfter is how long a signed-in session's reader waits for the
	// next frame before it parks the idle connection (park.go): the
	// session then has no goroutine until the client sends something.
	// Zero means DefaultParkAfter; a negative value never parks, and so
	// does a value not below IdleTimeout (and any platform but Linux).
	ParkAfter time.Duration
	// Conversations runs multi-party conversations (XFR, ANS, CAL, MSG,
	// BYE, WHO #name); nil turns those commands off.
	Conversations *conversation.Manager
	// Blocks keeps each user's block list across sign-ins and nodes (BLK,
	// commands_user.go); nil keeps block lists per session only.
	Blocks BlockStore
	// AdminGroup is the group whose members may broadcast (WAL) besides
	// root; empty means sessionproto.DefaultAdminGroup.
	AdminGroup string
	// GroupsOf lists the group names of a local uid for the WAL check;
	// nil means the system's databases (os/user).
	GroupsOf func(uid uint32) ([]string, error)
}

// Server serves the session protocol on any number of listeners.
//
// Ownership: Serve owns its listener and closes it when it returns. Each
// accepted connection is owned by its session's reader goroutine, which the
// server starts, counts in wg and which closes the connection last; see
// conn.go. The watch dispatcher goroutine (watch.go) is started by the first
// Serve and stopped by Shutdown or Close, which wait for every goroutine the
// server started.
type Server struct {
	cfg Config
	sb  *switchboard.Switchboard
	dir *presence.Directory
	log *slog.Logger

	ctx    context.Context    // parent of SND contexts; cancelled by Close
	cancel context.CancelFunc //
	quit   chan struct{}      // closed by Shutdown/Close; stops the dispatcher
	user   userCmds           // state of WAL (commands_user.go)
	start  sync.Once          // starts the dispatcher
	stop   sync.Once          // closes quit
	wg     sync.WaitGroup     // sessions and the dispatcher

	// park watches idle sessions' sockets (park.go); made on the first
	// park, under mu, and stopped by closeListeners.
	park atomic.Pointer[parker]

	// mu guards listeners, sessions, counts, closed and parkFailed.
	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	sessions  map[*session]struct{}
	counts    [numKinds]kindCount
	closed    bool
	// parkFailed: the parker could not start (no epoll); never retried.
	parkFailed bool

	fails  *failures     // failed sign-ins per source; has its own lock
	limits *limitlog.Log // rate-limited logging; has its own lock
	stats  counters

	w watchIndex

	// writers lends *bufio.Writer to sessions only while they have frames to
	// write, so an idle session holds no 8 KiB write buffer.
	writers sync.Pool
	// readers lends *bufio.Reader (of clientGrammar.maxLine) to sessions
	// only while a frame is arriving: an idle session waits for its next
	// octet without a read buffer (see frameReader).
	readers sync.Pool
	// payloads lends scratch buffers (*[]byte) for building MSG payloads.
	payloads sync.Pool
}

// New validates cfg and builds a Server. It starts nothing.
func New(cfg Config) (*Server, error) {
	if cfg.Switchboard == nil {
		return nil, errors.New("session: Config.Switchboard is required")
	}
	if cfg.Directory == nil {
		return nil, errors.New("session: Config.Directory is required")
	}
	if cfg.Node == "" {
		cfg.Node = cfg.Directory.Name()
	}
	if cfg.Node != cfg.Directory.Name() || cfg.Node != cfg.Switchboard.Node() {
		return nil, fmt.Errorf("session: node %q does not match directory %q and switchboard %q",
			cfg.Node, cfg.Directory.Name(), cfg.Switchboard.Node())
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if err := cfg.checkNumbers(); err != nil {
		return nil, err
	}
	defDur(&cfg.IdleTimeout, DefaultIdleTimeout)
	defDur(&cfg.LoginTimeout, DefaultLoginTimeout)
	defDur(&cfg.WriteTimeout, DefaultWriteTimeout)
	defDur(&cfg.SendTimeout, DefaultSendTimeout)
	defInt(&cfg.MaxSessions, DefaultMaxSessions)
	defInt(&cfg.MaxPending, DefaultMaxPending)
	defInt(&cfg.FailedSignInBurst, DefaultFailedSignInBurst)
	failEvery := rate.Limit(cfg.FailedSignInRate)
	switch {
	case cfg.FailedSignInRate == 0:
		failEvery = DefaultFailedSignInRate
	case cfg.FailedSignInRate < 0:
		failEvery = 0
	}
	defInt(&cfg.MaxList, DefaultMaxList)
	defInt(&cfg.MaxNames, DefaultMaxNames)
	defInt(&cfg.OutQueue, DefaultOutQueue)
	defInt(&cfg.AckWindow, DefaultAckWindow)
	if cfg.QueueWait == 0 {
		cfg.QueueWait = DefaultQueueWait
	}
	if cfg.ParkAfter == 0 {
		cfg.ParkAfter = DefaultParkAfter
	}
	if cfg.MaxList > maxMaxList {
		return nil, fmt.Errorf("session: MaxList %d over the limit of %d", cfg.MaxList, maxMaxList)
	}
	if cfg.MaxNames > maxMaxList {
		return nil, fmt.Errorf("session: MaxNames %d over the limit of %d", cfg.MaxNames, maxMaxList)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Server{
		cfg: cfg, sb: cfg.Switchboard, dir: cfg.Directory, log: cfg.Logger,
		ctx: ctx, cancel: cancel, quit: make(chan struct{}),
		listeners: map[net.Listener]struct{}{},
		sessions:  map[*session]struct{}{},
		w:         watchIndex{m: map[string]map[*session]struct{}{}},
		fails:     newFailures(failEvery, cfg.FailedSignInBurst),
		limits:    limitlog.New(cfg.Logger, 0),
	}, nil
}

func defDur(d *time.Duration, def time.Duration) {
	if *d == 0 {
		*d = def
	}
}

func defInt(n *int, def int) {
	if *n == 0 {
		*n = def
	}
}

// Serve accepts connections on l and serves each with auth. It blocks until
// l fails or the server is shut down, then returns ErrServerClosed (after
// Shutdown or Close) or the accept error. l is closed when Serve returns.
func (srv *Server) Serve(l net.Listener, auth Authenticator) error {
	if auth == nil {
		l.Close()
		return errors.New("session: Serve needs an Authenticator")
	}
	srv.mu.Lock()
	if srv.closed {
		srv.mu.Unlock()
		l.Close()
		return ErrServerClosed
	}
	srv.listeners[l] = struct{}{}
	srv.mu.Unlock()
	srv.start.Do(srv.startWatch)
	kind := kindOf(l)
	if t, ok := auth.(Trust); ok {
		srv.log.Warn("session: trust authentication: claimed names are believed, sessions are unverified; use only on a trusted network",
			"listener", l.Addr().String(), "non_loopback_clients", t.Insecure)
	}
	defer func() {
		srv.mu.Lock()
		delete(srv.listeners, l)
		srv.mu.Unlock()
		l.Close()
	}()
	var delay time.Duration
	for {
		c, err := l.Accept()
		if err != nil {
			if srv.isClosed() {
				return ErrServerClosed
			}
			if temporary(err) {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				select {
				case <-time.After(delay):
				case <-srv.quit:
				}
				continue
			}
			return fmt.Errorf("session: accept: %w", err)
		}
		delay = 0
		srv.admit(c, auth, kind)
	}
}

// temporary reports whether an accept error is worth retrying (EMFILE and
// friends still say so).
func temporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

// admit starts a session for c, or refuses it when its kind of listener is
// full or has too many connections not signed in yet.
func (srv *Server) admit(c net.Conn, auth Authenticator, kind listenerKind) {
	s := newSession(srv, c, auth, kind)
	srv.mu.Lock()
	n := &srv.counts[kind]
	var refusal string
	switch {
	case srv.closed:
		srv.mu.Unlock()
		c.Close()
		return
	case n.open >= srv.cfg.MaxSessions:
		refusal = "too many sessions"
		srv.stats.refusedFull.Add(1)
	case n.pending >= srv.cfg.MaxPending:
		refusal = "too many connections not signed in"
		srv.stats.refusedPending.Add(1)
	}
	if refusal != "" {
		srv.mu.Unlock()
		srv.limits.Hit("session refused: "+refusal, "listener", kind.String(), "remote", c.RemoteAddr().String(),
			"max_sessions", srv.cfg.MaxSessions, "max_pending", srv.cfg.MaxPending)
		c.SetWriteDeadline(time.Now().Add(time.Second))
		c.Write(sessionproto.ErrorLine(sessionproto.CodeServerBusy, 0, refusal))
		c.Close()
		return
	}
	n.open++
	n.pending++
	srv.sessions[s] = struct{}{}
	srv.wg.Add(1)
	srv.mu.Unlock()
	go s.serve()
}

// signedIn moves s from the pending connections to the signed-in ones; the
// session's reader calls it once, when s.signedIn becomes true.
func (srv *Server) signedIn(s *session) {
	srv.mu.Lock()
	srv.counts[s.kind].pending--
	srv.mu.Unlock()
}

// forget removes an ended session from the registry; the session's reader
// calls it last.
func (srv *Server) forget(s *session) {
	srv.mu.Lock()
	delete(srv.sessions, s)
	srv.counts[s.kind].open--
	if !s.signedIn {
		srv.counts[s.kind].pending--
	}
	srv.mu.Unlock()
}

func (srv *Server) isClosed() bool {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	return srv.closed
}

// Sessions returns the number of open connections.
func (srv *Server) Sessions() int {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	return len(srv.sessions)
}

// closeListeners marks the server closed, closes its listeners and returns
// the sessions open at that moment.
func (srv *Server) closeListeners() []*session {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	srv.closed = true
	for l := range srv.listeners {
		l.Close()
	}
	out := make([]*session, 0, len(srv.sessions))
	for s := range srv.sessions {
		out = append(out, s)
	}
	srv.stop.Do(func() { close(srv.quit) })
	if p := srv.park.Load(); p != nil {
		p.stop() // it wakes every parked session, and parks no more
	}
	return out
}

// Shutdown stops accepting, tells every session "OUT SSD", signs them out
// and waits for all goroutines. If ctx ends first the remaining connections
// are closed at once, and ctx's error is returned once they are gone.
func (srv *Server) Shutdown(ctx context.Context) error {
	for _, s := range srv.closeListeners() {
		s.end(outFrame("SSD"))
	}
	done := make(chan struct{})
	go func() {
		srv.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	srv.cancel()
	srv.abortAll()
	<-done
	return fmt.Errorf("session: shutdown: %w", ctx.Err())
}

// Close closes every listener and connection at once and waits for all
// goroutines. It is idempotent.
func (srv *Server) Close() error {
	srv.closeListeners()
	srv.cancel()
	srv.abortAll()
	srv.wg.Wait()
	return nil
}

// abortAll closes every session's connection without a goodbye.
func (srv *Server) abortAll() {
	srv.mu.Lock()
	ss := make([]*session, 0, len(srv.sessions))
	for s := range srv.sessions {
		ss = append(ss, s)
	}
	srv.mu.Unlock()
	for _, s := range ss {
		s.abort()
	}
}

// msgFrame builds the MSG frame that pushes d. The payload is built in a
// scratch buffer first (its length heads the frame), so the frame itself
// is the one allocation: it is queued, and the session's writer owns it.
func (srv *Server) msgFrame(d *switchboard.Delivery) []byte {
	bp, _ := srv.payloads.Get().(*[]byte)
	if bp == nil {
		bp = new([]byte)
	}
	m := messageFromDelivery(d)
	p := sessionproto.AppendMessage((*bp)[:0], &m)
	f := make([]byte, 0, len("MSG ")+20+2+len(p))
	f = append(f, "MSG "...)
	f = strconv.AppendInt(f, int64(len(p)), 10)
	f = append(f, '\r', '\n')
	f = append(f, p...)
	if cap(p) <= 64<<10 { // a rare huge one is not kept
		*bp = p[:0]
		srv.payloads.Put(bp)
	}
	return f
}
