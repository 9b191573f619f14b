package presence

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/msprelay/msprelay/principal"
)

// Config configures a Directory. The zero value plus Name is a valid
// single-node directory with no gossip.
type Config struct {
	// Name is this node's name; it must pass ValidNode.
	Name string
	// Logger receives the directory's logs; nil means slog.Default().
	Logger *slog.Logger
	// Now returns the current time; nil means time.Now. Tests override it.
	Now func() time.Time
	// SubscriberBuffer is the event backlog a subscriber may fall behind by
	// before its subscription is ended with ErrLagged. Zero means 4096.
	SubscriberBuffer int

	Gossip GossipConfig
}

// ErrClosed is returned by operations on a closed Directory.
var ErrClosed = errors.New("presence: directory closed")

// ErrLagged ends a subscription whose reader fell too far behind.
var ErrLagged = errors.New("presence: subscriber fell behind")

// Directory is the merged presence view of the cluster.
//
// Lifecycle: New validates and starts nothing; its owner calls Start,
// which returns once gossip (if configured) is bound, then Run, which
// blocks and reports a fatal gossip error; Close stops gossip. Run alone
// also starts gossip. The memberlist instance and the gossip goroutines
// belong to the Directory and end before Close returns; Close is
// idempotent. Local changes (Upsert, Remove) work before Start and
// without gossip; those made before Start reach peers when it joins.
type Directory struct {
	cfg Config
	log *slog.Logger
	now func() time.Time

	// mu guards tables, index, subs and closed. Event sends to subscribers
	// happen under mu so that every subscriber sees changes in table order.
	// Every change to an entry updates index under the same lock, so a
	// reader never sees the two disagree.
	mu     sync.RWMutex
	tables map[string]*table // node name -> that node's principals
	index  nameIndex         // name -> entries answering to it, over all tables
	subs   map[*Subscription]struct{}
	closed bool

	g *gossip // nil when Gossip.BindAddr is empty

	closeOnce sync.Once
	done      chan struct{} // closed by Close; Run returns when it closes
	wg        sync.WaitGroup
}

// table is one node's principals. The owner node bumps seq on every change;
// epoch identifies one boot of that node so a restart with seq back at 0 is
// still recognised as newer.
type table struct {
	epoch   uint64
	seq     uint64
	entries map[entryKey]principal.Entry
}

type entryKey struct{ user, term string } // canonical user, folded term

func keyOf(user, term string) entryKey {
	return entryKey{principal.CanonicalUser(user), principal.CanonicalUser(term)}
}

// New validates cfg and builds a Directory. It starts nothing.
func New(cfg Config) (*Directory, error) {
	if err := principal.ValidNode(cfg.Name); err != nil {
		return nil, fmt.Errorf("presence: %w", err)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	switch {
	case cfg.SubscriberBuffer < 0:
		return nil, fmt.Errorf("presence: SubscriberBuffer %d: want above 0, or 0 for the default", cfg.SubscriberBuffer)
	case cfg.SubscriberBuffer == 0:
		cfg.SubscriberBuffer = DefaultSubscriberBuffer
	}
	d := &Directory{
		cfg:    cfg,
		log:    cfg.Logger,
		now:    cfg.Now,
		tables: map[string]*table{},
		index:  nameIndex{},
		subs:   map[*Subscription]struct{}{},
		done:   make(chan struct{}),
	}
	d.tables[cfg.Name] = &table{epoch: uint64(cfg.Now().UnixNano()), entries: map[entryKey]principal.Entry{}}
	if cfg.Gossip.BindAddr != "" {
		g, err := newGossip(d, cfg.Gossip)
		if err != nil {
			return nil, err
		}
		d.g = g
	}
	return d, nil
}

// Name returns this node's name.
func (d *Directory) Name() string { return d.cfg.Name }

// Start starts gossip (when configured) and returns once memberlist has
// bound its sockets, so GossipAddr is valid when it returns; joining the
// seeds goes on in the background. Without gossip it does nothing. It
// returns ErrClosed after Close and an error when gossip was started
// before (by Start or Run). A name conflict found while joining ends
// gossip and is returned by Run, which the owner calls after Start to
// learn of it (and to leave the cluster when its context ends).
func (d *Directory) Start(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if d.g == nil {
		select {
		case <-d.done:
			return ErrClosed
		default:
			return nil
		}
	}
	return d.g.start()
}

// Run starts gossip unless Start did, and blocks until ctx ends or Close
// is called. Without gossip it just waits. When ctx ends, Run leaves the
// cluster gracefully before it returns nil. It returns an error if gossip
// cannot start, or (wrapping ErrNameConflict) if the cluster already has a
// live node by this node's name. Gossip runs at most once per Directory.
func (d *Directory) Run(ctx context.Context) error {
	var fatal <-chan error
	if d.g != nil {
		if err := d.g.startOnce(); err != nil {
			return err
		}
		fatal = d.g.fatal
	}
	select {
	case <-ctx.Done():
		if d.g != nil {
			if err := d.g.stop(true); err != nil {
				d.log.Warn("presence: leaving on cancel", "err", err)
			}
		}
	case <-d.done:
	case err := <-fatal:
		if serr := d.g.stop(false); serr != nil {
			d.log.Warn("presence: stopping gossip", "err", serr)
		}
		return err
	}
	return nil
}

// Close leaves the cluster gracefully (when gossiping), ends all
// subscriptions and waits for the directory's goroutines. It is idempotent.
func (d *Directory) Close() error {
	var err error
	d.closeOnce.Do(func() {
		close(d.done)
		if d.g != nil {
			err = d.g.stop(true)
		}
		d.wg.Wait()
		d.mu.Lock()
		d.closed = true
		for s := range d.subs {
			s.end(ErrClosed)
		}
		clear(d.subs)
		d.mu.Unlock()
	})
	return err
}

// Upsert adds or replaces a local principal's terminal. Node is forced to this
// node's name; User and Aliases are canonicalised.
func (d *Directory) Upsert(e principal.Entry) error {
	if err := principal.ValidUser(e.User); err != nil {
		return err
	}
	if err := principal.ValidTerm(e.Term); err != nil {
		return err
	}
	if e.Kind > principal.KindTTY {
		return fmt.Errorf("%w %d for %s/%s", principal.ErrBadKind, e.Kind, e.User, e.Term)
	}
	if e.State == principal.Offline {
		return fmt.Errorf("presence: upsert %s/%s: state offline is not storable, use Remove", e.User, e.Term)
	}
	e.Node = d.cfg.Name
	e.User = principal.CanonicalUser(e.User)
	if len(e.Aliases) > MaxAliases {
		return fmt.Errorf("%w: %s has %d aliases, at most %d are allowed", principal.ErrBadUser, e.User, len(e.Aliases), MaxAliases)
	}
	if len(e.Aliases) > 0 {
		al := make([]string, 0, len(e.Aliases))
		for _, a := range e.Aliases {
			if err := principal.ValidUser(a); err != nil {
				return err
			}
			al = append(al, principal.CanonicalUser(a))
		}
		slices.Sort(al)
		e.Aliases = slices.Compact(al)
	}
	now := d.now()
	if e.Since.IsZero() {
		e.Since = now
	}
	if e.LastActive.IsZero() {
		e.LastActive = now
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return ErrClosed
	}
	t := d.tables[d.cfg.Name]
	t.seq++
	k := keyOf(e.User, e.Term)
	old, had := t.entries[k]
	t.entries[k] = e
	d.index.replace(d.cfg.Name, k, &old, had, &e)
	d.emitLocked(Event{Type: EventUpsert, Entry: e})
	if d.g != nil {
		d.g.localChanged(t.epoch, t.seq, change{Op: opUpsert, Entry: e})
	}
	return nil
}

// Remove deletes a local principal's terminal; it reports whether it existed.
func (d *Directory) Remove(user, term string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	t := d.tables[d.cfg.Name]
	k := keyOf(user, term)
	e, ok := t.entries[k]
	if !ok || d.closed {
		return false
	}
	delete(t.entries, k)
	d.index.remove(d.cfg.Name, k, &e)
	t.seq++
	e.State = principal.Offline
	d.emitLocked(Event{Type: EventRemove, Entry: e})
	if d.g != nil {
		d.g.localChanged(t.epoch, t.seq, change{Op: opRemove, Entry: e})
	}
	return true
}

// Get returns the local entry for (user, term).
func (d *Directory) Get(user, term string) (principal.Entry, bool) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	e, ok := d.tables[d.cfg.Name].entries[keyOf(user, term)]
	return cloneEntry(e), ok
}

