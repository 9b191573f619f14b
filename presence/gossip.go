package presence

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// GossipConfig configures memberlist gossip. An empty BindAddr means no gossip:
// the directory holds only this node's principals.
type GossipConfig struct {
	BindAddr      string        // host:port for memberlist TCP+UDP; host must be an IP or empty; port 0 picks one
	AdvertiseAddr string        // host:port peers should use, if not BindAddr (port 0: the bound port)
	Join          []string      // seed addresses (host:port), joined at start and re-joined periodically
	Profile       string        // "lan" (default), "wan" or "local": memberlist's presets (local keeps LAN's retransmit count and probes faster, see fastFailureDetection)
	SecretKey     []byte        // AES key (16, 24 or 32 bytes) enabling encryption; every node needs the same key
	RejoinEvery   time.Duration // seed re-join period; zero means 30s, negative disables periodic re-joins

	// Confirm, if set, is a second failure signal (confirm.go): asked
	// about a member (each member is asked about every 250 ms, by one
	// node or another), it says whether that member is gone for certain.
	// Gone, and a memberlist ping the member does not answer, drop its
	// principals before memberlist declares it dead; false or an error
	// means "don't know" and changes nothing. The node package asks NATS
	// whether the member's status subject has a subscriber. It must
	// honour ctx (cancelled after 500 ms). Nil turns the signal off:
	// memberlist alone decides.
	Confirm func(ctx context.Context, node string) (gone bool, err error)

	// Tune, if set, adjusts the memberlist configuration after the profile is
	// applied (tests shorten probe and gossip intervals this way). Name,
	// addresses, key, logger and delegates are set afterwards and cannot be
	// changed here.
	Tune func(*memberlist.Config)
}

// Gossip errors.
var (
	// ErrNameConflict is returned by Run and Join when another live node of the
	// cluster already uses this node's name.
	ErrNameConflict = errors.New("presence: node name already in use in the cluster")
	// ErrNotRunning is returned by Join before Run has started gossip.
	ErrNotRunning = errors.New("presence: gossip not running")
)

// DefaultProfile is the gossip profile an empty GossipConfig.Profile means.
const DefaultProfile = "lan"

// DefaultRejoinEvery is the seed re-join period when GossipConfig.RejoinEvery is zero.
const DefaultRejoinEvery = 30 * time.Second

// maxQueuedBroadcasts bounds the outgoing change queue; changes pruned from it
// reach peers through the digest and a pull instead.
const maxQueuedBroadcasts = 4096

// maxPending bounds the out-of-order changes buffered per origin.
const maxPending = 256

// gossip runs memberlist for a Directory: it owns the memberlist instance
// and four goroutines (seed re-joins, metadata refresh, pulls and replies,
// sending deltas), with Confirm a fifth and its checks (confirm.go),
// started by start and ended and waited for by stop. It is also the
// memberlist delegate (delegate.go); the table logic is in sync.go.
type gossip struct {
	d    *Directory
	log  *slog.Logger
	self string
	key  ed25519.PrivateKey // this boot's key: signs our changes and tables (sign.go)
	mlc  *memberlist.Config
	q    *memberlist.TransmitLimitedQueue

	seeds        []string
	rejoinEvery  time.Duration
	grace        time.Duration // wait after a gap or newer digest before pulling; also the retry unit
	metaEvery    time.Duration // minimum spacing of metadata (digest) refreshes
	leaveTimeout time.Duration
	maxBroadcast int // larger changes are not broadcast; peers pull them

	numAlive atomic.Int64 // members known alive, this node included; sizes retransmits

	// lifeMu guards ml, started and stopped. quit is closed by stop.
	lifeMu  sync.Mutex
	ml      *memberlist.Memberlist
	started bool
	stopped bool
	quit    chan struct{}
	wg      sync.WaitGroup // the goroutines started by start
	fatal   chan error     // a refusal that ends Run (buffered 1)

	kickMeta chan struct{} // local table changed (buffered 1)
	kickWork chan struct{} // a pull or reply is due (buffered 1)

	confirm *confirmer // the second failure signal (confirm.go); nil without GossipConfig.Confirm

	// mu guards peers, gone, replyTo, joined, joining and selfConflict.
	// Lock order: memberlist's internal lock, then mu, then Directory.mu
	// (or confirmer.mu).
	mu           sync.Mutex
	peers        map[string]*peer           // live members, this node included
	gone         map[string]memberlist.Node // members dropped on a confirmation, until memberlist decides (confirm.go)
	replyTo      map[string]struct{}        // nodes that asked for our table
	joined       bool                       // we have been in a cluster with another node
	joining      int                        // joins in progress
	selfConflict string                     // address of another node with our name, seen during a join

	// outMu guards out, outEpoch, outBase and outTo: this node's changes
	// not yet sent as deltas (delta.go). Lock order: Directory.mu, then
	// outMu; nothing is taken while holding it.
	outMu        sync.Mutex
	out          map[entryKey]outItem // latest queued change per (user, term)
	outEpoch     uint64               // our boot
	outBase      uint64               // the version out's changes apply to
	outTo        uint64               // the version after them
	kickFlush    chan struct{}        // out has changes (buffered 1)
	flushDelay   time.Duration        // how long a window collects changes
	resendDelay  time.Duration        // when the last window of a burst is sent again
	flushSpacing time.Duration        // least time between two windows

	// Test hooks and counters.
	dropChanges   atomic.Bool  // ignore incoming change broadcasts and deltas
	pullsSent     atomic.Int64 // full-table pull requests sent
	deltasSent    atomic.Int64 // deltas sent (each to every peer)
	outDropped    atomic.Int64 // windows dropped for size (peers pull instead)
	confirmChecks atomic.Int64 // Confirm checks started (confirm.go)
}

