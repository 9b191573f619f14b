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
//
// The switchboard routes; it does not store. Given a Mailbox (Config.Mailbox,
// implemented over JetStream by package mailbox; docs/MAILBOX.md), a message
// for a known user that no terminal took is stored in her mailbox before the
// sender is told '+queued', and the mailbox hands her queued messages back
// through the Lines callback while she is signed in here. Terminals whose
// clients acknowledge messages (AckTerminal) make "delivered" mean
// "acknowledged"; a message they do not acknowledge goes back to the
// mailbox. A node remembers the ids it delivered to each user, so repeats
// are delivered once.
//
// Delivery outcomes are errors inside the program (Result.Err, Outcome.Err,
// matched with errors.Is against the sentinels below) and strings only on
// the wire: federation carries a code per sentinel and maps it back on
// receipt.
//
// Lifecycle: New validates and starts nothing; Start subscribes to this
// node's deliver subject and returns once the subscription is in place;
// Close stops serving, signs every line out and waits for the requests being
// served. Close is idempotent.
package switchboard

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/msprelay/msprelay/identity"
	"github.com/msprelay/msprelay/msp"
	"github.com/msprelay/msprelay/principal"
)

// Delivery is one message on its way to terminals. It is immutable once handed
// to Send or to a Terminal; terminals share one value.
type Delivery struct {
	ID         string    // stable message id: MessageID from a sender, MessageKey once Send has it
	Recipient  string    // as addressed, possibly "user@node"; "" = any user of the ingress node
	RecipTerm  string    // "" = most recently active terminal, "*" = all, else that terminal
	Sender     string    // may be empty when policy allows
	SenderTerm string    //
	Text       string    // ISO 8859-1 octets with CR LF line ends
	Cookie     string    //
	Signature  string    // opaque, as received
	Origin     Origin    //
	Time       time.Time // when the ingress node accepted it
	Queued     bool      // handed out by the mailbox (not stored with it): sinks show "queued, sent <Time>"
	// Ordered, when set, is told once the message holds its place in its
	// recipient's order: queued for the one terminal it goes to, behind
	// the messages before it, while Send still waits for that terminal's
	// acknowledgement. The caller may then start its next message for the
	// same recipient (issue 21: the order is kept by the queue, not by
	// waiting). It is told at most once, and not at all when the delivery
	// goes to several terminals, to another node, or no terminal queued
	// it; Send returning means the same. Not carried across nodes or stored.
	Ordered Orderer
}

// Orderer is told that a delivery holds its place in its recipient's order
// (see Delivery.Ordered). msp's pipelined ResponseWriter implements it.
type Orderer interface{ InOrder() }

// Origin says where a message entered the cluster. Senders are not trusted by
// name alone; Origin is what the recipient can rely on.
type Origin struct {
	Node      string // ingress node name
	Addr      string // MSP client source address ("192.0.2.1:1234"), or "session" for session sends
	Transport string // "tcp", "udp" or "session"
	Revision  string // MSP revision the message came in ("A" or "B"); "" for session sends
	// Sender is who sent it, as the ingress node established it; its
	// Verified method is the one answer to "is the sender verified" for
	// every sink. Another node's word is believed only as vet allows.
	Sender identity.Identity
}

// MessageID derives the sender side of a message's identity from what RFC
// 1312 says identifies it (sender, sender terminal, cookie) plus the origin
// address (with its port over UDP; the ingress decides), so that a
// retransmission gets the same id. Send then adds the recipient and the
// text (MessageKey): the sender side alone does not tell apart two messages
// a sender gives one cookie, such as a script with a one-second time cookie
// writing to two people.
//
// Ids cross nodes (federation, the mailbox), so they are truncated SHA-256,
// stable across processes, never a per-process hash such as hash/maphash.
func MessageID(sender, senderTerm, cookie, originAddr string) string {
	return idHash(msp.Fold(sender), msp.Fold(senderTerm), msp.Fold(cookie), originAddr)
}

