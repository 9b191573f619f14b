package msp

import (
	"bytes"
	"errors"
	"fmt"
)

// Protocol revisions, the first octet of every message.
const (
	// Version1 is RFC 1159's revision: "currently decimal 65, 'A'".
	Version1 byte = 'A'
	// Version2 is RFC 1312's revision: "currently decimal 66, 'B'".
	Version2 byte = 'B'
)

// Size limits from RFC 1312.
const (
	// MaxLen is the largest encoded message: "The total length of the message
	// shall be less than 512 octets. This includes all eight parts, and any
	// terminating nulls."
	MaxLen = 511
	// MaxCookieLen is from RFC 1312: "The maximum length of a cookie is 32
	// octets, excluding the terminating null."
	MaxCookieLen = 32
)

// Part counts after the revision octet; each part ends with a NUL.
const (
	partsV1 = 3
	partsV2 = 7
)

// Sentinel errors, one per rule a message can break. Errors returned by this
// package wrap them with the detail (which part, which octet, which offset).
var (
	// ErrVersion: the first octet is neither 'A' nor 'B' (or the input is empty).
	ErrVersion = errors.New("msp: unknown protocol revision")
	// ErrTooLong: the encoded message would be 512 octets or more.
	ErrTooLong = errors.New("msp: message is 512 octets or longer")
	// ErrParts: the wrong number of NUL-terminated parts for the revision.
	ErrParts = errors.New("msp: wrong number of parts")
	// ErrCookieTooLong: COOKIE is longer than 32 octets.
	ErrCookieTooLong = errors.New("msp: cookie longer than 32 octets")
	// ErrBadOctet: a part holds an octet its character rules forbid.
	ErrBadOctet = errors.New("msp: illegal octet")
	// ErrNoSender: SENDER is empty and the server requires one.
	ErrNoSender = errors.New("msp: empty sender")
)

// Message is one MSP message. Every string holds raw ISO 8859-1 octets.
//
// A Message from [Parse] refers to no caller memory; the handler may keep it.
type Message struct {
	// Version is [Version1] ('A') or [Version2] ('B'); zero means 'B' when
	// encoding.
	Version byte
	// Recipient is the user the message is for; empty means "any user of
	// the destination system".
	Recipient string
	// RecipTerm is the terminal: empty lets the server choose, "*" means all.
	RecipTerm string
	// Text is the MESSAGE part.
	Text string
	// Sender is the sending user (revision 'B' only).
	Sender string
	// SenderTerm is the sending user's terminal (revision 'B' only).
	SenderTerm string
	// Cookie tells retransmissions apart from new messages (revision 'B' only).
	Cookie string
	// Signature is an opaque token that may prove the sender (revision 'B' only).
	Signature string
}

// Parse decodes exactly one complete message: b must hold the revision octet,
// every part and every terminating NUL, and nothing after the last NUL. It
// checks every rule of [Message.Validate] and keeps the octets as sent (no
// stripping, no line-end rewriting).
func Parse(b []byte) (*Message, error) {
	m := new(Message)
	if err := m.UnmarshalBinary(b); err != nil {
		return nil, err
	}
	return m, nil
}

// UnmarshalBinary is [Parse] into m; m is left unchanged on error.
func (m *Message) UnmarshalBinary(b []byte) error {
	var out Message
	if err := out.decode(b); err != nil {
		return err
	}
	if err := out.Validate(); err != nil {
		return err
	}
	*m = out
	return nil
}

// decode splits b into parts and checks the framing rules only (length,
// revision, part count), so the server can strip bad octets before
// [Message.Validate] judges them.
func (m *Message) decode(b []byte) error {
	if len(b) == 0 {
		return fmt.Errorf("%w: empty input", ErrVersion)
	}
	if len(b) > MaxLen {
		return fmt.Errorf("%w: %d octets", ErrTooLong, len(b))
	}
	want, err := partCount(b[0])
	if err != nil {
		return err
	}
	body := b[1:]
	got := bytes.Count(body, []byte{0})
	switch {
	case got < want:
		return fmt.Errorf("%w: %d NUL-terminated parts, revision %c needs %d", ErrParts, got, b[0], want)
	case got > want:
		return fmt.Errorf("%w: more than %d NUL-terminated parts", ErrParts, want)
	case body[len(body)-1] != 0:
		return fmt.Errorf("%w: %d octets after the last part's NUL", ErrParts, len(body)-1-bytes.LastIndexByte(body, 0))
	}
	// One string for all parts: the parts are substrings of it, so decoding
	// costs a single allocation.
	s := string(body)
	var fields [partsV2]string
	for i := 0; i < want; i++ {
		j := 0
		for s[j] != 0 {
			j++
		}
		fields[i] = s[:j]
		s = s[j+1:]
	}
	*m = Message{Version: b[0], Recipient: fields[0], RecipTerm: fields[1], Text: fields[2]}
	if b[0] == Version2 {
		m.Sender, m.SenderTerm, m.Cookie, m.Signature = fields[3], fields[4], fields[5], fields[6]
	}
	return nil
}

