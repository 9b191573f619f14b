package msp

import (
	"fmt"
	"strings"
)

// Parts are the parts of a message that has already left the MSP wire: a
// delivery handed from one node to another. Every string holds raw ISO
// 8859-1 octets.
type Parts struct {
	Recipient, RecipTerm, Text, Sender, SenderTerm, Cookie, Signature string
}

// ValidateParts re-checks, on receipt from another node, every rule a
// message had to meet on the MSP wire: the character rules of each part
// (RFC 1312: "The checks must be made on any part of the message which may
// be displayed, including the sender's name and terminal"), the cookie's 32
// octets and the total length below 512 octets. Nodes rewrite line ends to
// CR LF after checking a message, so the length counts each CR LF of the
// text as one octet, as the sender may have sent a bare LF; a message whose
// SENDER, SENDER-TERM, COOKIE and SIGNATURE are all empty is measured as
// revision 'A', which has no such parts. The error wraps ErrBadOctet,
// ErrCookieTooLong or ErrTooLong.
func ValidateParts(p Parts) error {
	m := Message{
		Version: Version2, Recipient: p.Recipient, RecipTerm: p.RecipTerm, Text: p.Text,
		Sender: p.Sender, SenderTerm: p.SenderTerm, Cookie: p.Cookie, Signature: p.Signature,
	}
	if m.Sender == "" && m.SenderTerm == "" && m.Cookie == "" && m.Signature == "" {
		m.Version = Version1
	}
	if len(m.Cookie) > MaxCookieLen {
		return fmt.Errorf("%w: %d octets", ErrCookieTooLong, len(m.Cookie))
	}
	if n := m.EncodedLen() - strings.Count(m.Text, "\r\n"); n > MaxLen {
		return fmt.Errorf("%w: %d octets", ErrTooLong, n)
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