// MessageKey completes a sender-side id (MessageID) with where the message
// goes and a digest of what it says, so that two different messages never
// share an id: not to two recipients, not to two terminals, not with two
// texts. A retransmission (same octets, same source) keeps its key. An
// empty id stays empty: such a message has no identity to compare.
func MessageKey(id, recipient, recipTerm, text string) string {
	if id == "" {
		return ""
	}
	return idHash(id, msp.Fold(recipient), msp.Fold(recipTerm), text)
}

// idHash is the first 12 octets of SHA-256 over parts, each ended by NUL
// (names and cookies hold no NUL, so the parts cannot run into each other),
// in hex. SHA-256 rather than a cheaper keyed hash: ids cross nodes and
// decide what counts as a repeat, so a collision an outsider could aim
// would make a message be dropped as already delivered. The input is
// gathered in a stack buffer, so the only allocation is the result.
func idHash(parts ...string) string {
	out := idHashArray(parts...)
	return string(out[:])
}

// idHashArray is idHash without the string: the hex digits in an array.
func idHashArray(parts ...string) [24]byte {
	var in [576]byte
	b := in[:0]
	for _, p := range parts {
		b = append(b, p...)
		b = append(b, 0)
	}
	sum := sha256.Sum256(b)
	var out [24]byte
	hex.Encode(out[:], sum[:12])
	return out
}

// FullMessageKey is MessageKey(MessageID(sender, senderTerm, cookie,
// originAddr), recipient, recipTerm, text) in one allocation instead of
// two: the ingress knows both halves at once. Send makes it from the
// delivery when its ID is empty.
func FullMessageKey(sender, senderTerm, cookie, originAddr, recipient, recipTerm, text string) string {
	id := idHashArray(msp.Fold(sender), msp.Fold(senderTerm), msp.Fold(cookie), originAddr)
	return idHash(string(id[:]), msp.Fold(recipient), msp.Fold(recipTerm), text)
}

// Terminal is a local delivery endpoint: one signed-in session terminal.
type Terminal interface {
	// Deliver hands d to the terminal. It must not block for long: it
	// queues d for the client and returns nil, or returns an error saying
	// why it refused (wrap ErrBlocked, ErrBusy, ErrTerminalGone or
	// ErrTerminalSlow). It may wait a short, bounded time for a busy client
	// to make room (flow control) before refusing as slow; that wait ends
	// with ctx too (the delivery's deadline, from the ingress node).
	Deliver(ctx context.Context, d *Delivery) error
	// Kick tells the terminal that another sign-in took over its (user,
	// terminal) name; the session should say so to its client and close.
	Kick(reason string)
}

// AckTerminal is a Terminal whose client may acknowledge each message end to
// end. The switchboard prefers DeliverAcked when a terminal implements it:
// a message then counts as delivered only once the client has said it has
// the message, and one that is not acknowledged goes back to the mailbox.
type AckTerminal interface {
	Terminal
	// DeliverAcked queues d like Deliver (and may wait as briefly). If the client
	// acknowledges messages it returns true and later sends exactly one
	// value on done: nil when the client acknowledged d.ID, or an error
	// when the session ended first. done has room for that value (capacity
	// 1), so the send never blocks; the caller owns done and may reuse it
	// once it has received the value. If the client does not acknowledge
	// messages it returns false and never uses done; the message then
	// counts as delivered once queued, as with Deliver. A non-nil error is
	// a refusal, as from Deliver, and done is not used. (A channel rather
	// than a callback: a closure per message is garbage on the hot path.)
	DeliverAcked(ctx context.Context, d *Delivery, done chan<- error) (acks bool, err error)
}

