// Package principal holds the value types of presence that clients share
// with the server: a principal's State, the Kind of a terminal, one Entry of
// the directory (a who row) and the rules for user, terminal and node names.
// It is a leaf: it links no gossip code, so the session client and the msp
// CLI can use it without linking memberlist.
package principal

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/msprelay/msprelay/msp"
)

// State is a principal's availability, modelled on MSN NS presence codes.
type State uint8

// The states a principal can be in. Offline is never stored; it is what a lookup
// reports for a user with no entry and what a Remove event carries.
const (
	Offline State = iota
	Online
	Busy // refuses messages (mesg n)
	Away
	Idle
	Hidden // receives messages but is not shown to others
)

var stateNames = [...]struct{ name, code string }{
	Offline: {"offline", "FLN"},
	Online:  {"online", "NLN"},
	Busy:    {"busy", "BSY"},
	Away:    {"away", "AWY"},
	Idle:    {"idle", "IDL"},
	Hidden:  {"hidden", "HDN"},
}

// String returns the lower-case word for s ("online", "busy", ...).
func (s State) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s].name
	}
	return fmt.Sprintf("state(%d)", uint8(s))
}

// Code returns the three-letter MSN code for s ("NLN", "BSY", ...).
func (s State) Code() string {
	if int(s) < len(stateNames) {
		return stateNames[s].code
	}
	return "???"
}

// ErrBadState is returned by ParseState for a word that names no state.
var ErrBadState = errors.New("principal: unknown state")

// ParseState accepts a state word or MSN code, case-insensitively. Offline is
// not accepted: a principal goes offline by signing out.
func ParseState(s string) (State, error) {
	for i, n := range stateNames {
		if State(i) == Offline {
			continue
		}
		if strings.EqualFold(s, n.name) || strings.EqualFold(s, n.code) {
			return State(i), nil
		}
	}
	return Offline, fmt.Errorf("%w %q (want online, busy, away, idle, hidden or NLN, BSY, AWY, IDL, HDN)", ErrBadState, s)
}

// Kind says what sort of terminal an entry is, and so how a message reaches
// it. The zero value is a session, so entries built before kinds existed
// keep their meaning.
type Kind uint8

// The kinds of terminal.
const (
	KindSession Kind = iota // a session client (msp listen, the NS-style session protocol)
	KindTTY                 // a host login's terminal device, written to like write(1)
)

// String returns "session" or "tty".
func (k Kind) String() string {
	switch k {
	case KindSession:
		return "session"
	case KindTTY:
		return "tty"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// ErrBadKind is the error for an entry whose Kind is not one of the kinds.
var ErrBadKind = errors.New("principal: unknown terminal kind")

// Entry is one terminal of one principal on one node.
type Entry struct {
	User       string    // canonical (lower-case) user name
	Node       string    // node that holds the session
	Term       string    // terminal name as the session gave it
	State      State     // never Offline inside the directory
	Aliases    []string  // extra names the session answers to, canonical
	Since      time.Time // when the session signed in
	LastActive time.Time // last time the user did something (drives "most recent terminal"); a tty's is its device's access time
	Kind       Kind      // session or tty; idle time is the time since LastActive
}

// Answers reports whether a message addressed to name reaches this entry,
// either by its user name or by one of its aliases.
func (e *Entry) Answers(name string) bool {
	name = CanonicalUser(name)
	if e.User == name {
		return true
	}
	for _, a := range e.Aliases {
		if a == name {
			return true
		}
	}
	return false
}

// CanonicalUser folds a user name for comparison: MSP compares parts
// case-insensitively (RFC 1312) over ISO 8859-1 octets, so the directory
// stores names folded the way msp.Fold does.
func CanonicalUser(name string) string { return msp.Fold(name) }

// Name validation errors.
var (
	ErrBadUser = errors.New("principal: invalid user name")
	ErrBadTerm = errors.New("principal: invalid terminal name")
	ErrBadNode = errors.New("principal: invalid node name")
)

// MaxNameLen bounds user, terminal and node names; MSP messages are under 512
// octets in total, so longer names could never be addressed anyway.
const MaxNameLen = 64

// ValidUser checks a user or alias name: 1..MaxNameLen octets, no spaces,
// control characters, '@' (it pins a node), '*' or '/'.
func ValidUser(name string) error {
	if err := validName(name, "@*/"); err != nil {
		return fmt.Errorf("%w %q: %v", ErrBadUser, name, err)
	}
	return nil
}

// ValidTerm checks a terminal name: 1..MaxNameLen octets, no spaces or control
// characters, and not "*" (which means every terminal).
func ValidTerm(term string) error {
	if term == "*" {
		return fmt.Errorf("%w %q: * means all terminals", ErrBadTerm, term)
	}
	if err := validName(term, ""); err != nil {
		return fmt.Errorf("%w %q: %v", ErrBadTerm, term, err)
	}
	return nil
}

// ValidNode checks a node name. Node names go into NATS subjects and memberlist
// member names, so only letters, digits, '-' and '_' are allowed.
func ValidNode(name string) error {
	if name == "" || len(name) > MaxNameLen {
		return fmt.Errorf("%w %q: length must be 1..%d", ErrBadNode, name, MaxNameLen)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return fmt.Errorf("%w %q: only letters, digits, - and _ are allowed", ErrBadNode, name)
		}
	}
	return nil
}

func validName(s, forbidden string) error {
	if s == "" || len(s) > MaxNameLen {
		return fmt.Errorf("length must be 1..%d", MaxNameLen)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c == 0x7f || (c >= 0x80 && c < 0xa0) || c == 0xa0 {
			return fmt.Errorf("byte %#x not allowed", c)
		}
		if strings.IndexByte(forbidden, c) >= 0 {
			return fmt.Errorf("%q not allowed", c)
		}
	}
	return nil
}