func newGossip(d *Directory, cfg GossipConfig) (*gossip, error) {
	var mlc *memberlist.Config
	switch cfg.Profile {
	case "", DefaultProfile:
		// Memberlist's LAN failure detection stays (about 5-7 s at 30
		// nodes): fastFailureDetection measured 7 times the false deaths
		// of this preset on a starved machine (issue 22; docs/BENCHMARKS.md).
		mlc = memberlist.DefaultLANConfig()
	case "wan":
		mlc = memberlist.DefaultWANConfig()
	case "local":
		mlc = memberlist.DefaultLocalConfig()
		// Memberlist's local preset halves the retransmissions of membership
		// updates; measured with 10 nodes, joiners then often stayed unknown
		// to some members until the next push-pull (15 s), and a member's
		// principals are ignored until it is known. Keep LAN's redundancy.
		mlc.RetransmitMult = memberlist.DefaultLANConfig().RetransmitMult
		fastFailureDetection(mlc)
	default:
		return nil, fmt.Errorf("presence: gossip profile %q: want lan, wan or local", cfg.Profile)
	}
	if cfg.Tune != nil {
		cfg.Tune(mlc)
	}
	host, port, err := splitAddr(cfg.BindAddr)
	if err != nil {
		return nil, fmt.Errorf("presence: gossip bind address %q: %w", cfg.BindAddr, err)
	}
	if host == "" {
		host = "0.0.0.0"
	}
	mlc.BindAddr, mlc.BindPort = host, port
	mlc.AdvertiseAddr, mlc.AdvertisePort = "", port
	if cfg.AdvertiseAddr != "" {
		ahost, aport, err := splitAddr(cfg.AdvertiseAddr)
		if err != nil || ahost == "" {
			return nil, fmt.Errorf("presence: gossip advertise address %q: want ip:port", cfg.AdvertiseAddr)
		}
		if aport == 0 {
			aport = port
		}
		mlc.AdvertiseAddr, mlc.AdvertisePort = ahost, aport
	}
	for _, s := range cfg.Join {
		if _, _, err := net.SplitHostPort(s); err != nil {
			return nil, fmt.Errorf("presence: gossip seed %q: %w", s, err)
		}
	}
	if n := len(cfg.SecretKey); n != 0 {
		if n != 16 && n != 24 && n != 32 {
			return nil, fmt.Errorf("presence: gossip key is %d bytes: want 16, 24 or 32", n)
		}
		mlc.SecretKey = slices.Clone(cfg.SecretKey)
	}
	if mlc.GossipInterval <= 0 {
		return nil, fmt.Errorf("presence: gossip interval %v must be positive", mlc.GossipInterval)
	}
	_, key, err := ed25519.GenerateKey(nil)
	if err != nil {
		return nil, fmt.Errorf("presence: gossip signing key: %w", err)
	}
	g := &gossip{
		key:          key,
		d:            d,
		log:          d.log.With("part", "gossip"),
		self:         d.cfg.Name,
		mlc:          mlc,
		seeds:        slices.Clone(cfg.Join),
		rejoinEvery:  cfg.RejoinEvery,
		grace:        5 * mlc.GossipInterval,
		metaEvery:    5 * mlc.GossipInterval,
		leaveTimeout: max(20*mlc.GossipInterval, time.Second),
		maxBroadcast: mlc.UDPBufferSize / 2,
		quit:         make(chan struct{}),
		fatal:        make(chan error, 1),
		kickMeta:     make(chan struct{}, 1),
		kickWork:     make(chan struct{}, 1),
		kickFlush:    make(chan struct{}, 1),
		flushDelay:   mlc.GossipInterval / 5,
		flushSpacing: mlc.GossipInterval / 2,
		resendDelay:  mlc.GossipInterval,
		out:          map[entryKey]outItem{},
		peers:        map[string]*peer{},
		gone:         map[string]memberlist.Node{},
		replyTo:      map[string]struct{}{},
	}
	if g.rejoinEvery == 0 {
		g.rejoinEvery = DefaultRejoinEvery
	}
	g.q = &memberlist.TransmitLimitedQueue{
		// Our own count, not memberlist's NumMembers: that takes memberlist's
		// node lock, and we queue while holding Directory.mu.
		NumNodes:       func() int { return max(1, int(g.numAlive.Load())) },
		RetransmitMult: mlc.RetransmitMult,
	}
	mlc.Name = d.cfg.Name
	mlc.Delegate = g
	mlc.Events = g
	mlc.Conflict = g
	mlc.Merge = g
	mlc.LogOutput = nil
	if cfg.Confirm != nil {
		g.confirm = newConfirmer(cfg.Confirm)
	}
	mlc.Logger = log.New(slogWriter{d.log.With("library", "memberlist")}, "", 0)
	return g, nil
}