// Refusal and failure reasons. Results carry them (possibly wrapped) in Err;
// Status says whether the recipient refused (a decision) or delivery failed
// (a fault). Each has a code on the wire (federation.go).
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
	ErrNotAcked     = errors.New("not acknowledged")
	ErrUnknownUser  = errors.New("unknown user")
	ErrMailboxDown  = errors.New("mailbox unavailable")
	ErrMailboxFull  = errors.New("mailbox full")
	// ErrSenderShareFull: the sender holds its whole share of the
	// recipient's mailbox; other senders may still queue.
	ErrSenderShareFull = errors.New("mailbox share for this sender full")
	ErrDuplicate       = errors.New("already delivered")
	ErrQueuedBefore    = errors.New("already queued")
	ErrInFlight        = errors.New("being delivered here already")
)

// Status is the result of delivering to one terminal.
type Status uint8

// Per-terminal statuses.
const (
	Delivered Status = iota + 1 // accepted by a live session (see Result.Acked)
	Refused                     // the recipient's choice: busy, blocked
	Failed                      // a fault: gone, slow, node down, timeout
	Queued                      // not acknowledged by the session; stored in the mailbox instead
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
	case Queued:
		return "queued"
	}
	return fmt.Sprintf("status(%d)", uint8(s))
}

// Result is the outcome for one target terminal.
type Result struct {
	User   string
	Node   string
	Term   string
	Status Status
	// Err says why the terminal did not take the message (wrapping one of
	// the sentinel errors above when the reason is known); for Delivered
	// and Queued it is nil or a note (ErrDuplicate: a repeat answered from
	// memory; ErrNotAcked: why a message went back to the mailbox).
	Err error
	// Acked: the client acknowledged the message end to end (Delivered
	// only). Without it Delivered means "queued to a live session whose
	// client does not acknowledge".
	Acked bool
}

// accepted reports whether the result earns an MSP '+'.
func (r *Result) accepted() bool { return r.Status == Delivered || r.Status == Queued }

// MailboxResult is what the mailbox did with a message that no terminal
// took (the user is offline, or every target failed).
type MailboxResult struct {
	User      string // canonical owner of the mailbox
	Stored    bool   // the store confirmed it: the sender may be told '+queued'
	Duplicate bool   // the store already held a message with this id
	Err       error  // why it was not stored (wraps ErrMailboxDown, ErrMailboxFull, ErrSenderShareFull)
}

// Outcome is the folded result of one Send.
type Outcome struct {
	Recipient string   // as addressed
	RecipTerm string   // as addressed
	Results   []Result // one per selected terminal; empty when nothing matched
	Err       error    // set when no terminal was selected (ErrNoSuchUser, ErrNoTerminal, ErrUnknownUser, ...)
	// Mailbox is set when the mailbox was asked to keep the message.
	Mailbox *MailboxResult
	// Room is set, and nothing else, for a message to a room ("#name").
	Room *RoomResult

	// fallback: Results[0] is the terminal that took the message after the
	// more suitable ones in Results[1:] failed ("the right terminal" rule).
	fallback bool
	// one is Results' storage for a single terminal, the usual case: it
	// spares an allocation per message.
	one [1]Result
	// entry is the storage of the selected terminal when there is one.
	entry [1]principal.Entry
}

// Delivered reports whether the message reached a delivery service: at
// least one terminal accepted it, or it is stored in the recipient's
// mailbox. That is what earns an MSP '+'; Summary says which.
func (o *Outcome) Delivered() bool {
	if o.Room != nil {
		return o.Room.Err == nil
	}
	if o.Mailbox != nil && o.Mailbox.Stored {
		return true
	}
	for i := range o.Results {
		if o.Results[i].accepted() {
			return true
		}
	}
	return false
}

