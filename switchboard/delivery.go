// Package switchboard routes short messages to the terminals where their
// recipients are present and reports per-terminal results.
//
// The ingress node (the one that received an MSP message or a session's send)
// resolves the recipient in the presence directory, selects target terminals by
// the MSP RECIP-TERM rules, delivers to its own terminals directly and to other
// nodes' terminals over NATS, and folds the per-terminal results into one
// Outcome that becomes the MSP '+' or '-' reply.
//
// Terminals are attached by the session layer (one Line per signed-in
// terminal). The switchboard owns the registry of lines; a Line's owner (the
// session) must call SignOut when its connection ends.
package switchboard

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Delivery is one message on its way to terminals. It is immutable once handed
// to Send or to a Terminal; terminals share one value.
type Delivery struct {
	ID         string    // stable message id, see MessageID
	Recipient  string    // as addressed, possibly "user@node"; "" = any user of the ingress node
	RecipTerm  string    // "" = most recently active terminal, "*" = all, else that terminal
	Sender     string    // may be empty when policy allows
	SenderTerm string    //
	Text       string    // ISO 8859-1 octets with CR LF line ends
	Cookie     string    //
	Signature  string    // opaque, as received
	Origin     Origin    //
	Time       time.Time // when the ingress node accepted it
}

// Origin says where a message entered the cluster. Senders are not trusted by
// name alone; Origin is what the recipient can rely on.
type Origin struct {
	Node      string // ingress node name
	Addr      string // MSP client source address ("192.0.2.1:1234"), or "session" for session sends
	Transport string // "tcp", "udp" or "session"
	Verified  bool   // sender identity was authenticated (session peer credentials or secret)
}

// MessageID derives the identity of a message from what RFC 1312 says
// identifies it (sender, sender terminal, cookie) plus the origin address, so
// a retransmission gets the same id and clients can drop repeats.
func MessageID(sender, senderTerm, cookie, originAddr string) string {
	h := sha256.New()
	for _, p := range [...]string{strings.ToLower(sender), strings.ToLower(senderTerm), strings.ToLower(cookie), originAddr} {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	var sum [sha256.Size]byte
	return hex.EncodeToString(h.Sum(sum[:0])[:12])
}

// Terminal is a local delivery endpoint: one signed-in session terminal.
type Terminal interface {
	// Deliver hands d to the terminal. It must not block: it queues d for the
	// client and returns nil, or returns an error saying why it refused (wrap
	// ErrBlocked, ErrBusy, ErrTerminalGone or ErrTerminalSlow).
	Deliver(d *Delivery) error
	// Kick tells the terminal that another sign-in took over its (user,
	// terminal) name; the session should say so to its client and close.
	Kick(reason string)
}

// Refusal and failure reasons. Results carry them wrapped; Status says whether
// the recipient refused (a decision) or delivery failed (a fault).
var (
	ErrNoSuchUser   = errors.New("not signed in")
	ErrNoTerminal   = errors.New("no such terminal")
	ErrBusy         = errors.New("busy, not accepting messages")
	ErrBlocked      = errors.New("blocked by recipient")
	ErrTerminalGone = errors.New("terminal signed out")
	ErrTerminalSlow = errors.New("terminal not reading")
	ErrNoConsole    = errors.New("no console session")
	ErrNodeDown     = errors.New("node unreachable")
	ErrTimeout      = errors.New("delivery timed out")
	ErrBadAddress   = errors.New("bad address")
)

// Status is the result of delivering to one terminal.
type Status uint8

// Per-terminal statuses.
const (
	Delivered Status = iota + 1 // accepted by a live session
	Refused                     // the recipient's choice: busy, blocked
	Failed                      // a fault: gone, slow, node down, timeout
)

// String names the status.
func (s Status) String() string {
	switch s {
	case Delivered:
		return "delivered"
	case Refused:
		return "refused"
	case Failed:
		return "failed"
	}
	return fmt.Sprintf("status(%d)", uint8(s))
}

// Result is the outcome for one target terminal.
type Result struct {
	User   string
	Node   string
	Term   string
	Status Status
	Reason string // empty when Delivered
}

// Outcome is the folded result of one Send.
type Outcome struct {
	Recipient string   // as addressed
	Results   []Result // one per selected terminal; empty when nothing matched
	Err       error    // set when no terminal was selected (ErrNoSuchUser, ErrNoTerminal, ...)

	// fallback: Results[0] is the terminal that took the message after the
	// more suitable ones in Results[1:] failed ("the right terminal" rule).
	fallback bool
}

// Delivered reports whether at least one terminal accepted the message; that is
// what earns an MSP '+'.
func (o *Outcome) Delivered() bool {
	for _, r := range o.Results {
		if r.Status == Delivered {
			return true
		}
	}
	return false
}

// Summary is the MSP reply explanation (without the '+'/'-'): it says what
// happened, e.g. "delivered to alice at pts/1 on hosta" or
// "alice: busy, not accepting messages". It is plain printable ASCII/Latin-1.
func (o *Outcome) Summary() string {
	who := o.Recipient
	if who == "" {
		who = "console"
	}
	if o.Err != nil {
		return who + ": " + o.Err.Error()
	}
	var ok, bad []string
	for _, r := range o.Results {
		if r.Status == Delivered {
			ok = append(ok, r.Term+"@"+r.Node)
		} else {
			bad = append(bad, r.Term+"@"+r.Node+" "+r.Reason)
		}
	}
	var b strings.Builder
	switch {
	case o.fallback:
		r := o.Results[0]
		fmt.Fprintf(&b, "delivered to %s at %s on %s (after %s)", r.User, r.Term, r.Node, strings.Join(bad, ", "))
	case len(ok) == 1 && len(bad) == 0:
		r := o.Results[0]
		fmt.Fprintf(&b, "delivered to %s at %s on %s", r.User, r.Term, r.Node)
	case len(ok) > 0:
		fmt.Fprintf(&b, "delivered to %s at %d of %d terminals: %s", who, len(ok), len(o.Results), strings.Join(ok, " "))
		if len(bad) > 0 {
			b.WriteString("; not: " + strings.Join(bad, ", "))
		}
	case len(bad) == 1:
		r := o.Results[0]
		fmt.Fprintf(&b, "%s at %s on %s: %s", r.User, r.Term, r.Node, r.Reason)
	default:
		fmt.Fprintf(&b, "%s: not delivered: %s", who, strings.Join(bad, ", "))
	}
	return b.String()
}