// partCount is the number of NUL-terminated parts revision v has.
func partCount(v byte) (int, error) {
	switch v {
	case Version1:
		return partsV1, nil
	case Version2:
		return partsV2, nil
	}
	return 0, fmt.Errorf("%w: first octet 0x%02X, want 'A' or 'B'", ErrVersion, v)
}

// version is m.Version with the zero value read as 'B'.
func (m *Message) version() byte {
	if m.Version == 0 {
		return Version2
	}
	return m.Version
}

// EncodedLen is the number of octets [Message.AppendBinary] writes.
func (m *Message) EncodedLen() int {
	n := 1 + len(m.Recipient) + len(m.RecipTerm) + len(m.Text) + partsV1
	if m.version() != Version1 {
		n += len(m.Sender) + len(m.SenderTerm) + len(m.Cookie) + len(m.Signature) + partsV2 - partsV1
	}
	return n
}

// Validate checks every rule a message must meet on the wire: revision, total
// length, cookie length and the character rules of each part. MESSAGE may
// hold printable ISO 8859-1 (0x20-0x7E, 0xA0-0xFF) plus CR, LF and TAB;
// RECIPIENT, RECIP-TERM, SENDER, SENDER-TERM and COOKIE only printable ISO
// 8859-1, since they are shown on one line; SIGNATURE any octet but NUL. So
// ESC sequences, DEL and C1 controls such as 0x9B (CSI) are refused. RFC 1312: "The checks must be made on any part of the message
// which may be displayed, including the sender's name and terminal."
func (m *Message) Validate() error {
	v := m.version()
	if _, err := partCount(v); err != nil {
		return err
	}
	if v == Version1 && (m.Sender != "" || m.SenderTerm != "" || m.Cookie != "" || m.Signature != "") {
		return fmt.Errorf("%w: revision A has no SENDER, SENDER-TERM, COOKIE or SIGNATURE part", ErrParts)
	}
	if n := m.EncodedLen(); n > MaxLen {
		return fmt.Errorf("%w: %d octets", ErrTooLong, n)
	}
	if len(m.Cookie) > MaxCookieLen {
		return fmt.Errorf("%w: %d octets", ErrCookieTooLong, len(m.Cookie))
	}
	ps, n := m.parts()
	for i := range n {
		name, class := partRule(i)
		if err := checkPart(name, *ps[i], class); err != nil {
			return err
		}
	}
	return nil
}

// Sanitize removes every octet the character rules forbid, instead of
// rejecting the message, and reports whether it removed any. RFC 1312: "the
// client should strip them from the message before it is transmitted".
func (m *Message) Sanitize() bool {
	changed := false
	ps, n := m.parts()
	for i := range n {
		_, class := partRule(i)
		if s, ok := strip(*ps[i], class); ok {
			*ps[i] = s
			changed = true
		}
	}
	return changed
}

// parts points at m's n parts in wire order. It returns an array, and the
// names live apart in partRule, so that validation allocates nothing.
func (m *Message) parts() (ps [partsV2]*string, n int) {
	ps = [partsV2]*string{&m.Recipient, &m.RecipTerm, &m.Text, &m.Sender, &m.SenderTerm, &m.Cookie, &m.Signature}
	if m.version() == Version1 {
		return ps, partsV1
	}
	return ps, partsV2
}

// partRule names the i-th part (wire order) and gives its character rule.
func partRule(i int) (string, charClass) {
	switch i {
	case 0:
		return "RECIPIENT", className
	case 1:
		return "RECIP-TERM", className
	case 2:
		return "MESSAGE", classText
	case 3:
		return "SENDER", className
	case 4:
		return "SENDER-TERM", className
	case 5:
		return "COOKIE", className
	}
	return "SIGNATURE", classOpaque
}

// MarshalBinary encodes m after checking it with [Message.Validate].
func (m *Message) MarshalBinary() ([]byte, error) {
	return m.AppendBinary(make([]byte, 0, m.EncodedLen()))
}

// AppendBinary appends the encoding of m to dst after checking it with
// [Message.Validate]. It allocates nothing when dst has room for
// [Message.EncodedLen] more octets. On error dst is returned unchanged.
func (m *Message) AppendBinary(dst []byte) ([]byte, error) {
	if err := m.Validate(); err != nil {
		return dst, err
	}
	dst = append(dst, m.version())
	dst = appendPart(dst, m.Recipient)
	dst = appendPart(dst, m.RecipTerm)
	dst = appendPart(dst, m.Text)
	if m.version() == Version1 {
		return dst, nil
	}
	dst = appendPart(dst, m.Sender)
	dst = appendPart(dst, m.SenderTerm)
	dst = appendPart(dst, m.Cookie)
	return appendPart(dst, m.Signature), nil
}

func appendPart(dst []byte, s string) []byte {
	return append(append(dst, s...), 0)
}
