package session

import (
	"container/list"
	"net"
	"sync"
	"sync/atomic"

	"golang.org/x/time/rate"

	"github.com/msprelay/msprelay/msp"
)

// Defaults for the abuse limits of [Config].
const (
	// DefaultMaxPending caps the connections of one kind of listener that
	// have not signed in yet. A sign-in takes a round trip or two, so a few
	// dozen cover any real burst of clients; the cap keeps unauthenticated
	// strangers from taking the session slots.
	DefaultMaxPending = 64
	// DefaultFailedSignInRate is the sustained failed sign-ins a second
	// allowed from one source (a remote IPv4 address or IPv6 /64, or one
	// local account; see msp.Source): one every six seconds, ten a minute.
	DefaultFailedSignInRate = 1.0 / 6
	// DefaultFailedSignInBurst is how many failed sign-ins one source may
	// make at once before DefaultFailedSignInRate applies.
	DefaultFailedSignInBurst = 10
	// maxFailureSources bounds the per-source table of failed sign-ins;
	// the least recently failing source is forgotten past it.
	maxFailureSources = 16384
)

// listenerKind tells the two kinds of listener apart for the per-listener
// caps: local (Unix socket) clients must never be locked out by network
// strangers.
type listenerKind int

const (
	kindNetwork listenerKind = iota
	kindUnix
	numKinds
)

func (k listenerKind) String() string {
	if k == kindUnix {
		return "unix"
	}
	return "network"
}

// kindOf classifies a listener by its address.
func kindOf(l net.Listener) listenerKind {
	if l.Addr().Network() == "unix" {
		return kindUnix
	}
	return kindNetwork
}

// kindCount is one kind of listener's connections; guarded by Server.mu.
type kindCount struct {
	open    int // connections, signed in or not
	pending int // connections not signed in yet
}

// Stats counts what the server's limits did since it started.
type Stats struct {
	// RefusedFull: connections refused at MaxSessions.
	RefusedFull uint64
	// RefusedPending: connections refused at MaxPending.
	RefusedPending uint64
	// FailedSignIns: sign-ins the authenticator refused.
	FailedSignIns uint64
	// ThrottledSignIns: sign-ins refused without trying because their
	// source failed too often.
	ThrottledSignIns uint64
}

// counters holds the live [Stats].
type counters struct {
	refusedFull, refusedPending, failed, throttled atomic.Uint64
}

// Stats reports what the server's limits did since it started.
func (srv *Server) Stats() Stats {
	return Stats{
		RefusedFull:      srv.stats.refusedFull.Load(),
		RefusedPending:   srv.stats.refusedPending.Load(),
		FailedSignIns:    srv.stats.failed.Load(),
		ThrottledSignIns: srv.stats.throttled.Load(),
	}
}

// sourceOf is who sent on c, for the failed sign-in throttle, keyed as
// the MSP server keys its limits (msp.SourceOf): a remote sender's IPv4
// address or IPv6 /64, a local account (as Config.Identify tells), or the
// one source shared by local senders whose account is unknown. Any local
// user may bind any address of 127.0.0.0/8, so counting local senders by
// address would throttle nobody. ok is false for non-IP (Unix) peers,
// which peer credentials identify instead.
func (srv *Server) sourceOf(c net.Conn) (msp.Source, bool) {
	_, k, ok := msp.SourceOf(srv.cfg.Identify, "tcp", c.LocalAddr(), c.RemoteAddr())
	return k, ok
}

// failures remembers, per source, the failed sign-ins as a token bucket:
// each failure takes a token, and a source with none left is refused
// without trying. The table is bounded; mu guards m and lru.
type failures struct {
	every rate.Limit
	burst int

	mu  sync.Mutex
	m   map[msp.Source]*list.Element // of *failure
	lru list.List                    // most recently failed first
}

type failure struct {
	src msp.Source
	lim *rate.Limiter
}

func newFailures(every rate.Limit, burst int) *failures {
	return &failures{every: every, burst: burst, m: make(map[msp.Source]*list.Element)}
}

// blocked reports whether src has used up its failures.
func (f *failures) blocked(src msp.Source) bool {
	if f.every <= 0 {
		return false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	e, ok := f.m[src]
	return ok && e.Value.(*failure).lim.Tokens() < 1
}

// failed records one failed sign-in from src.
func (f *failures) failed(src msp.Source) {
	if f.every <= 0 {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	e, ok := f.m[src]
	if !ok {
		if len(f.m) >= maxFailureSources {
			old := f.lru.Back()
			f.lru.Remove(old)
			delete(f.m, old.Value.(*failure).src)
		}
		e = f.lru.PushFront(&failure{src: src, lim: rate.NewLimiter(f.every, f.burst)})
		f.m[src] = e
	} else {
		f.lru.MoveToFront(e)
	}
	e.Value.(*failure).lim.Allow()
}