// Failure detection of the local profile (issue 22: "crash detection
// <= 3 s without false positives under load"). Not yet lan's: see
// newGossip.
const (
	probeInterval = 400 * time.Millisecond
	probeTimeout  = 200 * time.Millisecond
	suspicionMult = 3
)

// fastFailureDetection tightens memberlist's probing so that a crashed
// node's users go offline within about 3 s at 30-100 nodes. A dead member
// is declared after a failed probe (probeTimeout, then indirect probes
// until the end of the probe interval) and a suspicion timeout of
// suspicionMult*log10(n)*probeInterval once one other member confirms the
// suspicion: 1.8 s at 30 nodes, 2.4 s at 100, where memberlist's LAN
// preset (1 s, 500 ms, 4) waited 5.9 s and 8 s. Without confirmations the
// timeout stays at SuspicionMaxTimeoutMult (6) times that, which is what
// gives a slow but live member time to refute; its refutation travels by
// gossip (200 ms rounds). On a LAN a probe answers in well under a
// millisecond, so a 200 ms timeout fails only a member that is stalled,
// and memberlist's awareness stretches a member's own timeouts while it is
// the slow one.
func fastFailureDetection(c *memberlist.Config) {
	c.ProbeInterval = probeInterval
	c.ProbeTimeout = probeTimeout
	c.SuspicionMult = suspicionMult
}

// splitAddr parses host:port where host is empty or an IP literal.
func splitAddr(s string) (string, int, error) {
	host, ps, err := net.SplitHostPort(s)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.ParseUint(ps, 10, 16)
	if err != nil {
		return "", 0, fmt.Errorf("port %q: %w", ps, err)
	}
	if host != "" && net.ParseIP(host) == nil {
		return "", 0, fmt.Errorf("host %q is not an IP address", host)
	}
	return host, int(port), nil
}

// start creates the memberlist (binding its sockets) and the gossip
// goroutines. The first seed join runs in the re-join goroutine, which
// reports a name conflict on g.fatal.
func (g *gossip) start() error {
	g.lifeMu.Lock()
	defer g.lifeMu.Unlock()
	switch {
	case g.stopped:
		return ErrClosed
	case g.started:
		return errors.New("presence: gossip started twice")
	}
	return g.startLocked()
}

// startOnce starts gossip unless it was started before.
func (g *gossip) startOnce() error {
	g.lifeMu.Lock()
	defer g.lifeMu.Unlock()
	switch {
	case g.stopped:
		return ErrClosed
	case g.started:
		return nil
	}
	return g.startLocked()
}