// Lookup returns every entry, on any node, that answers to name (its user name
// or an alias), most recently active first.
func (d *Directory) Lookup(name string) []principal.Entry { return d.AppendLookup(nil, name) }

// AppendLookup appends what Lookup returns to dst (sorted among
// themselves) and returns the extended slice; a caller with room in dst
// (the switchboard, once per message) spares an allocation.
func (d *Directory) AppendLookup(dst []principal.Entry, name string) []principal.Entry {
	name = principal.CanonicalUser(name)
	n := len(dst)
	d.mu.RLock()
	if refs := d.index[name]; len(refs) > 0 {
		dst = slices.Grow(dst, len(refs))
		for _, r := range refs {
			dst = append(dst, cloneEntry(d.tables[r.node].entries[r.key]))
		}
	}
	d.mu.RUnlock()
	sortEntries(dst[n:])
	return dst
}

// ByNode returns the entries held by node, most recently active first.
func (d *Directory) ByNode(node string) []principal.Entry {
	var out []principal.Entry
	d.mu.RLock()
	if t := d.tables[node]; t != nil {
		for _, e := range t.entries {
			out = append(out, cloneEntry(e))
		}
	}
	d.mu.RUnlock()
	sortEntries(out)
	return out
}

// All returns every entry in the directory, ordered by user, node, terminal.
func (d *Directory) All() []principal.Entry {
	var out []principal.Entry
	d.mu.RLock()
	for _, t := range d.tables {
		for _, e := range t.entries {
			out = append(out, cloneEntry(e))
		}
	}
	d.mu.RUnlock()
	slices.SortFunc(out, func(a, b principal.Entry) int {
		return cmp.Or(cmp.Compare(a.User, b.User), cmp.Compare(a.Node, b.Node), cmp.Compare(a.Term, b.Term))
	})
	return out
}

// Nodes returns the names of the nodes whose tables the directory holds
// (this node included), sorted.
func (d *Directory) Nodes() []string {
	d.mu.RLock()
	out := make([]string, 0, len(d.tables))
	for n := range d.tables {
		out = append(out, n)
	}
	d.mu.RUnlock()
	slices.Sort(out)
	return out
}

func sortEntries(es []principal.Entry) {
	slices.SortFunc(es, func(a, b principal.Entry) int {
		return cmp.Or(b.LastActive.Compare(a.LastActive), cmp.Compare(a.Node, b.Node), cmp.Compare(a.Term, b.Term))
	})
}

func cloneEntry(e principal.Entry) principal.Entry {
	e.Aliases = slices.Clone(e.Aliases)
	return e
}
