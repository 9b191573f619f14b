package switchboard

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/msprelay/msprelay/msp"
	"github.com/msprelay/msprelay/presence"
	"github.com/msprelay/msprelay/principal"
)

// Defaults for the zero fields of Config.
const (
	DefaultActivityEvery  = 10 * time.Second
	DefaultForwardTimeout = 2 * time.Second
	DefaultDedupWindow    = 5 * time.Minute
	DefaultMaxServing     = 256
	// DefaultStoreTimeout bounds one store operation of a Mailbox; package
	// mailbox uses it as its own default too.
	DefaultStoreTimeout = 2 * time.Second
)

// Config configures a Switchboard.
type Config struct {
	// Node is this node's name; empty means the directory's name, and
	// anything else must equal it.
	Node string
	// Directory is the presence directory; required. The switchboard writes
	// this node's entries into it as lines sign in, change and sign out.
	Directory *presence.Directory
	// Logger receives the switchboard's logs; nil means slog.Default().
	Logger *slog.Logger
	// ActivityEvery rate-limits LastActive updates from Touch so that a chatty
	// user does not turn every keystroke into a gossip broadcast. Zero means
	// DefaultActivityEvery.
	ActivityEvery time.Duration
	// Now returns the current time (sign-in and activity stamps, the
	// recent-id window); nil means time.Now. Tests pass a clock they step.
	Now func() time.Time
	// NATS connects this node to the others. Nil means a single node: entries
	// of other nodes fail with ErrNodeDown. The caller owns the connection.
	NATS *nats.Conn
	// ForwardTimeout bounds one request to another node. Zero means
	// DefaultForwardTimeout.
	ForwardTimeout time.Duration
	// AckTimeout bounds how long a delivery to an acknowledging client
	// (AckTerminal) waits for its acknowledgement before the message goes
	// back to the mailbox. It must leave the node time to answer within
	// the ingress node's ForwardTimeout. Zero means ForwardTimeout/2.
	AckTimeout time.Duration
	// DedupWindow is how long this node remembers the ids of messages it
	// delivered to its lines, so that repeats are delivered once. Zero
	// means DefaultDedupWindow.
	DedupWindow time.Duration
	// MaxServing bounds how many deliveries from other nodes this node
	// handles at once (each may wait up to AckTimeout for a client).
	// Zero means DefaultMaxServing.
	MaxServing int
	// Mailbox keeps messages for known users that no terminal took; nil
	// means none: users who are not signed in are refused as "not signed
	// in", and nothing is recorded. The caller owns it (starts and closes
	// it; close it after the switchboard, whose Close signs lines out).
	Mailbox Mailbox
	// Offline is what happens to messages for known users that no
	// terminal took, given a Mailbox; "" means OfflineQueue.
	Offline OfflinePolicy
	// StoreTimeout is how long one Mailbox operation may take, for waits
	// that include one (a repeat waits AckTimeout+StoreTimeout for the
	// first attempt, which may requeue). Zero means DefaultStoreTimeout.
	StoreTimeout time.Duration
	// PeersAuthenticated says that NATS authenticates every node and lets
	// each publish deliveries only under its own name (per-node users, see
	// broker.NodePermissions). Only then does a delivery from another node
	// keep the sender identity that node vouches for itself (never one it
	// passes on in another node's name); otherwise every delivery from
	// another node arrives unverified.
	PeersAuthenticated bool
	// Observer, when set, is called with every Send's delivery and final
	// outcome (after the mailbox had its say), on the sending goroutine,
	// with Send's context. It must not block or modify either; the node
	// uses it for metrics and delivery logs.
	Observer func(ctx context.Context, d *Delivery, o *Outcome)

	// ConsoleAllowed says who may sign in at terminal "console" (the
	// terminal an empty RECIPIENT and RECIP-TERM reach), given a canonical
	// user name; nil means root only. Host logins (LoginTerminal) are
	// exempt: the host, not the user, says where they are.
	ConsoleAllowed func(user string) bool
	// InboundRate is how many messages a second one line takes live,
	// sustained, and InboundBurst how many at once; messages over it go
	// to the user's mailbox, which hands them on at that rate (see
	// inbound.go). Zero means DefaultInboundRate and DefaultInboundBurst;
	// a negative InboundRate turns the limit off.
	InboundRate  float64
	InboundBurst int
	// Rooms takes the messages whose RECIPIENT starts with '#' (rooms.go);
	// nil means there are no rooms, and such a RECIPIENT is routed like
	// any other.
	Rooms Rooms
}