// startLocked does the work of start; lifeMu must be held.
func (g *gossip) startLocked() error {
	g.started = true
	ml, err := memberlist.Create(g.mlc)
	if err != nil {
		return fmt.Errorf("presence: starting gossip on %s:%d: %w", g.mlc.BindAddr, g.mlc.BindPort, err)
	}
	g.ml = ml
	g.log.Info("gossip started", "addr", g.localAddr(), "seeds", g.seeds)
	g.wg.Add(4)
	go g.rejoinLoop(ml)
	go g.metaLoop(ml)
	go g.workLoop(ml)
	go g.flushLoop(ml)
	if g.confirm != nil {
		g.wg.Add(1)
		go g.confirmLoop(ml)
	}
	return nil
}

// stop ends the goroutines, leaves the cluster gracefully when leave is set
// (otherwise peers find out by probing: the tests' "crash"), and shuts
// memberlist down. It is idempotent.
func (g *gossip) stop(leave bool) error {
	g.lifeMu.Lock()
	defer g.lifeMu.Unlock()
	if g.stopped {
		return nil
	}
	g.stopped = true
	close(g.quit)
	g.wg.Wait()
	if g.ml == nil {
		return nil
	}
	if leave {
		// A leave nobody acknowledged in time (the last member, or peers
		// that are gone) is no failure of this node: the others, if any,
		// find out by probing. Issue 20: a clean shutdown of the last
		// member was logged as ERROR "node failed".
		if lerr := g.ml.Leave(g.leaveTimeout); lerr != nil {
			g.log.Warn("left the cluster without confirmation; peers will notice by probing", "err", lerr)
		}
	}
	if err := g.ml.Shutdown(); err != nil {
		return fmt.Errorf("presence: stopping gossip: %w", err)
	}
	return nil
}

// memberlist returns the running memberlist, or nil before start and after stop.
func (g *gossip) memberlist() *memberlist.Memberlist {
	g.lifeMu.Lock()
	defer g.lifeMu.Unlock()
	if g.stopped {
		return nil
	}
	return g.ml
}

// join pushes and pulls full state with each address. It reports
// ErrNameConflict if a contacted cluster already has a live node by our name.
func (g *gossip) join(ml *memberlist.Memberlist, addrs []string) (int, error) {
	self := g.localAddr()
	addrs = slices.DeleteFunc(slices.Clone(addrs), func(a string) bool { return a == self })
	if len(addrs) == 0 {
		return 0, nil
	}
	g.mu.Lock()
	g.joining++
	g.mu.Unlock()
	n, err := ml.Join(addrs)
	g.mu.Lock()
	g.joining--
	other := g.selfConflict
	g.selfConflict = ""
	if n > 0 && other == "" {
		g.joined = true
	}
	g.mu.Unlock()
	if other != "" {
		return 0, fmt.Errorf("%w: %q is held by %s", ErrNameConflict, g.self, other)
	}
	if err != nil {
		return n, fmt.Errorf("presence: joining %v: %w", addrs, err)
	}
	return n, nil
}

// rejoinLoop joins the seeds at once, then again every rejoinEvery, because
// memberlist never probes dead members again: a partition or a seed restart
// would otherwise split the cluster for good. Until a first join succeeds
// it retries sooner, backing off from one second.
func (g *gossip) rejoinLoop(ml *memberlist.Memberlist) {
	defer g.wg.Done()
	if len(g.seeds) == 0 {
		return
	}
	maxBackoff := g.rejoinEvery
	if maxBackoff <= 0 {
		maxBackoff = DefaultRejoinEvery
	}
	backoff := min(time.Second, maxBackoff)
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-g.quit:
			return
		case <-t.C:
		}
		g.mu.Lock()
		joinedBefore := g.joined
		g.mu.Unlock()
		n, err := g.join(ml, g.seeds)
		switch {
		case errors.Is(err, ErrNameConflict) && !joinedBefore:
			g.fatal <- err
			return
		case err != nil && joinedBefore:
			g.log.Warn("re-joining seeds failed", "err", err)
		case err != nil:
			g.log.Warn("joining seeds failed, will retry", "err", err, "retry", backoff)
		default:
			g.log.Debug("joined seeds", "contacted", n)
		}
		wait := g.rejoinEvery
		if !joinedBefore && err != nil {
			wait = backoff
			backoff = min(2*backoff, maxBackoff)
		} else if wait < 0 {
			return
		}
		t.Reset(wait)
	}
}

// metaLoop refreshes this node's digest in its memberlist metadata after
// local changes, at most once per metaEvery. Memberlist relays metadata to
// every member, so a peer that missed a broadcast learns it is behind.
func (g *gossip) metaLoop(ml *memberlist.Memberlist) {
	defer g.wg.Done()
	t := time.NewTimer(0)
	defer t.Stop()
	<-t.C
	for {
		select {
		case <-g.quit:
			return
		case <-g.kickMeta:
		}
		t.Reset(g.metaEvery) // collect a burst of changes into one refresh
		select {
		case <-g.quit:
			return
		case <-t.C:
		}
		if err := ml.UpdateNode(g.metaEvery); err != nil {
			g.log.Debug("metadata refresh not yet acknowledged", "err", err)
		}
	}
}

