// Package sockowner tells which local account owns the socket a message
// came from, when it came from this host: the MSP server asks it once per
// TCP connection and once per UDP datagram, and the answer keys the limits
// (one local user is one source, however many loopback addresses she binds)
// and may verify the message's sender.
//
// The kernel is asked with NETLINK_SOCK_DIAG (inet_diag), as identd does,
// with the kernel's exact lookup for TCP and a dump filtered in the kernel
// for UDP (see socketUID). The netlink socket is driven with plain system
// calls on buffers the Resolver keeps, and the inet_diag request, filter
// and replies are encoded here, so that a lookup allocates nothing: the
// server asks once per local datagram. (github.com/mdlayher/netlink, used
// before, cost over a hundred allocations and a trip through the runtime
// poller per UDP lookup; github.com/vishvananda/netlink sends the 4-tuple
// as a dump the kernel filters by port only, cannot find an unconnected
// UDP sender, and pulls in a network-namespace package this relay has no
// use for.)
//
// "Local" is 127.0.0.0/8, ::1 and this host's interface addresses, which a
// [Resolver] re-reads at most every Config.AddrRefresh. Where the lookup is
// impossible (no netlink, another host's address, the socket gone, a UDP
// port shared by sockets of different users) the owner is unknown: the
// caller treats the sender as unverified and, for limits, as the one
// shared bucket of unidentified local senders.
//
// Caching: none here. A TCP connection's owner cannot change, so the MSP
// server asks once when it accepts the connection and keeps the answer
// with the connection. A UDP answer is not kept at all: UDP has no
// TIME_WAIT, so the moment a sender closes its socket another user may
// bind the same address and port, and a remembered (address, port) → user
// would pass her datagrams off as the first user's for as long as it was
// remembered. A lookup costs a netlink round trip of microseconds, paid
// only for datagrams from this host. Account names (uid → login name) are
// cached, bounded by Config.MaxNames and refreshed after Config.NameTTL.
//
// Cost: a lookup is one netlink round trip for TCP (a write and a read,
// microseconds) and two for UDP (a write and two reads each, once per
// address family; tens of microseconds, as each dump walks the kernel's
// whole UDP hash table however narrow its filter), on a socket the
// Resolver keeps open, with no allocation. The MSP server asks on its accept and UDP read
// loops, so a local flood of fresh sockets could otherwise make those
// loops slow for every sender, remote ones included: past
// Config.LookupRate lookups a second the Resolver stops asking and calls
// the sender local and unknown, which puts the flood in the one shared
// bucket of unnamed local senders while remote senders keep their pace.
//
// A Resolver has no goroutines; it holds one netlink socket, opened on
// first use and closed by Close. It is safe for concurrent use.
package sockowner

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"os/user"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Errors of [SocketUID].
var (
	// ErrUnsupported: this host cannot be asked (not Linux, or netlink
	// sock_diag is not available to this process).
	ErrUnsupported = errors.New("sockowner: socket owner lookup not supported here")
	// ErrNotFound: no socket on this host matches; it is gone, or the
	// address is not this host's.
	ErrNotFound = errors.New("sockowner: no such socket")
	// ErrAmbiguous: sockets of more than one user could have sent the
	// datagram (a port shared with SO_REUSEADDR).
	ErrAmbiguous = errors.New("sockowner: sending socket is ambiguous")
)

// Defaults for the zero fields of [Config].
const (
	// DefaultAddrRefresh is how long this host's interface addresses are
	// trusted before they are read again: an address added since is seen
	// within it; until then its senders count as remote (per address).
	DefaultAddrRefresh = 10 * time.Second
	// DefaultNameTTL is how long a uid's login name is remembered.
	DefaultNameTTL = time.Minute
	// DefaultMaxNames bounds the uid → name cache.
	DefaultMaxNames = 4096
	// DefaultLookupRate is how many lookups a second a Resolver makes, at
	// most: far above what people sending messages from one host need,
	// far below what would keep a server's read loop busy.
	DefaultLookupRate = 2000
	// DefaultLookupBurst is how many lookups may come at once before
	// DefaultLookupRate applies.
	DefaultLookupBurst = 500
)

// Owner is what the kernel says about a sender. Its fields are those of
// msp.Peer, so that one converts to the other.
type Owner struct {
	// Local: the sender's address is one of this host's own.
	Local bool
	// Known: the owner was found; UID and User are valid.
	Known bool
	// UID is the socket owner's numeric user id.
	UID uint32
	// User is that account's login name ("" when it has none).
	User string
}

// Config configures a [Resolver]; the zero value is ready to use.
type Config struct {
	// Logger receives why a lookup failed, at debug level; nil discards.
	Logger *slog.Logger
	// AddrRefresh: see DefaultAddrRefresh; zero means the default.
	AddrRefresh time.Duration
	// NameTTL: see DefaultNameTTL; zero means the default.
	NameTTL time.Duration
	// MaxNames: see DefaultMaxNames; zero means the default.
	MaxNames int
	// LookupRate: see DefaultLookupRate; zero means the default, negative
	// no limit.
	LookupRate float64
	// LookupBurst: see DefaultLookupBurst; zero means the default.
	LookupBurst int
}