// Errors from sign-in and line operations.
var (
	ErrClosed    = errors.New("switchboard: closed")
	ErrNameTaken = errors.New("name in use")
	ErrSignedOut = errors.New("switchboard: line signed out")
)

// Switchboard routes deliveries and keeps the registry of this node's lines.
type Switchboard struct {
	cfg Config
	dir *presence.Directory
	log *slog.Logger

	now    func() time.Time
	mbox   Mailbox     // Config.Mailbox, or noMailbox
	fed    *federation // nil without NATS
	recent *recentIDs
	// ackChans holds idle acknowledgement channels (ackChan), each empty.
	ackChans sync.Pool

	closeDone chan struct{} // closed when the first Close has finished

	// mu guards lines, perUser and closed.
	mu      sync.Mutex
	lines   map[lineKey]*Line
	perUser map[string]int // canonical user -> number of lines
	closed  bool
}

type lineKey struct{ user, term string } // canonical user, folded term

func keyFor(user, term string) lineKey {
	return lineKey{principal.CanonicalUser(user), principal.CanonicalUser(term)}
}

// New validates cfg and builds a Switchboard. It starts nothing.
func New(cfg Config) (*Switchboard, error) {
	if cfg.Directory == nil {
		return nil, errors.New("switchboard: Config.Directory is required")
	}
	if cfg.Node == "" {
		cfg.Node = cfg.Directory.Name()
	}
	if cfg.Node != cfg.Directory.Name() {
		return nil, fmt.Errorf("switchboard: node %q does not match directory %q", cfg.Node, cfg.Directory.Name())
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if err := cfg.checkNumbers(); err != nil {
		return nil, err
	}
	if cfg.ActivityEvery == 0 {
		cfg.ActivityEvery = DefaultActivityEvery
	}
	if cfg.ForwardTimeout == 0 {
		cfg.ForwardTimeout = DefaultForwardTimeout
	}
	if cfg.AckTimeout == 0 {
		cfg.AckTimeout = cfg.ForwardTimeout / 2
	}
	if cfg.DedupWindow == 0 {
		cfg.DedupWindow = DefaultDedupWindow
	}
	if cfg.MaxServing == 0 {
		cfg.MaxServing = DefaultMaxServing
	}
	if cfg.StoreTimeout == 0 {
		cfg.StoreTimeout = DefaultStoreTimeout
	}
	if cfg.InboundRate == 0 {
		cfg.InboundRate = DefaultInboundRate
	}
	if cfg.InboundBurst == 0 {
		cfg.InboundBurst = DefaultInboundBurst
	}
	pol, err := ParseOfflinePolicy(string(cfg.Offline))
	if err != nil {
		return nil, err
	}
	cfg.Offline = pol
	mbox := cfg.Mailbox
	if mbox == nil {
		// Nothing can be queued, and nobody is known: users who are not
		// signed in stay "not signed in".
		mbox, cfg.Offline = noMailbox{}, OfflineRefuse
	}
	s := &Switchboard{cfg: cfg, dir: cfg.Directory, log: cfg.Logger, now: cfg.Now, mbox: mbox, closeDone: make(chan struct{}), lines: map[lineKey]*Line{},
		perUser: map[string]int{}, recent: newRecentIDs(cfg.DedupWindow, MaxRecentIDs, cfg.Now)}
	if cfg.NATS != nil {
		s.fed = newFederation(s, cfg.NATS)
	}
	return s, nil
}

// MaxRecentIDs bounds the message ids a node remembers for duplicate
// suppression (for DedupWindow): the recent-id window is full, and its
// memory settled, once this many messages have gone through.
const MaxRecentIDs = 65536

// Start serves this node's deliver subject when NATS is configured, so that
// other nodes can reach its lines, and returns once the subscription is in
// place; Close stops it. Without NATS it does nothing. ctx bounds only the
// start.
func (s *Switchboard) Start(ctx context.Context) error {
	if s.fed == nil {
		return nil
	}
	return s.fed.subscribe(ctx)
}

// Node returns this node's name.
func (s *Switchboard) Node() string { return s.cfg.Node }

// Close stops serving other nodes, waiting for the requests being served,
// signs out every line (their terminals are kicked) and refuses further
// sign-ins. It is idempotent: a second Close waits for the first.
func (s *Switchboard) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		<-s.closeDone
		return nil
	}
	defer close(s.closeDone)
	s.closed = true
	lines := make([]*Line, 0, len(s.lines))
	for _, l := range s.lines {
		lines = append(lines, l)
	}
	s.mu.Unlock()
	if s.fed != nil {
		s.fed.unsubscribe()
	}
	for _, l := range lines {
		l.t.Kick("node shutting down")
		l.SignOut()
	}
	return nil
}

