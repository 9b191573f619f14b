package switchboard

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/msprelay/msprelay/principal"
)

// This file holds the rules that make names belong to people (issue 12,
// "stolen mail"): which names an alias may not take, which terminal only
// root may sign in at, and how a name resolves when it is both somebody's
// user name and somebody else's alias. It also holds the privacy rule that
// a hidden terminal is, to everyone but its own user, an offline one.

// reservedNames are the names no session may take as an alias: the
// system's own accounts and the role addresses mail and operators reach,
// which a user could otherwise claim to receive messages meant for the
// operators. docs/SESSION.md lists them. An array, so it cannot change.
var reservedNames = [...]string{
	"abuse", "admin", "console", "daemon", "hostmaster", "mailer-daemon",
	"nobody", "operator", "postmaster", "root", "security", "support", "webmaster",
}

// ReservedNames returns the reserved alias names, sorted.
func ReservedNames() []string { return slices.Clone(reservedNames[:]) }

// Reserved reports whether name (in any case) is a reserved alias name.
func Reserved(name string) bool {
	return slices.Contains(reservedNames[:], principal.CanonicalUser(name))
}

// ConsoleTerm is the terminal an empty RECIPIENT and RECIP-TERM reach (RFC
// 1312: "the console"); only ConsoleAllowed users may sign in at it.
const ConsoleTerm = "console"

// Errors from SetAliases and SignIn that refuse a name. Each wraps into a
// message naming the name, never who holds it.
var (
	// ErrNameReserved: the alias is one of ReservedNames.
	ErrNameReserved = errors.New("name is reserved")
	// ErrNameUnchecked: whether the alias is a known user's name could
	// not be checked (the known-users store did not answer); try again.
	ErrNameUnchecked = errors.New("cannot check the name now")
	// ErrConsoleOnly: a user who is not allowed the console tried to sign
	// in at terminal "console".
	ErrConsoleOnly = errors.New("terminal console is reserved for root")
)

// isConsole reports whether term is the console terminal.
func isConsole(term string) bool { return principal.CanonicalUser(term) == ConsoleTerm }

// consoleAllowed applies Config.ConsoleAllowed (nil: root only).
func (s *Switchboard) consoleAllowed(user string) bool {
	if s.cfg.ConsoleAllowed != nil {
		return s.cfg.ConsoleAllowed(principal.CanonicalUser(user))
	}
	return principal.CanonicalUser(user) == "root"
}

// hasMailbox reports whether a real known-users store backs this switchboard.
func (s *Switchboard) hasMailbox() bool {
	_, none := s.mbox.(noMailbox)
	return !none
}

// knownUser asks the known-users store whether user has ever been seen.
// Without a mailbox nobody is known beyond the directory.
func (s *Switchboard) knownUser(ctx context.Context, user string) (bool, error) {
	if !s.hasMailbox() {
		return false, nil
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.StoreTimeout)
	defer cancel()
	_, err := s.mbox.LastSeen(ctx, user)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, ErrUnknownUser):
		return false, nil
	}
	return false, err
}

// checkAlias decides whether user may take name as an alias. The refusals
// say the same thing whether the other person is online, hidden or
// offline, and never name her: "alice: name in use (a user's name)".
func (s *Switchboard) checkAlias(ctx context.Context, user, name string) error {
	if err := principal.ValidUser(name); err != nil {
		return err
	}
	name = principal.CanonicalUser(name)
	if name == user {
		return nil // her own name: it adds nothing, but takes nothing either
	}
	if Reserved(name) {
		return fmt.Errorf("%s: %w", name, ErrNameReserved)
	}
	userName := fmt.Errorf("%s: %w (a user's name)", name, ErrNameTaken)
	entries := s.dir.Lookup(name)
	for _, e := range entries {
		if e.User == name {
			return userName
		}
	}
	known, err := s.knownUser(ctx, name)
	switch {
	case err != nil:
		return fmt.Errorf("%s: %w: %w", name, ErrNameUnchecked, err)
	case known:
		return userName
	}
	for _, e := range entries {
		if e.User != user {
			return fmt.Errorf("%s: %w (another user's alias)", name, ErrNameTaken)
		}
	}
	return nil
}

// visibleTargets drops the entries that must look offline to d's sender:
// hidden terminals, unless the sender is their own user and the node
// authenticated her. A message for a hidden terminal is then routed as if
// she were offline (queued in her mailbox, which hands it to her hidden
// terminal), so that no reply tells a hidden user from an offline one.
func visibleTargets(entries []principal.Entry, d *Delivery) []principal.Entry {
	self := ""
	if d.Origin.Sender.Verified() {
		self = principal.CanonicalUser(d.Origin.Sender.User)
	}
	return slices.DeleteFunc(entries, func(e principal.Entry) bool {
		return e.State == principal.Hidden && (self == "" || e.User != self)
	})
}

// resolve returns the entries a message to name reaches, most recently
// active first: a user name always wins over an alias. If any entry is
// name's own user's, only those count; else the entries of alias holders,
// unless name is a known user's (she signed in once and is offline or
// hidden now, and somebody took her name as an alias while she was never
// seen): then nobody's, and the message goes where an offline user's goes.
// When the known-users store cannot say, resolve returns its error and the
// alias holders do not get the message either. It may reuse entries'
// storage: callers pass a slice they own (a fresh Lookup) and use only
// what resolve returns.
func (s *Switchboard) resolve(ctx context.Context, name string, entries []principal.Entry) ([]principal.Entry, error) {
	name = principal.CanonicalUser(name)
	nOwn := 0
	for i := range entries {
		if entries[i].User == name {
			nOwn++
		}
	}
	switch {
	case nOwn == len(entries):
		return entries, nil // all hers (the usual case), or none at all
	case nOwn > 0:
		return slices.DeleteFunc(entries, func(e principal.Entry) bool { return e.User != name }), nil
	}
	known, err := s.knownUser(ctx, name)
	if err != nil || known {
		return nil, err
	}
	return entries, nil
}

// Lookup returns the terminals a message to name (a user or an alias)
// would reach as others see them, most recently active first: a user name
// wins over an alias (see resolve), and viewer (canonical; "" for nobody)
// sees her own hidden terminals but no one else's. WHO uses it so that it
// shows what routing does.
func (s *Switchboard) Lookup(ctx context.Context, name, viewer string) []principal.Entry {
	entries, err := s.resolve(ctx, name, s.dir.Lookup(name))
	if err != nil {
		return nil
	}
	return slices.DeleteFunc(entries, func(e principal.Entry) bool {
		return e.State == principal.Hidden && e.User != viewer
	})
}

// presentElsewhere reports whether user herself (not an alias holder) has
// a terminal d's sender may see: a message pinned to a node she is not on
// is then refused rather than queued. A hidden terminal does not count, so
// that the reply is the one an offline user's message gets.
func (s *Switchboard) presentElsewhere(user string, d *Delivery) bool {
	user = principal.CanonicalUser(user)
	for _, e := range visibleTargets(s.dir.Lookup(user), d) {
		if e.User == user {
			return true
		}
	}
	return false
}
