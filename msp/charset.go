package msp

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// ErrNotLatin1 is returned by [UTF8ToLatin1] for text ISO 8859-1 cannot hold.
var ErrNotLatin1 = errors.New("msp: text is not representable in ISO 8859-1")

// charClass is the set of octets a part may hold.
type charClass uint8

const (
	// className: printable ISO 8859-1 only; names and cookies are shown on
	// one line, so CR, LF and TAB could forge display lines.
	className charClass = iota
	// classText: RFC 1312 MESSAGE, "printable characters from the ISO 8859/1
	// set ... plus CR, LF and TAB".
	classText
	// classOpaque: SIGNATURE, "a case-insensitive text encoding of some
	// security token" that is never displayed; only NUL, the terminator, is
	// excluded.
	classOpaque
)

// allowed reports whether octet c may appear in a part of class k.
func allowed(c byte, k charClass) bool {
	switch {
	case c == 0:
		return false
	case k == classOpaque:
		return true
	case c >= 0x20 && c <= 0x7E, c >= 0xA0:
		return true
	case k == classText:
		return c == '\r' || c == '\n' || c == '\t'
	}
	return false
}

// checkPart returns an [ErrBadOctet] error naming the first octet of s that
// class k forbids.
func checkPart(name, s string, k charClass) error {
	for i := 0; i < len(s); i++ {
		if c := s[i]; !allowed(c, k) {
			return fmt.Errorf("%w: %s has octet 0x%02X at offset %d", ErrBadOctet, name, c, i)
		}
	}
	return nil
}

// strip returns s without the octets class k forbids, and whether it removed
// any. It allocates only when it removes something.
func strip(s string, k charClass) (string, bool) {
	i := 0
	for i < len(s) && allowed(s[i], k) {
		i++
	}
	if i == len(s) {
		return s, false
	}
	b := []byte(s[:i])
	for ; i < len(s); i++ {
		if allowed(s[i], k) {
			b = append(b, s[i])
		}
	}
	return string(b), true
}

// NormalizeNewlines rewrites every line end of s (LF alone, CR alone, or CR
// LF) as CR LF, the line end RFC 1312 asks for: "New lines should be
// represented using the usual Netascii CR + LF." A lone CR becomes CR LF too,
// so a message cannot return the cursor to overwrite what a terminal shows.
// It returns s itself when nothing changes.
func NormalizeNewlines(s string) string {
	if isCanonicalNewlines(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 16)
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\r' && i+1 < len(s) && s[i+1] == '\n':
			b.WriteString("\r\n")
			i++
		case c == '\r' || c == '\n':
			b.WriteString("\r\n")
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// isCanonicalNewlines reports whether every CR in s is followed by LF and every
// LF preceded by CR.
func isCanonicalNewlines(s string) bool {
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\r':
			if i+1 >= len(s) || s[i+1] != '\n' {
				return false
			}
			i++
		case '\n':
			return false
		}
	}
	return true
}

// foldByte maps an ISO 8859-1 capital letter to its small letter.
func foldByte(c byte) byte {
	if c >= 'A' && c <= 'Z' || c >= 0xC0 && c <= 0xDE && c != 0xD7 {
		return c + 0x20
	}
	return c
}

// EqualFold compares two parts the way RFC 1312 asks ("All comparisons of
// parts (e.g., recipient, cookie, etc.) are case-insensitive"), folding ISO
// 8859-1 letters octet by octet; strings.EqualFold would read the octets as
// UTF-8.
func EqualFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		if foldByte(a[i]) != foldByte(b[i]) {
			return false
		}
	}
	return true
}

// Fold returns s with ISO 8859-1 capitals made small, a map key under which
// parts that [EqualFold] calls equal coincide. It returns s itself when s has
// no capitals.
func Fold(s string) string {
	i := 0
	for i < len(s) && foldByte(s[i]) == s[i] {
		i++
	}
	if i == len(s) {
		return s
	}
	b := []byte(s)
	for ; i < len(b); i++ {
		b[i] = foldByte(b[i])
	}
	return string(b)
}

// Latin1ToUTF8 converts raw ISO 8859-1 octets (as held in [Message]) to UTF-8
// for display or JSON.
func Latin1ToUTF8(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		b.WriteRune(rune(s[i]))
	}
	return b.String()
}

// UTF8ToLatin1 converts UTF-8 text to raw ISO 8859-1 octets for a [Message].
// It fails with [ErrNotLatin1] on invalid UTF-8 or a rune above U+00FF.
func UTF8ToLatin1(s string) (string, error) {
	b := make([]byte, 0, len(s))
	for i, r := range s {
		if r == utf8.RuneError || r > 0xFF {
			return "", fmt.Errorf("%w: rune %q at byte %d", ErrNotLatin1, r, i)
		}
		b = append(b, byte(r))
	}
	return string(b), nil
}