// Line is one signed-in terminal on this node. The session that signed in
// owns it and must call SignOut when its connection ends; a dropped session
// thereby ends its presence.
type Line struct {
	sb   *Switchboard
	key  lineKey
	user string // canonical
	term string // as given
	t    Terminal
	// in is the line's inbound rate, made by the first message (see
	// Line.inbound): most lines of idle users never get one. A limiter
	// starts full, so making it late changes nothing.
	in atomic.Pointer[inbound]

	// mu guards entry and out.
	mu      sync.Mutex
	entry   principal.Entry
	out     bool
	touched time.Time // last LastActive published
}

// SignIn attaches terminal t as user at term in the given state and publishes
// the presence entry. A previous line with the same (user, term) is kicked and
// replaced: the newest sign-in wins, as a reconnecting client expects.
func (s *Switchboard) SignIn(user, term string, state principal.State, t Terminal) (*Line, error) {
	if err := principal.ValidUser(user); err != nil {
		return nil, fmt.Errorf("switchboard: sign in: %w", err)
	}
	if err := principal.ValidTerm(term); err != nil {
		return nil, fmt.Errorf("switchboard: sign in: %w", err)
	}
	if state == principal.Offline {
		state = principal.Online
	}
	if isConsole(term) && kindOf(t) != principal.KindTTY && !s.consoleAllowed(user) {
		return nil, fmt.Errorf("switchboard: sign in %s/%s: %w", user, term, ErrConsoleOnly)
	}
	k := keyFor(user, term)
	now := s.now()
	l := &Line{sb: s, key: k, user: k.user, term: term, t: t, touched: now,
		entry: principal.Entry{User: k.user, Term: term, State: state, Since: now, LastActive: now, Kind: kindOf(t)}}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, ErrClosed
	}
	old := s.lines[k]
	s.lines[k] = l
	if old == nil {
		s.perUser[k.user]++
	}
	s.mu.Unlock()
	if old != nil {
		old.mu.Lock()
		old.out = true
		old.mu.Unlock()
		old.t.Kick("signed in again elsewhere on this terminal")
	}
	if err := s.dir.Upsert(l.entry); err != nil {
		if _, last := s.drop(l); last {
			// Her replaced line's drainer must stop; she is signed out here.
			s.mbox.LineDown(l.seen(principal.Offline), true)
		}
		return nil, fmt.Errorf("switchboard: sign in %s/%s: %w", user, term, err)
	}
	s.log.Info("signed in", "user", k.user, "term", term, "state", state.String())
	s.mbox.LineUp(Seen{User: k.user, Time: now, Node: s.cfg.Node, Term: term, State: state.String(), Hidden: state == principal.Hidden},
		userLines{s: s, user: k.user})
	return l, nil
}

// seen is the known-users record of l entering state st now.
func (l *Line) seen(st principal.State) Seen {
	l.mu.Lock()
	hidden := l.entry.State == principal.Hidden
	l.mu.Unlock()
	return Seen{User: l.user, Time: l.sb.now(), Node: l.sb.cfg.Node, Term: l.term, State: st.String(), Hidden: hidden}
}

// drop removes l from the registry if it is still the registered line;
// last reports that it was the user's last line on this node.
func (s *Switchboard) drop(l *Line) (dropped, last bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.lines[l.key] != l {
		return false, false
	}
	delete(s.lines, l.key)
	s.perUser[l.user]--
	if s.perUser[l.user] <= 0 {
		delete(s.perUser, l.user)
		return true, true
	}
	return true, false
}