// Summary is the MSP reply explanation (without the '+'/'-'): it says what
// happened, e.g. "delivered to alice at pts/1 on hosta", "queued for alice"
// or "alice: busy, not accepting messages". It is plain printable
// ASCII/Latin-1.
func (o *Outcome) Summary() string {
	if o.Room != nil {
		return o.Room.summary()
	}
	who := o.Recipient
	if who == "" {
		// Any user of the node: name what was asked for, the terminal
		// (issue 14: "-console: no such terminal" named the wrong thing).
		who = o.RecipTerm
		if who == "" {
			who = "console"
		}
	}
	nbad := 0
	for i := range o.Results {
		if !o.Results[i].accepted() {
			nbad++
		}
	}
	if o.Mailbox == nil && o.Err == nil && nbad == 0 && len(o.Results) == 1 {
		// The usual answer, one terminal took it: built in one buffer,
		// since every message pays for it.
		return o.first(nil)
	}
	var bad []string
	for _, r := range o.Results {
		if !r.accepted() {
			bad = append(bad, r.Term+"@"+r.Node+" "+errText(r.Err))
		}
	}
	if mb := o.Mailbox; mb != nil {
		if mb.Stored {
			notes := bad
			if mb.Duplicate {
				notes = append([]string{ErrQueuedBefore.Error()}, notes...)
			}
			return "queued for " + mb.User + parenthesised(notes)
		}
		base := ""
		if o.Err != nil {
			base = who + ": " + o.Err.Error()
		} else {
			base = o.terminalSummary(who, bad)
		}
		return base + "; " + errText(mb.Err)
	}
	if o.Err != nil {
		return who + ": " + o.Err.Error()
	}
	return o.terminalSummary(who, bad)
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func parenthesised(notes []string) string {
	if len(notes) == 0 {
		return ""
	}
	return " (" + strings.Join(notes, "; ") + ")"
}

// first describes Results[0], the terminal that took the message (after
// the ones in bad failed, when o.fallback).
func (o *Outcome) first(bad []string) string {
	r := o.Results[0]
	var buf [160]byte
	b := buf[:0]
	if r.Status == Queued {
		b = append(b, "queued for "...)
		b = append(b, r.User...)
	} else {
		b = append(b, "delivered to "...)
		b = append(b, r.User...)
		b = append(b, " at "...)
		b = append(b, r.Term...)
		b = append(b, " on "...)
		b = append(b, r.Node...)
	}
	notes := 0
	note := func() {
		if notes == 0 {
			b = append(b, " ("...)
		} else {
			b = append(b, "; "...)
		}
		notes++
	}
	switch {
	case r.Status == Queued:
		note()
		b = append(b, r.Term...)
		b = append(b, '@')
		b = append(b, r.Node...)
		b = append(b, ' ')
		b = append(b, errText(r.Err)...)
	case r.Err != nil:
		note()
		b = append(b, r.Err.Error()...)
	case r.Acked:
		note()
		b = append(b, "acknowledged"...)
	}
	if o.fallback {
		note()
		b = append(b, "after "...)
		for i, s := range bad {
			if i > 0 {
				b = append(b, ", "...)
			}
			b = append(b, s...)
		}
	}
	if notes > 0 {
		b = append(b, ')')
	}
	return string(b)
}

// terminalSummary describes per-terminal results; bad lists the terminals
// that did not take the message.
func (o *Outcome) terminalSummary(who string, bad []string) string {
	var ok []string
	for _, r := range o.Results {
		if r.accepted() {
			ok = append(ok, r.Term+"@"+r.Node)
		}
	}
	var b strings.Builder
	switch {
	case o.fallback, len(ok) == 1 && len(bad) == 0:
		return o.first(bad)
	case len(ok) > 0:
		fmt.Fprintf(&b, "delivered to %s at %d of %d terminals: %s", who, len(ok), len(o.Results), strings.Join(ok, " "))
		if len(bad) > 0 {
			b.WriteString("; not: " + strings.Join(bad, ", "))
		}
	case len(bad) == 1:
		r := o.Results[0]
		fmt.Fprintf(&b, "%s at %s on %s: %s", r.User, r.Term, r.Node, errText(r.Err))
	default:
		fmt.Fprintf(&b, "%s: not delivered: %s", who, strings.Join(bad, ", "))
	}
	return b.String()
}
