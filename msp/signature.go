package msp

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// RFC 1312 leaves SIGNATURE to future agreement ("a signature ... may be
// used to authenticate the sender"). msprelay defines two schemes, named by
// a version prefix so that others can follow (docs/MSP.md, "Signature"):
//
//	hm1: SIGNATURE = "hm1:" base64url-no-padding(HMAC-SHA256(secret, input1))
//	     input1    = "msprelay-msp-sig-1" NUL RECIPIENT NUL RECIP-TERM NUL
//	                 MESSAGE NUL SENDER NUL SENDER-TERM NUL COOKIE NUL
//
//	hm2: SIGNATURE = "hm2:" TIME ":" base64url-no-padding(HMAC-SHA256(secret, input2))
//	     input2    = "msprelay-msp-sig-2" NUL TIME NUL RECIPIENT NUL
//	                 RECIP-TERM NUL MESSAGE NUL SENDER NUL SENDER-TERM NUL
//	                 COOKIE NUL
//	     TIME      = Unix time in seconds, decimal, no sign, no leading zero
//
// where secret is the SENDER's shared secret (the one the session protocol's
// challenge-response uses), each part is the raw octets as sent except that
// MESSAGE's line ends are CR LF (the server normalises LF and CR alone to CR
// LF before it verifies), and NUL is one zero octet. hm1 proves who wrote a
// message; hm2 also when, so that a receiver can refuse an old capture. An
// hm1 signature is 47 octets, an hm2 one 58 (with a 10-digit time).

// SignaturePrefix starts every signature of the untimed scheme [Sign] makes.
const SignaturePrefix = "hm1:"

// SignaturePrefixTimed starts every signature of the timed scheme [SignAt]
// makes.
const SignaturePrefixTimed = "hm2:"

// signatureContext and signatureContextTimed separate each scheme's MACs
// from each other and from any other use of the same secret (the session
// challenge signs "nonce|user|term").
const (
	signatureContext      = "msprelay-msp-sig-1"
	signatureContextTimed = "msprelay-msp-sig-2"
)

// maxTimeDigits bounds TIME: 19 digits hold every non-negative int64.
const maxTimeDigits = 19

// Signature errors, wrapped with detail by [Verify] and [VerifyAt].
var (
	// ErrNoSignature: the message has an empty SIGNATURE part.
	ErrNoSignature = errors.New("msp: message is not signed")
	// ErrSignatureScheme: the SIGNATURE part is not of a scheme we know.
	ErrSignatureScheme = errors.New("msp: unknown signature scheme")
	// ErrBadSignature: the signature is malformed or does not match the
	// message and secret.
	ErrBadSignature = errors.New("msp: signature does not match")
	// ErrSignatureTooOld: a genuine hm2 signature made longer ago than the
	// verifier accepts (a replay, or a sender whose clock is behind).
	ErrSignatureTooOld = errors.New("msp: signature too old")
	// ErrSignatureTooNew: a genuine hm2 signature whose time is further
	// ahead than the verifier allows for clock skew.
	ErrSignatureTooNew = errors.New("msp: signature time is in the future")
)

// signatureMAC is the HMAC of m's parts other than SIGNATURE, after the
// scheme's context and (hm2) the time text.
func signatureMAC(m *Message, secret []byte, head ...string) []byte {
	mac := hmac.New(sha256.New, secret)
	for _, p := range head {
		mac.Write([]byte(p))
		mac.Write([]byte{0})
	}
	for _, p := range [...]string{m.Recipient, m.RecipTerm, NormalizeNewlines(m.Text), m.Sender, m.SenderTerm, m.Cookie} {
		mac.Write([]byte(p))
		mac.Write([]byte{0})
	}
	return mac.Sum(nil)
}

// Sign returns the hm1 SIGNATURE for m, keyed by the sender's secret; m's
// own Signature is ignored. hm1 proves who wrote the message, not when: a
// captured copy stays valid for ever, and only the duplicate filter
// (within --dedup-window) stops a replay. New signers should use [SignAt].
func Sign(m *Message, secret []byte) string {
	return SignaturePrefix + base64.RawURLEncoding.EncodeToString(signatureMAC(m, secret, signatureContext))
}