// User returns the line's canonical user name.
func (l *Line) User() string { return l.user }

// Term returns the line's terminal name.
func (l *Line) Term() string { return l.term }

// Entry returns the line's current presence entry.
func (l *Line) Entry() principal.Entry {
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.entry
	e.Aliases = append([]string(nil), e.Aliases...)
	e.Node = l.sb.cfg.Node
	return e
}

// SetState changes the line's presence state (Busy makes it refuse messages).
func (l *Line) SetState(st principal.State) error {
	if st == principal.Offline {
		return fmt.Errorf("switchboard: set state: %w", principal.ErrBadState)
	}
	err := l.update(func(e *principal.Entry) error {
		e.State = st
		e.LastActive = l.sb.now()
		return nil
	})
	if err == nil && st != principal.Busy {
		l.sb.mbox.Wake(l.user) // she may take her queued messages now
	}
	return err
}

// SetAliases replaces the extra names this line answers to. Each name it
// does not hold yet is checked (names.go): a reserved name is refused with
// ErrNameReserved; a known user's name (in the directory now, or ever seen
// by the known-users store) or another user's alias anywhere in the
// cluster with ErrNameTaken, in words that do not say who has it or
// whether she is online; ErrNameUnchecked when the store cannot say. The
// aliases are part of the line's presence entry, so they are released
// everywhere when it signs out.
func (l *Line) SetAliases(names []string) error {
	l.mu.Lock()
	held := slices.Clone(l.entry.Aliases)
	l.mu.Unlock()
	for _, n := range names {
		if err := principal.ValidUser(n); err != nil {
			return err
		}
		if slices.Contains(held, principal.CanonicalUser(n)) {
			continue
		}
		if err := l.sb.checkAlias(context.Background(), l.user, n); err != nil {
			return err
		}
	}
	return l.update(func(e *principal.Entry) error {
		e.Aliases = append([]string(nil), names...)
		return nil
	})
}

// Touch records user activity; it decides which terminal "the right terminal"
// is. Updates are published at most once per Config.ActivityEvery.
func (l *Line) Touch() {
	now := l.sb.now()
	l.mu.Lock()
	due := now.Sub(l.touched) >= l.sb.cfg.ActivityEvery
	l.mu.Unlock()
	if !due {
		return
	}
	_ = l.update(func(e *principal.Entry) error {
		e.LastActive = now
		return nil
	})
}

func (l *Line) update(f func(*principal.Entry) error) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.out {
		return ErrSignedOut
	}
	e := l.entry
	e.Aliases = append([]string(nil), e.Aliases...)
	if err := f(&e); err != nil {
		return err
	}
	if err := l.sb.dir.Upsert(e); err != nil {
		return fmt.Errorf("switchboard: update %s/%s: %w", l.user, l.term, err)
	}
	l.entry = e
	l.touched = e.LastActive
	return nil
}

// SignOut detaches the line and removes its presence entry. It is idempotent
// and safe after the line was replaced by a newer sign-in (then it only
// marks this line out).
func (l *Line) SignOut() {
	l.mu.Lock()
	wasOut := l.out
	l.out = true
	l.mu.Unlock()
	if dropped, last := l.sb.drop(l); dropped {
		l.sb.dir.Remove(l.user, l.term)
		l.sb.log.Info("signed out", "user", l.user, "term", l.term)
		l.sb.mbox.LineDown(l.seen(principal.Offline), last)
	} else if !wasOut {
		l.sb.log.Debug("stale line signed out", "user", l.user, "term", l.term)
	}
}

// localLine finds this node's line for (user, term).
func (s *Switchboard) localLine(user, term string) *Line {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lines[keyFor(user, term)]
}

// SplitAddress splits an MSP recipient "user@node" into its parts; a
// recipient without '@' has node "".
func SplitAddress(recipient string) (user, node string) {
	if i := strings.LastIndexByte(recipient, '@'); i >= 0 {
		return recipient[:i], recipient[i+1:]
	}
	return recipient, ""
}

