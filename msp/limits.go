package msp

import (
	"container/list"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// Defaults for the per-source limits of [Server]. A source is who sends:
// for a sender on another host, its IPv4 address or IPv6 /64 (one
// subscriber usually holds a whole /64, so counting single IPv6 addresses
// would limit nothing); for a sender on this host, the local account that
// owns its socket, as [Server.Identify] tells, and one source shared by
// every local sender it cannot tell. Any local user may bind any of the 16
// million addresses of 127.0.0.0/8, so counting local senders by address
// would limit nothing either.
const (
	// DefaultMaxConnsPerIP caps one source's TCP connections, so that one
	// host cannot take the whole of MaxConns.
	DefaultMaxConnsPerIP = 32
	// DefaultRatePerIP is the sustained number of messages a second one
	// source may send, TCP and UDP together. A person types far slower; a
	// script sending to a few people fits in the burst.
	DefaultRatePerIP = 20
	// DefaultRateBurst is how many messages one source may send at once
	// before DefaultRatePerIP applies.
	DefaultRateBurst = 100
	// DefaultMaxSources bounds the table of per-source state; sources with
	// no connection are forgotten, least recently seen first, past it.
	DefaultMaxSources = 65536
	// DefaultStallGrace is how long a message may be under way before its
	// connection counts as stalled: at MaxConns with no idle connection,
	// the connection stalled longest is closed to admit a new one.
	DefaultStallGrace = 2 * time.Second
)

// rateLimitedReply is sent over TCP for a message past the source's rate.
const rateLimitedReply = "too many messages from your address, slow down"

// perIPReply is sent to a connection past MaxConnsPerIP.
const perIPReply = "-too many connections from your address\x00"

// Stats counts what the server's limits did since it started.
type Stats struct {
	// RefusedBusy: connections refused at MaxConns with none evictable.
	RefusedBusy uint64
	// RefusedPerIP: connections refused at MaxConnsPerIP.
	RefusedPerIP uint64
	// EvictedIdle: idle connections closed to admit a new one at MaxConns.
	EvictedIdle uint64
	// EvictedStalled: connections whose message was under way longer than
	// StallGrace, closed to admit a new one at MaxConns.
	EvictedStalled uint64
	// RateLimitedTCP and RateLimitedUDP: messages refused (TCP, with "-")
	// or dropped (UDP, silently) past the source's rate.
	RateLimitedTCP, RateLimitedUDP uint64
	// SourcesForgotten: per-source entries dropped to keep the table within
	// MaxSources.
	SourcesForgotten uint64
}

// counters holds the live [Stats].
type counters struct {
	refusedBusy, refusedPerIP, evictedIdle, evictedStalled atomic.Uint64
	rateTCP, rateUDP, forgotten                            atomic.Uint64
}

// Stats reports what the server's limits did since it started.
func (s *Server) Stats() Stats {
	s.init()
	c := &s.stats
	return Stats{
		RefusedBusy:      c.refusedBusy.Load(),
		RefusedPerIP:     c.refusedPerIP.Load(),
		EvictedIdle:      c.evictedIdle.Load(),
		EvictedStalled:   c.evictedStalled.Load(),
		RateLimitedTCP:   c.rateTCP.Load(),
		RateLimitedUDP:   c.rateUDP.Load(),
		SourcesForgotten: c.forgotten.Load(),
	}
}

// Source names who sends, for per-source limits: a remote IPv4 address
// or IPv6 /64, a local account, or the one bucket of local senders whose
// account is unknown. It is comparable, for map keys.
type Source struct {
	prefix netip.Prefix // a remote sender's address or /64; zero for local senders
	local  bool         // the sender is on this host
	known  bool         // local, and uid is its socket's owner
	uid    uint32
}

// String names the source in logs.
func (k Source) String() string {
	switch {
	case k.known:
		return "local uid " + strconv.FormatUint(uint64(k.uid), 10)
	case k.local:
		return "local, unidentified"
	}
	return k.prefix.String()
}

// localSource is the key of a sender on this host, as Identify told.
func localSource(p Peer) Source {
	if p.Known {
		return Source{local: true, known: true, uid: p.UID}
	}
	return Source{local: true}
}

// identify asks Identify who sent from remote to local and keys the
// sender's limits by it (SourceOf).
func (s *Server) identify(network string, local, remote net.Addr) (p Peer, k Source, ok bool) {
	return SourceOf(s.Identify, network, local, remote)
}

// SourceOf is who sent from remote to local, as the per-source limits of
// this package and of the session server count senders: identify (may be
// nil) names the owner of a local sender's socket. ok is false for
// addresses that are not IP (pipes, Unix sockets), which no such limit
// applies to. Without identify, loopback senders are the one unidentified
// local source.
func SourceOf(identify func(network string, local, remote netip.AddrPort) Peer, network string, local, remote net.Addr) (p Peer, k Source, ok bool) {
	ra, ok := addrPort(remote)
	if !ok {
		return Peer{}, Source{}, false
	}
	la, _ := addrPort(local)
	return sourceOfAddrPort(identify, network, la, ra)
}

// sourceOfAddrPort is SourceOf for addresses already known as address and
// port, as a UDP read loop has them; it allocates nothing.
func sourceOfAddrPort(identify func(network string, local, remote netip.AddrPort) Peer, network string, local, remote netip.AddrPort) (p Peer, k Source, ok bool) {
	k, ok = sourceOfAP(remote)
	if !ok {
		return Peer{}, k, false
	}
	if identify != nil {
		p = identify(network, local, remote)
	} else if remote.Addr().Unmap().IsLoopback() {
		p = Peer{Local: true}
	}
	if p.Local {
		k = localSource(p)
	}
	return p, k, true
}

// sourceOf maps a remote address to its source key by address alone; ok is
// false for addresses that are not IP (tests with pipes), which no limit
// applies to.
func sourceOf(a net.Addr) (Source, bool) {
	ap, ok := addrPort(a)
	if !ok {
		return Source{}, false
	}
	return sourceOfAP(ap)
}

// sourceOfAP is sourceOf for an address and port.
func sourceOfAP(ap netip.AddrPort) (Source, bool) {
	ip := ap.Addr().Unmap()
	if !ip.IsValid() {
		return Source{}, false
	}
	bits := 32
	if ip.Is6() {
		bits = 64
	}
	p, err := ip.Prefix(bits)
	if err != nil {
		return Source{}, false
	}
	return Source{prefix: p}, true
}

// source is one source's state.
type source struct {
	key     Source
	conns   int           // admitted TCP connections; guarded by sources.mu
	limiter *rate.Limiter // nil when the rate limit is off; has its own lock
	elem    *list.Element // in sources.lru; guarded by sources.mu
}

// sources is the bounded per-source table. mu guards byKey, lru and every
// source's conns and elem.
type sources struct {
	max       int
	every     rate.Limit
	burst     int
	forgotten *atomic.Uint64

	mu    sync.Mutex
	byKey map[Source]*source
	lru   list.List // of *source, most recently seen first
}

func newSources(max int, every rate.Limit, burst int, forgotten *atomic.Uint64) *sources {
	return &sources{max: max, every: every, burst: burst, forgotten: forgotten, byKey: make(map[Source]*source)}
}

// getLocked returns k's entry, making it (and forgetting the least recently
// seen sources without a connection if the table is full); the caller holds
// t.mu.
func (t *sources) getLocked(k Source) *source {
	if e, ok := t.byKey[k]; ok {
		t.lru.MoveToFront(e.elem)
		return e
	}
	for el := t.lru.Back(); len(t.byKey) >= t.max && el != nil; {
		prev := el.Prev()
		if old := el.Value.(*source); old.conns == 0 {
			t.lru.Remove(el)
			delete(t.byKey, old.key)
			t.forgotten.Add(1)
		}
		el = prev
	}
	// Entries with connections are at most MaxConns, so a table larger
	// than that always makes room; a smaller one just grows past max.
	e := &source{key: k}
	if t.every > 0 {
		e.limiter = rate.NewLimiter(t.every, t.burst)
	}
	e.elem = t.lru.PushFront(e)
	t.byKey[k] = e
	return e
}

// allow reports whether a message from k is within its rate.
func (t *sources) allow(k Source) bool {
	if t.every <= 0 {
		return true
	}
	t.mu.Lock()
	e := t.getLocked(k)
	t.mu.Unlock()
	return e.limiter.Allow()
}

// addConn counts a connection from k unless k already has max; max <= 0
// means no cap.
func (t *sources) addConn(k Source, max int) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.getLocked(k)
	if max > 0 && e.conns >= max {
		return false
	}
	e.conns++
	return true
}

// dropConn uncounts a connection addConn counted.
func (t *sources) dropConn(k Source) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if e, ok := t.byKey[k]; ok && e.conns > 0 {
		e.conns--
	}
}

// size is the number of sources remembered.
func (t *sources) size() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.byKey)
}