// SignAt returns the hm2 SIGNATURE for m made at t (to the second; a time
// before 1970 counts as 0), keyed by the sender's secret; m's own Signature
// is ignored.
func SignAt(m *Message, secret []byte, t time.Time) string {
	ts := strconv.FormatInt(max(t.Unix(), 0), 10)
	return SignaturePrefixTimed + ts + ":" + base64.RawURLEncoding.EncodeToString(signatureMAC(m, secret, signatureContextTimed, ts))
}

// parseTimed splits an hm2 signature into its TIME text, the time, and the
// MAC text. ok is false when sig is not of the hm2 form: prefix, TIME of
// 1..19 digits without a leading zero (0 itself allowed) that fits an
// int64, ':'.
func parseTimed(sig string) (ts string, t time.Time, enc string, ok bool) {
	rest, ok := strings.CutPrefix(sig, SignaturePrefixTimed)
	if !ok {
		return "", time.Time{}, "", false
	}
	ts, enc, ok = strings.Cut(rest, ":")
	if !ok || len(ts) == 0 || len(ts) > maxTimeDigits || (len(ts) > 1 && ts[0] == '0') {
		return "", time.Time{}, "", false
	}
	for i := 0; i < len(ts); i++ {
		if ts[i] < '0' || ts[i] > '9' {
			return "", time.Time{}, "", false
		}
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return "", time.Time{}, "", false
	}
	return ts, time.Unix(sec, 0), enc, true
}

// SignatureTime returns the time an hm2 signature says it was made. ok is
// false for a signature of another scheme or a malformed one. The time is
// only as good as the signature: check it with [VerifyAt].
func SignatureTime(sig string) (t time.Time, ok bool) {
	_, t, _, ok = parseTimed(sig)
	return t, ok
}

// checkMAC reports whether enc is the canonical base64url spelling of want.
func checkMAC(enc string, want []byte) error {
	if got, err := base64.RawURLEncoding.Strict().DecodeString(enc); err != nil || len(got) != sha256.Size {
		return fmt.Errorf("%w: not %d octets of base64url", ErrBadSignature, sha256.Size)
	}
	// Compare the canonical text, so that no second spelling of the same
	// octets (base64 skips CR and LF) verifies.
	if !hmac.Equal([]byte(enc), []byte(base64.RawURLEncoding.EncodeToString(want))) {
		return ErrBadSignature
	}
	return nil
}

// Verify checks m's SIGNATURE against the sender's secret: nil only for an
// hm1 or hm2 signature that matches every other part (and, for hm2, its
// own TIME). It does not judge an hm2 signature's time; a receiver that
// accepts messages from the network uses [VerifyAt].
func Verify(m *Message, secret []byte) error {
	if m.Signature == "" {
		return ErrNoSignature
	}
	if enc, ok := strings.CutPrefix(m.Signature, SignaturePrefix); ok {
		return checkMAC(enc, signatureMAC(m, secret, signatureContext))
	}
	if strings.HasPrefix(m.Signature, SignaturePrefixTimed) {
		ts, _, enc, ok := parseTimed(m.Signature)
		if !ok {
			return fmt.Errorf("%w: hm2 wants \"hm2:\" TIME \":\" MAC with TIME in decimal seconds", ErrBadSignature)
		}
		return checkMAC(enc, signatureMAC(m, secret, signatureContextTimed, ts))
	}
	scheme, _, _ := strings.Cut(m.Signature, ":")
	return fmt.Errorf("%w: %.16q", ErrSignatureScheme, scheme)
}

// VerifyAt is [Verify] for a receiver at time now: a genuine hm2 signature
// must also have been made no more than maxAge before now
// ([ErrSignatureTooOld]) and no more than maxSkew after it
// ([ErrSignatureTooNew]). The time is judged only once the MAC matched, so
// those two errors mean the sender's secret made the signature. hm1
// signatures carry no time and are judged by their MAC alone.
func VerifyAt(m *Message, secret []byte, now time.Time, maxAge, maxSkew time.Duration) error {
	if err := Verify(m, secret); err != nil {
		return err
	}
	t, ok := SignatureTime(m.Signature)
	if !ok {
		return nil // hm1
	}
	switch age := now.Sub(t); {
	case age > maxAge:
		return fmt.Errorf("%w: made %v ago, at most %v accepted", ErrSignatureTooOld, age.Truncate(time.Second), maxAge)
	case -age > maxSkew:
		return fmt.Errorf("%w: %v ahead, at most %v accepted", ErrSignatureTooNew, (-age).Truncate(time.Second), maxSkew)
	}
	return nil
}