// Send routes d to its target terminals and returns the folded outcome. It
// never returns without an Outcome: faults become Failed results. A message
// for a known user that no terminal took (she is offline, or every target
// failed) is stored in her mailbox when the policy says so, and Send
// returns only after the store has confirmed it; a user never seen in the
// cluster is refused with ErrUnknownUser.
//
// d.ID is the message's key (MessageKey), which terminals acknowledge, the
// mailbox stores once and repeats are matched by. An ingress that knows
// better which source address identifies a retransmission (MSP over TCP:
// the host only) sets it with FullMessageKey and Send trusts it; an empty
// ID is computed here from d's own parts and d.Origin.Addr, in place (a
// copy per message would be garbage), so d is the caller's to make for
// each Send and not to reuse.
func (s *Switchboard) Send(ctx context.Context, d *Delivery) *Outcome {
	if d.ID == "" {
		// The sender's id alone (even with a cookie) does not tell two
		// messages apart; with recipient and text it does (issue 12).
		d.ID = FullMessageKey(d.Sender, d.SenderTerm, d.Cookie, d.Origin.Addr, d.Recipient, d.RecipTerm, d.Text)
	}
	if s.cfg.Rooms != nil && IsRoom(d.Recipient) {
		return s.sendRoom(ctx, d)
	}
	o := s.route(ctx, d)
	s.settle(ctx, d, o)
	if s.cfg.Observer != nil {
		s.cfg.Observer(ctx, d, o)
	}
	return o
}

// route delivers d to the terminals its address selects.
func (s *Switchboard) route(ctx context.Context, d *Delivery) *Outcome {
	o := &Outcome{Recipient: d.Recipient, RecipTerm: d.RecipTerm}
	targets, err := s.selectTargets(ctx, d, o.entry[:0])
	if err != nil {
		o.Err = err
		return o
	}
	user, _ := SplitAddress(d.Recipient)
	if user != "" && d.RecipTerm == "" {
		// "The right terminal": candidates come most suitable first; a
		// terminal that fails (its node died, its session vanished) hands the
		// message to the next one, a refusal (busy, blocked) is final.
		start := time.Now()
		for i, e := range targets {
			if i > 0 && time.Since(start) >= s.cfg.ForwardTimeout {
				// The caller's whole delivery is bounded (no deadline
				// context per message): the terminals not yet tried
				// are not tried.
				o.Results = append(o.Results, Result{User: e.User, Node: e.Node, Term: e.Term, Status: Failed, Err: ErrTimeout})
				continue
			}
			var one [1]Result
			r := s.deliverInto(ctx, e.Node, d, targets[i:i+1], one[:], d.Ordered)[0]
			switch {
			case r.Status != Failed && len(o.Results) == 0:
				// The first choice took it, the usual case: no slice.
				o.one[0] = r
				o.Results = o.one[:1]
				return o
			case r.Status != Failed:
				o.Results = append([]Result{r}, o.Results...)
				o.fallback = true
				return o
			}
			o.Results = append(o.Results, r)
		}
		return o
	}
	if len(targets) > 0 && allOn(targets, targets[0].Node) {
		// One node (the usual case, and every named terminal): no
		// grouping, no goroutines.
		out := o.one[:]
		var ord Orderer
		if len(targets) != 1 {
			out = make([]Result, len(targets))
		} else {
			ord = d.Ordered // one terminal: its queue is the whole order
		}
		o.Results = s.deliverInto(ctx, targets[0].Node, d, targets, out, ord)
		return o
	}
	byNode := map[string][]principal.Entry{}
	var order []string
	for _, e := range targets {
		if _, seen := byNode[e.Node]; !seen {
			order = append(order, e.Node)
		}
		byNode[e.Node] = append(byNode[e.Node], e)
	}
	results := make([][]Result, len(order))
	var wg sync.WaitGroup
	for i, node := range order {
		if node == s.cfg.Node || s.fed == nil {
			results[i] = s.deliverTo(ctx, node, d, byNode[node])
			continue
		}
		wg.Go(func() { results[i] = s.deliverTo(ctx, node, d, byNode[node]) })
	}
	wg.Wait()
	for _, rs := range results {
		o.Results = append(o.Results, rs...)
	}
	return o
}

// allOn reports whether every entry of es is on node.
func allOn(es []principal.Entry, node string) bool {
	for i := range es {
		if es[i].Node != node {
			return false
		}
	}
	return true
}

