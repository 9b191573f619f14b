package presence

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"
)

// Who may speak for a node's table.
//
// Memberlist does not tell a delegate which member sent a user message, and
// the gossip key, shared by every member, proves only that the sender is
// some member. Without more, any member could broadcast a change or a table
// in another node's name and rewrite or freeze that node's entries
// everywhere. So every node signs what it says about its own table:
//
//   - At boot a node makes an ed25519 key pair. The public key rides in its
//     memberlist metadata next to its digest (21 + 32 bytes of the 512
//     allowed), so every member learns it with the membership itself.
//   - Every change, delta and table is signed by its origin: the message is
//     followed by a 64-byte ed25519 signature over all of it. A receiver
//     applies a change or table only if the signature verifies with the
//     key the origin announced; relays pass the origin's bytes on unchanged,
//     so a change re-queued by a third node still verifies.
//   - A push-pull (LocalState) carries only the sender's own table, signed;
//     other tables are pulled from their owners (pulls are already how
//     missed changes are repaired), so no node relays a table it cannot sign.
//   - A key is pinned to the boot (epoch) it was announced with: metadata
//     that announces a different key for the same or an earlier boot is
//     ignored and logged, so a member cannot swap a live node's key for its
//     own.
//
// Pull requests stay unsigned: a forged one only makes a node send its own
// signed table to a member.
//
// What this does not stop: memberlist's own membership messages (alive,
// suspect, dead) carry no per-node authentication, so a key holder can
// still disturb membership (declare a node dead until it refutes, or
// announce a fake later boot of it). Closing that needs per-node
// certificates, which memberlist cannot check.

// sigLen is the length of the signature that ends a signed message.
const sigLen = ed25519.SignatureSize

// metaLen is the length of a node's memberlist metadata: digest and key.
const metaLen = digestLen + ed25519.PublicKeySize

// ErrBadSignature is the error for a change or table whose signature does
// not verify with its origin's announced key.
var ErrBadSignature = errors.New("presence: gossip message not signed by its origin")

// encodeMeta is a node's memberlist metadata: its digest, then its key.
func encodeMeta(d digest, pub ed25519.PublicKey) []byte {
	return append(encodeDigest(d), pub...)
}

// decodeMeta splits metadata into digest and key.
func decodeMeta(b []byte) (digest, ed25519.PublicKey, error) {
	if len(b) != metaLen {
		return digest{}, nil, fmt.Errorf("%w: node metadata of %d bytes, want %d", ErrMalformed, len(b), metaLen)
	}
	d, err := decodeDigest(b[:digestLen])
	if err != nil {
		return digest{}, nil, err
	}
	return d, ed25519.PublicKey(bytes.Clone(b[digestLen:])), nil
}

// seal appends key's signature to msg.
func seal(key ed25519.PrivateKey, msg []byte) []byte {
	return append(msg, ed25519.Sign(key, msg)...)
}

// signedType reports whether messages of type typ end with a signature.
func signedType(typ byte) bool {
	return typ == msgChange || typ == msgDelta || typ == msgTable || typ == msgState
}

// signed is a decoded gossip message with what its signature covers.
type signed struct {
	wireMsg
	body, sig []byte // body is the signed part of the message; sig is nil if unsigned
}

// openMessage decodes a message as it arrives from memberlist: changes,
// tables and states end with their origin's signature, which is split off
// here (and checked by the caller, which knows the keys); pulls have none.
// A state must carry exactly one table, its sender's own.
func openMessage(buf []byte) (signed, error) {
	if len(buf) < 2 {
		return signed{}, fmt.Errorf("%w: truncated", ErrMalformed)
	}
	s := signed{body: buf}
	if signedType(buf[1]) {
		if len(buf) < 2+sigLen {
			return signed{}, fmt.Errorf("%w: %d bytes, too short to be signed", ErrMalformed, len(buf))
		}
		s.body, s.sig = buf[:len(buf)-sigLen], buf[len(buf)-sigLen:]
	}
	m, err := decodeMessage(s.body)
	if err != nil {
		return signed{}, err
	}
	if m.typ == msgState && len(m.tables) != 1 {
		return signed{}, fmt.Errorf("%w: push-pull state with %d tables, want the sender's own", ErrMalformed, len(m.tables))
	}
	s.wireMsg = m
	return s, nil
}

// origin names the node that must have signed s.
func (s *signed) origin() string {
	if s.typ == msgChange || s.typ == msgDelta {
		return s.wireMsg.origin
	}
	if len(s.tables) == 1 {
		return s.tables[0].origin
	}
	return ""
}

// originKey is the key s's origin announced, nil if none. g.mu must be held.
func (g *gossip) originKey(s *signed) ed25519.PublicKey {
	if p := g.peers[s.origin()]; p != nil {
		return p.key
	}
	return nil
}

// verify checks s's signature against key, its origin's announced key. It
// runs without g.mu: a signature check is slow next to the table logic,
// and memberlist waits for g.mu while holding its node lock.
func verify(s *signed, key ed25519.PublicKey) error {
	switch {
	case key == nil:
		return fmt.Errorf("%w: no key known for %q", ErrBadSignature, s.origin())
	case s.sig == nil || !ed25519.Verify(key, s.body, s.sig):
		return fmt.Errorf("%w: %q", ErrBadSignature, s.origin())
	}
	return nil
}
