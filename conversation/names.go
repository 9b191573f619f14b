package conversation

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// MaxNameLen bounds a conversation name in octets.
const MaxNameLen = 32

// Sentinel errors. Callers match them with errors.Is.
var (
	// ErrBadName: a conversation name that is empty, too long, or holds
	// octets outside [a-z0-9_-] (after folding to lower case).
	ErrBadName = errors.New("conversation: invalid conversation name")
	// ErrNoConversation: the conversation does not exist (never created, or
	// expired after idling empty).
	ErrNoConversation = errors.New("conversation: no such conversation")
	// ErrNotMember: the session is not in the conversation.
	ErrNotMember = errors.New("conversation: not a member")
	// ErrAlreadyMember: the session is in the conversation already.
	ErrAlreadyMember = errors.New("conversation: already a member")
	// ErrBlocked: a member of the conversation blocks the joiner, or the
	// invitee blocks the inviter.
	ErrBlocked = errors.New("conversation: blocked")
	// ErrFull: the conversation has MaxMembers members, or the cluster
	// MaxConversations conversations.
	ErrFull = errors.New("conversation: full")
	// ErrNotOnline: an invitee who is signed in nowhere.
	ErrNotOnline = errors.New("conversation: user not signed in")
	// ErrBadText: a message that is too long or holds control octets.
	ErrBadText = errors.New("conversation: invalid message text")
	// ErrTooMany: the user has MaxOpenPerUser conversations open, or is
	// MaxSlotsPerUser members of the conversation already.
	ErrTooMany = errors.New("conversation: too many for one user")
	// ErrNotInvited: the conversation is private and the user neither owns
	// it nor was invited.
	ErrNotInvited = errors.New("conversation: private, not invited")
	// ErrNotOwner: only the owner of a private conversation invites.
	ErrNotOwner = errors.New("conversation: only the owner may do that")
	// ErrMembersOnly: an MSP message to a conversation from a sender who
	// is not a verified member, and its bridge is not open.
	ErrMembersOnly = errors.New("members only")
	// ErrClosed: the Manager is closed (or not started).
	ErrClosed = errors.New("conversation: manager closed")
)

// CanonicalName folds a conversation name to lower case (ASCII only; the
// rules admit nothing else).
func CanonicalName(name string) string { return strings.ToLower(name) }

// ValidName checks a conversation name: 1 to MaxNameLen octets of letters,
// digits, '-' and '_'. The name goes into NATS subjects and KV keys, so
// nothing else may pass: no '.', '*', '>', spaces or 8-bit octets.
func ValidName(name string) error {
	if name == "" {
		return fmt.Errorf("%w: empty", ErrBadName)
	}
	if len(name) > MaxNameLen {
		return fmt.Errorf("%w: %d octets, at most %d", ErrBadName, len(name), MaxNameLen)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_':
		default:
			return fmt.Errorf("%w: octet 0x%02X at offset %d (letters, digits, '-' and '_' only)", ErrBadName, c, i)
		}
	}
	return nil
}

// validNode checks a node name before it goes into a subject or key; node
// names are letters, digits, '-' and '_' like conversation names.
func validNode(node string) error {
	if node == "" || len(node) > 64 {
		return fmt.Errorf("conversation: invalid node name %q", node)
	}
	if err := ValidName(node[:min(len(node), MaxNameLen)]); err != nil {
		return fmt.Errorf("conversation: invalid node name %q", node)
	}
	for i := MaxNameLen; i < len(node); i++ {
		if err := ValidName(node[i : i+1]); err != nil {
			return fmt.Errorf("conversation: invalid node name %q", node)
		}
	}
	return nil
}

// NewName returns a fresh name for an unnamed conversation.
func NewName() string { return "c" + randomHex(6) }

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// ValidText checks message text: at most max octets of printable ISO 8859-1
// plus CR, LF and TAB.
func ValidText(text string, max int) error {
	if len(text) > max {
		return fmt.Errorf("%w: %d octets, at most %d", ErrBadText, len(text), max)
	}
	for i := 0; i < len(text); i++ {
		c := text[i]
		if (c < 0x20 && c != '\r' && c != '\n' && c != '\t') || c == 0x7f || (c >= 0x80 && c < 0xa0) {
			return fmt.Errorf("%w: control octet 0x%02X at offset %d", ErrBadText, c, i)
		}
	}
	return nil
}
