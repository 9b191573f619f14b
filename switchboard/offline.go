package switchboard

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/msprelay/msprelay/principal"
)

// Mailbox keeps messages for users who are not at a terminal and knows who
// has been seen in the cluster. The switchboard tells it about this node's
// lines, so that it can hand a user's queued messages to them (through
// Lines) while she is signed in here. Package mailbox implements it over
// JetStream; its methods must be safe for concurrent use, and LineUp,
// LineDown and Wake must not block on the store.
type Mailbox interface {
	// Put stores d in user's mailbox and returns once the store has
	// confirmed it; dup reports that it already held a message with d's
	// id. Errors wrap ErrMailboxDown, ErrMailboxFull or
	// ErrSenderShareFull (the sender's share of her mailbox is used up). Put is bounded by
	// the mailbox's own store timeout, not by a caller's context: a
	// delivery that used up its time on a dead node must still be able to
	// queue the message.
	Put(d *Delivery, user string) (dup bool, err error)
	// LastSeen returns the last sign-in or sign-out of user anywhere in the
	// cluster: ErrUnknownUser for a user never seen, an error wrapping
	// ErrMailboxDown when the store cannot be asked.
	LastSeen(ctx context.Context, user string) (Seen, error)
	// LineUp says that a line of s.User signed in here (s records it) and
	// gives the mailbox her lines, to drain her mailbox into while she has
	// any here.
	LineUp(s Seen, lines Lines)
	// LineDown says that a line of s.User signed out here (s records it,
	// State "offline"); last reports that it was her last line here.
	LineDown(s Seen, last bool)
	// Wake says that a line of user may take messages now (it came off
	// busy), so that her queued messages need not wait for the next poll.
	Wake(user string)
}

// Lines is the delivery callback the mailbox gets for one user's lines on
// this node. The switchboard implements it; it stays valid after she signs
// out (Accepting then reports false).
type Lines interface {
	// Accepting reports whether one of her lines here takes messages now
	// (signed in, not busy).
	Accepting() bool
	// Deliver hands a queued message to her line that should take it: the
	// terminal it names if that is here and not busy, else her most
	// recently active line that is not busy. The result is Delivered
	// (possibly with ErrDuplicate: delivered here before), Refused (her
	// decision: ErrBusy, ErrBlocked) or Failed (ErrNoTerminal: no line
	// takes messages now; ErrInFlight: being delivered here right now;
	// anything else a fault).
	Deliver(ctx context.Context, d *Delivery) Result
}

// Seen is what the known-users store says about one user: her last sign-in
// or sign-out anywhere in the cluster.
type Seen struct {
	User  string    // canonical
	Time  time.Time // of the sign-in or sign-out
	Node  string    // node that recorded it
	Term  string    // terminal signed in or out
	State string    // presence state then; "offline" after a sign-out
	// Hidden: the line was hidden. Its record must not say when it
	// signed in or out, or a hidden user would not look offline (issue
	// 18: "Hidden looks offline in every field"); the store only makes
	// the user known if she was not.
	Hidden bool
}

// OfflinePolicy says what happens to a message for a known user that no
// terminal took.
type OfflinePolicy string

// Offline policies.
const (
	OfflineQueue  OfflinePolicy = "queue"  // store it in her mailbox: '+queued'
	OfflineRefuse OfflinePolicy = "refuse" // refuse it: '-alice: not signed in'
)

// ErrBadPolicy is returned by ParseOfflinePolicy for an unknown name.
var ErrBadPolicy = errors.New("switchboard: unknown offline policy")

// ParseOfflinePolicy checks a policy name ("" means OfflineQueue).
func ParseOfflinePolicy(s string) (OfflinePolicy, error) {
	switch OfflinePolicy(s) {
	case "", OfflineQueue:
		return OfflineQueue, nil
	case OfflineRefuse:
		return OfflineRefuse, nil
	}
	return "", fmt.Errorf("%w %q: want %s or %s", ErrBadPolicy, s, OfflineQueue, OfflineRefuse)
}

// queues reports whether messages no terminal took go to a mailbox.
func (s *Switchboard) queues() bool { return s.cfg.Offline == OfflineQueue }

// noMailbox is the Mailbox of a switchboard configured without one: it
// stores nothing and knows nobody (LastSeen fails with ErrMailboxDown, and
// New sets the policy to OfflineRefuse, so that such a failure leaves the
// outcome "not signed in").
type noMailbox struct{}

func (noMailbox) Put(*Delivery, string) (bool, error) { return false, ErrMailboxDown }
func (noMailbox) LastSeen(context.Context, string) (Seen, error) {
	return Seen{}, ErrMailboxDown
}
func (noMailbox) LineUp(Seen, Lines)  {}
func (noMailbox) LineDown(Seen, bool) {}
func (noMailbox) Wake(string)         {}

// settle decides what happens to a message that no terminal took: a known
// user's goes to her mailbox (policy permitting), an unknown user's is
// refused as such. Refusals (busy, blocked) are the recipient's decision
// and stay refusals; so do addresses that matched nothing for other
// reasons (no such terminal, no console, bad address). o is updated in
// place.
func (s *Switchboard) settle(ctx context.Context, d *Delivery, o *Outcome) {
	mb := s.mbox
	user, node := SplitAddress(d.Recipient)
	if user == "" || o.Delivered() {
		return
	}
	switch {
	case o.Err != nil:
		if !errors.Is(o.Err, ErrNoSuchUser) {
			return
		}
		if node != "" && s.presentElsewhere(user, d) {
			return // pinned to a node she is not on, while she is on another
		}
		// Bounded by the mailbox's own timeout, not by ctx, as Put is: a
		// delivery that used up its time on a dead node may still queue.
		_, err := mb.LastSeen(context.WithoutCancel(ctx), user)
		switch {
		case errors.Is(err, ErrUnknownUser):
			o.Err = ErrUnknownUser
			return
		case err != nil:
			if s.queues() {
				o.Mailbox = &MailboxResult{User: principal.CanonicalUser(user), Err: err}
			}
			return
		}
		user = principal.CanonicalUser(user)
	default:
		for _, r := range o.Results {
			if r.Status != Failed {
				return
			}
		}
		if len(o.Results) == 0 {
			return
		}
		user = o.Results[0].User // aliases resolve to the terminal's owner
	}
	if !s.queues() {
		return
	}
	dup, err := mb.Put(d, user)
	o.Mailbox = &MailboxResult{User: user, Stored: err == nil, Duplicate: dup, Err: err}
	if err != nil {
		lvl := slog.LevelWarn
		if errors.Is(err, ErrMailboxFull) || errors.Is(err, ErrSenderShareFull) {
			lvl = slog.LevelDebug // a cap: the mailbox logs those, rate-limited
		}
		s.log.Log(ctx, lvl, "message not queued", "user", user, "id", d.ID, "err", err)
	}
}

// LastSeen returns what the known-users store says about user: when and
// where she last signed in or out. It returns ErrUnknownUser for a user
// never seen, an error wrapping ErrMailboxDown when the store cannot be
// asked, and ErrMailboxDown itself without a mailbox.
func (s *Switchboard) LastSeen(ctx context.Context, user string) (Seen, error) {
	return s.mbox.LastSeen(ctx, user)
}