// localChanged queues a change to this node's table for the next delta
// (delta.go) and a digest refresh. It runs under Directory.mu, so it must
// not block or take g.mu.
func (g *gossip) localChanged(epoch, seq uint64, c change) {
	g.queueLocal(epoch, seq, c)
	select {
	case g.kickMeta <- struct{}{}:
	default:
	}
}

func (g *gossip) queue(msg []byte) {
	g.q.QueueBroadcast(broadcast(msg))
	if g.q.NumQueued() > maxQueuedBroadcasts {
		g.q.Prune(maxQueuedBroadcasts)
	}
}

// broadcast is one queued change message. Each is unique, so none
// invalidates another.
type broadcast []byte

func (b broadcast) Invalidates(memberlist.Broadcast) bool { return false }
func (b broadcast) Message() []byte                       { return b }
func (b broadcast) Finished()                             {}
func (b broadcast) UniqueBroadcast()                      {}

// slogWriter turns memberlist's "[LEVEL] memberlist: text" log lines into
// slog records at the matching level.
type slogWriter struct{ log *slog.Logger }

func (w slogWriter) Write(p []byte) (int, error) {
	msg := strings.TrimSpace(string(p))
	level := slog.LevelInfo
	if rest, ok := strings.CutPrefix(msg, "["); ok {
		if tag, text, ok := strings.Cut(rest, "] "); ok {
			switch tag {
			case "DEBUG", "TRACE":
				level = slog.LevelDebug
			case "WARN":
				level = slog.LevelWarn
			case "ERR", "ERROR":
				level = slog.LevelError
			}
			msg = text
		}
	}
	// memberlist's goroutines may still send while Shutdown closes the
	// sockets; an error that says so is the shutdown, not a failure.
	if level == slog.LevelError && strings.Contains(msg, net.ErrClosed.Error()) {
		level = slog.LevelDebug
	}
	w.log.Log(context.Background(), level, strings.TrimPrefix(msg, "memberlist: "))
	return len(p), nil
}

// Member is one live node of the gossip cluster.
type Member struct {
	Name       string // node name
	Addr       string // gossip address, host:port
	Principals int    // entries in the node's own table, from its digest
	Synced     bool   // this directory holds all of the node's changes its digest announces
}

// GossipAddr returns the address this node gossips on (host:port), or ""
// when gossip is not configured or not running.
func (d *Directory) GossipAddr() string {
	if d.g == nil || d.g.memberlist() == nil {
		return ""
	}
	return d.g.localAddr()
}

// localAddr is this node's advertised address. It reads the copy of our own
// node that memberlist handed to NotifyJoin during Create: the *Node values
// memberlist returns from LocalNode and Members are updated in place under
// its lock, so reading them is a data race.
func (g *gossip) localAddr() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	if p := g.peers[g.self]; p != nil {
		return p.node.Address()
	}
	return ""
}

// Members returns the live members of the gossip cluster, this node
// included, sorted by name; nil when gossip is not running. Memberlist does
// not tell delegates about suspicion, so a member stays listed until it is
// declared dead or leaves, or (with GossipConfig.Confirm) until both
// failure signals say it is gone.
func (d *Directory) Members() []Member {
	if d.g == nil || d.g.memberlist() == nil {
		return nil
	}
	g := d.g
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([]Member, 0, len(g.peers))
	for name, p := range g.peers {
		m := Member{Name: name, Addr: p.node.Address(), Principals: int(p.digest.count), Synced: true}
		if name == g.self {
			m.Principals = int(d.localDigest().count)
		} else {
			m.Synced = !g.behind(name, p)
		}
		out = append(out, m)
	}
	slices.SortFunc(out, func(a, b Member) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Join joins the cluster through the given gossip addresses now, in addition
// to the configured seeds, exchanging full state with each. It returns the
// number of addresses contacted; an error only if none could be.
func (d *Directory) Join(addrs ...string) (int, error) {
	if d.g == nil {
		return 0, ErrNotRunning
	}
	ml := d.g.memberlist()
	if ml == nil {
		return 0, ErrNotRunning
	}
	return d.g.join(ml, addrs)
}
