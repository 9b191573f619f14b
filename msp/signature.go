package msp

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

// RFC 1312 leaves SIGNATURE to future agreement ("a signature ... may be
// used to authenticate the sender"). msprelay defines one scheme, named by a
// version prefix so that others can follow:
//
//	SIGNATURE = "hm1:" base64url-no-padding(HMAC-SHA256(secret, input))
//	input     = "msprelay-msp-sig-1" NUL RECIPIENT NUL RECIP-TERM NUL
//	            MESSAGE NUL SENDER NUL SENDER-TERM NUL COOKIE NUL
//
// where secret is the SENDER's shared secret (the one the session protocol's
// challenge-response uses), each part is the raw octets as sent except that
// MESSAGE's line ends are CR LF (the server normalises LF and CR alone to CR
// LF before it verifies), and NUL is one zero octet. The signature is 47
// octets, leaving 464 for the rest of a message.

// SignaturePrefix starts every signature of the scheme [Sign] makes.
const SignaturePrefix = "hm1:"

// signatureContext separates this scheme's MACs from any other use of the
// same secret (the session challenge signs "nonce|user|term").
const signatureContext = "msprelay-msp-sig-1"

// Signature errors, wrapped with detail by [Verify].
var (
	// ErrNoSignature: the message has an empty SIGNATURE part.
	ErrNoSignature = errors.New("msp: message is not signed")
	// ErrSignatureScheme: the SIGNATURE part is not of a scheme we know.
	ErrSignatureScheme = errors.New("msp: unknown signature scheme")
	// ErrBadSignature: the signature does not match the message and secret.
	ErrBadSignature = errors.New("msp: signature does not match")
)

// signatureMAC is the HMAC of m's parts other than SIGNATURE.
func signatureMAC(m *Message, secret []byte) []byte {
	mac := hmac.New(sha256.New, secret)
	for _, p := range [...]string{signatureContext, m.Recipient, m.RecipTerm, NormalizeNewlines(m.Text), m.Sender, m.SenderTerm, m.Cookie} {
		mac.Write([]byte(p))
		mac.Write([]byte{0})
	}
	return mac.Sum(nil)
}

// Sign returns the SIGNATURE for m, keyed by the sender's secret; m's own
// Signature is ignored. A signed message should carry a COOKIE: the
// signature proves who wrote the message, not when, and the cookie lets
// receivers tell a replay of an old message (see docs/MSP.md).
func Sign(m *Message, secret []byte) string {
	return SignaturePrefix + base64.RawURLEncoding.EncodeToString(signatureMAC(m, secret))
}

// Verify checks m's SIGNATURE against the sender's secret. It returns nil
// only for a signature of the "hm1" scheme that matches every other part.
func Verify(m *Message, secret []byte) error {
	if m.Signature == "" {
		return ErrNoSignature
	}
	enc, ok := strings.CutPrefix(m.Signature, SignaturePrefix)
	if !ok {
		scheme, _, _ := strings.Cut(m.Signature, ":")
		return fmt.Errorf("%w: %.16q", ErrSignatureScheme, scheme)
	}
	if got, err := base64.RawURLEncoding.Strict().DecodeString(enc); err != nil || len(got) != sha256.Size {
		return fmt.Errorf("%w: not %d octets of base64url", ErrBadSignature, sha256.Size)
	}
	// Compare the canonical text, so that no second spelling of the same
	// octets (base64 skips CR and LF) verifies.
	if !hmac.Equal([]byte(m.Signature), []byte(Sign(m, secret))) {
		return ErrBadSignature
	}
	return nil
}