// Resolver answers "who owns the socket this came from" for local senders.
type Resolver struct {
	log      *slog.Logger
	refresh  time.Duration
	nameTTL  time.Duration
	maxNames int
	lookups  *rate.Limiter // nil: no limit; has its own lock
	ask      diagClient    // the netlink socket; has its own lock

	mu      sync.Mutex            // guards the fields below
	addrs   map[netip.Addr]bool   // this host's interface addresses, unmapped
	addrsAt time.Time             // when addrs was read; zero: never
	names   map[uint32]cachedName // uid → login name, at most maxNames
}

type cachedName struct {
	name string
	at   time.Time
}

// New makes a Resolver; it starts nothing and opens nothing.
func New(cfg Config) *Resolver {
	r := &Resolver{
		log:      cfg.Logger,
		refresh:  cfg.AddrRefresh,
		nameTTL:  cfg.NameTTL,
		maxNames: cfg.MaxNames,
		names:    make(map[uint32]cachedName),
	}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	if r.refresh <= 0 {
		r.refresh = DefaultAddrRefresh
	}
	if r.nameTTL <= 0 {
		r.nameTTL = DefaultNameTTL
	}
	if r.maxNames <= 0 {
		r.maxNames = DefaultMaxNames
	}
	if cfg.LookupRate >= 0 {
		every, burst := rate.Limit(cfg.LookupRate), cfg.LookupBurst
		if every == 0 {
			every = DefaultLookupRate
		}
		if burst <= 0 {
			burst = DefaultLookupBurst
		}
		r.lookups = rate.NewLimiter(every, burst)
	}
	return r
}

// Close closes the Resolver's netlink socket; Lookup then finds nobody.
// It is idempotent.
func (r *Resolver) Close() error { return r.ask.close() }

// Lookup says who sent to server from sender over network ("tcp" or
// "udp"): the zero Owner for a sender on another host, Local alone when
// the sender is on this host but its socket's owner cannot be told.
func (r *Resolver) Lookup(network string, server, sender netip.AddrPort) Owner {
	if !r.IsLocal(sender.Addr()) {
		return Owner{}
	}
	if r.lookups != nil && !r.lookups.Allow() {
		if r.log.Enabled(context.Background(), slog.LevelDebug) { // the arguments cost allocations
			r.log.Debug("sockowner: over the lookup rate, local sender not identified", "network", network, "sender", sender.String())
		}
		return Owner{Local: true}
	}
	uid, err := r.ask.socketUID(network, server, sender)
	if err != nil {
		if r.log.Enabled(context.Background(), slog.LevelDebug) {
			r.log.Debug("sockowner: local sender not identified", "network", network, "sender", sender.String(), "err", err)
		}
		return Owner{Local: true}
	}
	return Owner{Local: true, Known: true, UID: uid, User: r.name(uid)}
}

// IsLocal reports whether a is an address of this host: loopback, or one
// of its interface addresses as last read.
func (r *Resolver) IsLocal(a netip.Addr) bool {
	a = a.Unmap()
	if !a.IsValid() {
		return false
	}
	if a.IsLoopback() {
		return true
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if now := time.Now(); r.addrsAt.IsZero() || now.Sub(r.addrsAt) >= r.refresh {
		r.addrs = interfaceAddrs(r.log)
		r.addrsAt = now
	}
	return r.addrs[a]
}

// interfaceAddrs reads this host's addresses; on failure, none (so senders
// count as remote, per address, rather than sharing one local bucket).
func interfaceAddrs(log *slog.Logger) map[netip.Addr]bool {
	list, err := net.InterfaceAddrs()
	if err != nil {
		log.Warn("sockowner: reading interface addresses", "err", err)
		return nil
	}
	m := make(map[netip.Addr]bool, len(list))
	for _, ia := range list {
		if n, ok := ia.(*net.IPNet); ok {
			if a, ok := netip.AddrFromSlice(n.IP); ok {
				m[a.Unmap()] = true
			}
		}
	}
	return m
}

// name is uid's login name, "" when the account has none; cached.
func (r *Resolver) name(uid uint32) string {
	now := time.Now()
	r.mu.Lock()
	if c, ok := r.names[uid]; ok && now.Sub(c.at) < r.nameTTL {
		r.mu.Unlock()
		return c.name
	}
	r.mu.Unlock()
	var name string
	if u, err := user.LookupId(strconv.FormatUint(uint64(uid), 10)); err == nil {
		name = u.Username
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.names[uid]; !ok && len(r.names) >= r.maxNames {
		for k := range r.names { // drop any one: the bound matters, not which
			delete(r.names, k)
			break
		}
	}
	r.names[uid] = cachedName{name: name, at: now}
	return name
}