// deliverTo delivers d to targets, all on node: directly when node is this
// one, over NATS otherwise.
func (s *Switchboard) deliverTo(ctx context.Context, node string, d *Delivery, targets []principal.Entry) []Result {
	return s.deliverInto(ctx, node, d, targets, make([]Result, len(targets)), nil)
}

// deliverInto is deliverTo with the results' storage given (len(targets));
// it returns out filled, or the remote node's results. ord, when not nil,
// is told once a single local target queued d (see Delivery.Ordered).
func (s *Switchboard) deliverInto(ctx context.Context, node string, d *Delivery, targets []principal.Entry, out []Result, ord Orderer) []Result {
	if node != s.cfg.Node {
		if s.fed == nil {
			for i, e := range targets {
				out[i] = Result{User: e.User, Node: node, Term: e.Term, Status: Failed, Err: ErrNodeDown}
			}
			return out
		}
		return s.fed.forward(ctx, node, d, targets, ord)
	}
	var one [1]target
	ts := one[:]
	if len(targets) != 1 {
		ts = make([]target, len(targets))
	}
	for i, e := range targets {
		ts[i] = target{user: e.User, term: e.Term}
	}
	s.deliverLocalInto(ctx, d, ts, out, ord)
	return out
}

// selectTargets applies the RFC 1312 RECIPIENT / RECIP-TERM rules to the
// presence directory, as d's sender may see it: a user name wins over an
// alias (resolve), and hidden terminals look offline (visibleTargets).
// buf is storage for the entries (the caller's, so one terminal costs no
// allocation).
func (s *Switchboard) selectTargets(ctx context.Context, d *Delivery, buf []principal.Entry) ([]principal.Entry, error) {
	user, node := SplitAddress(d.Recipient)
	if node != "" {
		if err := principal.ValidNode(node); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrBadAddress, err)
		}
	}
	term := d.RecipTerm
	if user == "" {
		// "If the RECIPIENT part is empty, the message may be delivered to any
		// user of the destination system": the ingress node, unless pinned.
		if node == "" {
			node = s.cfg.Node
		}
		all := visibleTargets(s.dir.ByNode(node), d)
		switch term {
		case "":
			// Both empty: the console.
			return pick(all, func(e *principal.Entry) bool { return msp.EqualFold(e.Term, "console") }, ErrNoConsole)
		case "*":
			return pick(all, func(*principal.Entry) bool { return true }, ErrNoSuchUser)
		default:
			return pick(all, func(e *principal.Entry) bool { return msp.EqualFold(e.Term, term) }, ErrNoTerminal)
		}
	}
	if err := principal.ValidUser(user); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadAddress, err)
	}
	entries, err := s.resolve(ctx, user, s.dir.AppendLookup(buf, user)) // most recently active first
	if err != nil {
		// Whether the name is a known user's cannot be told: her alias
		// holders do not get her mail; it goes where an absent user's does.
		s.log.Warn("alias not resolved", "name", user, "err", err)
		return nil, ErrNoSuchUser
	}
	entries = visibleTargets(entries, d)
	if node != "" {
		entries, _ = pick(entries, func(e *principal.Entry) bool { return e.Node == node }, nil)
	}
	if len(entries) == 0 {
		return nil, ErrNoSuchUser
	}
	switch term {
	case "*":
		return entries, nil
	case "":
		// "The right terminal": the most recently active one that accepts
		// messages, then the others in that order; busy terminals come last,
		// so if every terminal is busy the most recent one refuses.
		slices.SortStableFunc(entries, func(a, b principal.Entry) int {
			return cmp.Compare(b2i(a.State == principal.Busy), b2i(b.State == principal.Busy))
		})
		return entries, nil
	default:
		return pick(entries, func(e *principal.Entry) bool { return msp.EqualFold(e.Term, term) }, ErrNoTerminal)
	}
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// pick keeps the entries of es that keep accepts, in place (callers own es:
// it is a fresh directory copy), or returns none when there are none.
func pick(es []principal.Entry, keep func(*principal.Entry) bool, none error) ([]principal.Entry, error) {
	out := es[:0]
	for i := range es {
		if keep(&es[i]) {
			out = append(out, es[i])
		}
	}
	if len(out) == 0 && none != nil {
		return nil, none
	}
	return out, nil
}
