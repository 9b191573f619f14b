package switchboard

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/msprelay/msprelay/identity"
	"github.com/msprelay/msprelay/msp"
	"github.com/msprelay/msprelay/principal"
)

// entryJSON is a delivery as JSON: the mailbox's stored form (EncodeQueued)
// and what FrameJSON shows of a binary frame. MSP text is ISO 8859-1
// octets; JSON strings are UTF-8, so every octet travels as the rune of
// the same value (msp.Latin1ToUTF8), lossless and readable with `nats`.
// The field names are those of the deliver requests of nodes from before
// the binary format, so that entries stored by them still decode; their
// "verified" flag is not read: the sender identity is, and an entry
// without one shows unverified.
type entryJSON struct {
	ID         string       `json:"id"`
	Recipient  string       `json:"recipient"`
	RecipTerm  string       `json:"recip_term"`
	Sender     string       `json:"sender"`
	SenderTerm string       `json:"sender_term"`
	Text       string       `json:"text"`
	Cookie     string       `json:"cookie,omitempty"`
	Signature  []byte       `json:"signature,omitempty"` // opaque: base64
	Origin     originJSON   `json:"origin"`
	Time       time.Time    `json:"time"`
	BudgetMS   int64        `json:"budget_ms,omitempty"` // FrameJSON only: the delivery's time budget
	Targets    []targetJSON `json:"targets"`
}

type originJSON struct {
	Node      string       `json:"node"`
	Addr      string       `json:"addr"`
	Transport string       `json:"transport"`
	Revision  string       `json:"revision,omitempty"`
	Sender    identityJSON `json:"sender"`
}

// identityJSON is an identity.Identity. Names are ISO 8859-1 like the
// message's parts; Method is the method's name (identity.Method.String),
// and a name this node does not know reads as none.
type identityJSON struct {
	User    string `json:"user,omitempty"`
	Claimed string `json:"claimed,omitempty"`
	Method  string `json:"method,omitempty"`
	Node    string `json:"node,omitempty"`
	Source  string `json:"source,omitempty"`
}

type targetJSON struct {
	User string `json:"user"`
	Term string `json:"term"`
}

// maxQueuedTargets bounds the targets of a decoded entry (one is written).
const maxQueuedTargets = maxTargetsPerRequest

func encodeEntry(d *Delivery, targets []principal.Entry, budget time.Duration) ([]byte, error) {
	id := d.Origin.Sender
	w := entryJSON{
		ID: d.ID, Recipient: msp.Latin1ToUTF8(d.Recipient), RecipTerm: msp.Latin1ToUTF8(d.RecipTerm),
		Sender: msp.Latin1ToUTF8(d.Sender), SenderTerm: msp.Latin1ToUTF8(d.SenderTerm),
		Text: msp.Latin1ToUTF8(d.Text), Cookie: msp.Latin1ToUTF8(d.Cookie), Time: d.Time,
		BudgetMS: budget.Milliseconds(),
		Origin: originJSON{Node: d.Origin.Node, Addr: d.Origin.Addr, Transport: d.Origin.Transport, Revision: d.Origin.Revision,
			Sender: identityJSON{User: msp.Latin1ToUTF8(id.User), Claimed: msp.Latin1ToUTF8(id.Claimed),
				Method: id.Method.String(), Node: id.Node, Source: id.Source}},
	}
	if d.Signature != "" {
		w.Signature = []byte(d.Signature)
	}
	for _, e := range targets {
		w.Targets = append(w.Targets, targetJSON{User: msp.Latin1ToUTF8(e.User), Term: msp.Latin1ToUTF8(e.Term)})
	}
	return json.Marshal(&w)
}

func decodeEntry(data []byte) (*Delivery, []targetJSON, error) {
	var w entryJSON
	if err := json.Unmarshal(data, &w); err != nil {
		return nil, nil, fmt.Errorf("switchboard: decode delivery: %w", err)
	}
	if len(w.Targets) == 0 || len(w.Targets) > maxQueuedTargets {
		return nil, nil, fmt.Errorf("switchboard: decode delivery: %d targets", len(w.Targets))
	}
	method, _ := identity.ParseMethod(w.Origin.Sender.Method)
	d := &Delivery{ID: w.ID, Signature: string(w.Signature), Time: w.Time,
		Origin: Origin{Node: w.Origin.Node, Addr: w.Origin.Addr, Transport: w.Origin.Transport, Revision: w.Origin.Revision,
			Sender: identity.Identity{Method: method, Node: w.Origin.Sender.Node, Source: w.Origin.Sender.Source}}}
	for _, f := range []struct {
		dst *string
		src string
	}{{&d.Recipient, w.Recipient}, {&d.RecipTerm, w.RecipTerm}, {&d.Sender, w.Sender},
		{&d.SenderTerm, w.SenderTerm}, {&d.Text, w.Text}, {&d.Cookie, w.Cookie},
		{&d.Origin.Sender.User, w.Origin.Sender.User}, {&d.Origin.Sender.Claimed, w.Origin.Sender.Claimed}} {
		v, err := msp.UTF8ToLatin1(f.src)
		if err != nil {
			return nil, nil, err
		}
		*f.dst = v
	}
	for i := range w.Targets {
		var err error
		if w.Targets[i].User, err = msp.UTF8ToLatin1(w.Targets[i].User); err != nil {
			return nil, nil, err
		}
		if w.Targets[i].Term, err = msp.UTF8ToLatin1(w.Targets[i].Term); err != nil {
			return nil, nil, err
		}
	}
	return d, w.Targets, nil
}

// EncodeQueued encodes d as a mailbox stores it for user: JSON with one
// target, user at d.RecipTerm, carrying d's sender identity unchanged
// (the vouching node included, which the mailbox may hold against the
// node that published the entry).
func EncodeQueued(d *Delivery, user string) ([]byte, error) {
	return encodeEntry(d, []principal.Entry{{User: principal.CanonicalUser(user), Term: d.RecipTerm}}, 0)
}

// DecodeQueued decodes what EncodeQueued wrote. Names and text must be ISO
// 8859-1. The identity is returned as stored: whether to believe it is
// the reader's decision (an entry a node could not have written is shown
// unverified).
func DecodeQueued(data []byte) (*Delivery, error) {
	d, _, err := decodeEntry(data)
	return d, err
}
