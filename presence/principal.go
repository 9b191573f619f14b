package presence

import "github.com/msprelay/msprelay/principal"

// The value types of the directory live in package principal, a leaf the
// session client and the msp CLI share without linking memberlist. These
// names keep the server packages compiling while their call sites move to
// package principal; new code uses principal directly.

// State is principal.State.
type State = principal.State

// Kind is principal.Kind.
type Kind = principal.Kind

// Entry is principal.Entry.
type Entry = principal.Entry

// The states, as in package principal.
const (
	Offline = principal.Offline
	Online  = principal.Online
	Busy    = principal.Busy
	Away    = principal.Away
	Idle    = principal.Idle
	Hidden  = principal.Hidden
)

// The kinds of terminal, as in package principal.
const (
	KindSession = principal.KindSession
	KindTTY     = principal.KindTTY
)

// MaxNameLen is principal.MaxNameLen.
const MaxNameLen = principal.MaxNameLen

// The errors of package principal, under their old names.
var (
	ErrBadState = principal.ErrBadState
	ErrBadKind  = principal.ErrBadKind
	ErrBadUser  = principal.ErrBadUser
	ErrBadTerm  = principal.ErrBadTerm
	ErrBadNode  = principal.ErrBadNode
)

// ParseState is principal.ParseState.
func ParseState(s string) (State, error) { return principal.ParseState(s) }

// CanonicalUser is principal.CanonicalUser.
func CanonicalUser(name string) string { return principal.CanonicalUser(name) }

// ValidUser is principal.ValidUser.
func ValidUser(name string) error { return principal.ValidUser(name) }

// ValidTerm is principal.ValidTerm.
func ValidTerm(term string) error { return principal.ValidTerm(term) }

// ValidNode is principal.ValidNode.
func ValidNode(name string) error { return principal.ValidNode(name) }
