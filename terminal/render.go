package terminal

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// Charset is the character set a terminal displays.
type Charset uint8

// The charsets a tty can be written in.
const (
	UTF8   Charset = iota // the default: Latin-1 letters become two-octet UTF-8
	Latin1                // ISO 8859-1: letters pass through as they are
	ASCII                 // 7-bit: letters above 0x7F are shown as \xNN
)

// String returns the charset's name as --tty-charset accepts it.
func (c Charset) String() string {
	switch c {
	case UTF8:
		return "UTF-8"
	case Latin1:
		return "ISO-8859-1"
	case ASCII:
		return "ASCII"
	}
	return fmt.Sprintf("charset(%d)", uint8(c))
}

// ErrBadCharset is the error for a charset name ParseCharset does not know.
var ErrBadCharset = errors.New("terminal: unknown charset")

// ParseCharset accepts UTF-8, ISO-8859-1 or ASCII, case-insensitively and
// with the usual aliases (utf8, latin1, us-ascii).
func ParseCharset(s string) (Charset, error) {
	switch strings.ToLower(s) {
	case "utf-8", "utf8":
		return UTF8, nil
	case "iso-8859-1", "iso8859-1", "latin1", "latin-1":
		return Latin1, nil
	case "ascii", "us-ascii":
		return ASCII, nil
	}
	return UTF8, fmt.Errorf("%w %q (want UTF-8, ISO-8859-1 or ASCII)", ErrBadCharset, s)
}

// Render turns ISO 8859-1 text into octets that are safe on a terminal
// displaying cs: nothing it writes can start a control sequence.
//
//   - printable ASCII and TAB pass through;
//   - a line end (CR LF, or LF alone) becomes CR LF;
//   - every other C0 octet and DEL is shown in caret notation ("^[" for
//     ESC, "^M" for a CR that does not end a line, "^?" for DEL), so that
//     neither CSI, OSC nor a cursor movement can arise;
//   - C1 octets (0x80-0x9F, which 8-bit terminals take as CSI, OSC, ...)
//     are shown as \x9b;
//   - letters 0xA0-0xFF become UTF-8 (UTF8), pass through (Latin1), or are
//     shown as \xe9 (ASCII).
//
// Input is ISO 8859-1, so no code point above U+00FF can arise and with it
// no bidi override (U+202A-U+202E, U+2066-U+2069): a UTF-8 sequence in the
// input is taken as Latin-1 letters and C1 octets, and its C1 octets are
// shown as \xNN.
func Render(text string, cs Charset) []byte {
	out := make([]byte, 0, len(text)+len(text)/4)
	return appendRendered(out, text, cs, false)
}

// appendRendered renders text; oneLine shows line ends as ^M ^J too, for
// names in the banner.
func appendRendered(out []byte, text string, cs Charset, oneLine bool) []byte {
	const hex = "0123456789abcdef"
	for i := 0; i < len(text); i++ {
		c := text[i]
		switch {
		case c == '\n' && !oneLine:
			out = append(out, '\r', '\n')
		case c == '\r' && !oneLine && i+1 < len(text) && text[i+1] == '\n':
			out = append(out, '\r', '\n')
			i++
		case c == '\t' && !oneLine:
			out = append(out, c)
		case c < 0x20:
			out = append(out, '^', c+0x40)
		case c < 0x7f:
			out = append(out, c)
		case c == 0x7f:
			out = append(out, '^', '?')
		case c < 0xa0 || cs == ASCII:
			out = append(out, '\\', 'x', hex[c>>4], hex[c&0xf])
		case cs == Latin1:
			out = append(out, c)
		default:
			out = utf8.AppendRune(out, rune(c))
		}
	}
	return out
}

// Message is what a tty shows: who sent it from where, whether the node
// vouches for that, when, and the text.
type Message struct {
	Sender     string    // ISO 8859-1; the name shown ("" is shown as "?")
	Node       string    // the ingress node
	SenderTerm string    // ISO 8859-1; "" leaves out "on TERM"
	Time       time.Time // shown as HH:MM in the node's local time
	Text       string    // ISO 8859-1, CR LF or LF line ends
	// Verified says the node proved that Sender sent it
	// (identity.Identity.Verified). Only then does the banner name the
	// sender plainly; otherwise it says UNVERIFIED, the claimed name and
	// where the message came from.
	Verified bool
	// Source is where an unverified message entered ("192.0.2.1:1234",
	// "session"); "" leaves it out.
	Source string
	// RealUser is the local user the kernel named as the sender of a
	// message that claims another name (identity.Identity.Impersonation);
	// "" when there is none.
	RealUser string
}

// FooterAfter is how many text lines a message may have before Format
// closes it with a footer that names the sender again, as msp listen
// does: a long text pushes its banner off the screen.
const FooterAfter = 5

// QuotePrefix is put before a text line that could pass for a banner or
// the end marker (see Format).
const QuotePrefix = "> "

// Format renders m the way write(1) shows a message:
//
//	Message from SENDER@ORIGIN-NODE on SENDER-TERM at HH:MM ...
//	the text
//	EOF
//
// for a verified sender, and for any other
//
//	Message from UNVERIFIED "SENDER" (via ORIGIN-NODE from SOURCE) on SENDER-TERM at HH:MM ...
//
// with "local user REAL, " before "via" when a local user claimed another
// name. Every line ends in CR LF, every part is rendered by Render and the
// names on one line. A text line that could pass for a banner or the end
// marker (forgesFrame) is shown behind QuotePrefix, and a text of more
// than FooterAfter lines ends with "End of message from ..." before EOF,
// so the text cannot close the message and open a forged one.
func Format(m Message, cs Charset) []byte {
	out := make([]byte, 0, 96+len(m.Text)+len(m.Text)/4)
	out = append(out, "\r\nMessage from "...)
	out = appendFrom(out, &m, cs)
	if m.SenderTerm != "" {
		out = append(out, " on "...)
		out = appendRendered(out, m.SenderTerm, cs, true)
	}
	out = append(out, " at "...)
	out = m.Time.Local().AppendFormat(out, "15:04")
	out = append(out, " ...\r\n"...)
	lines := 0
	for rest := m.Text; rest != ""; lines++ {
		var l string
		l, rest, _ = strings.Cut(rest, "\n")
		l = strings.TrimSuffix(l, "\r")
		start := len(out)
		out = appendRendered(out, l, cs, false)
		if forgesFrame(out[start:]) {
			out = slices.Insert(out, start, []byte(QuotePrefix)...)
		}
		out = append(out, '\r', '\n')
	}
	if lines > FooterAfter {
		out = append(out, "End of message from "...)
		out = appendFrom(out, &m, cs)
		out = fmt.Appendf(out, ", %d lines.\r\n", lines)
	}
	return append(out, "EOF\r\n"...)
}

// appendFrom appends who the message is from: SENDER@NODE when verified,
// UNVERIFIED "SENDER" (local user REAL, via NODE from SOURCE) otherwise.
func appendFrom(out []byte, m *Message, cs Charset) []byte {
	sender := m.Sender
	if sender == "" {
		sender = "?"
	}
	if m.Verified {
		out = appendRendered(out, sender, cs, true)
		out = append(out, '@')
		return appendRendered(out, m.Node, cs, true)
	}
	out = append(out, "UNVERIFIED \""...)
	out = appendRendered(out, sender, cs, true)
	out = append(out, "\" ("...)
	if m.RealUser != "" {
		out = append(out, "local user "...)
		out = appendRendered(out, m.RealUser, cs, true)
		out = append(out, ", "...)
	}
	out = append(out, "via "...)
	out = appendRendered(out, m.Node, cs, true)
	if m.Source != "" {
		out = append(out, " from "...)
		out = appendRendered(out, m.Source, cs, true)
	}
	return append(out, ')')
}

// forgesFrame reports whether a rendered text line (no line end) could be
// taken for a banner or the end marker: after any leading octets that are
// not letters (blanks, neutralised controls such as "^[" or "\x9b", whole
// neutralised CSI sequences such as "^[[2K", NBSP, punctuation), it is
// "EOF" with nothing alphanumeric after it, or starts with "Message from"
// or "End of message", in any case, with anything but letters between the
// words. A caret before a letter counts both ways ("^M" as a neutralised
// CR and as a caret the sender typed; a CSI's final octet both as part of
// it and as a letter). Such a line is shown behind QuotePrefix.
func forgesFrame(r []byte) bool {
	for _, pairs := range []bool{true, false} {
		for _, csi := range []bool{true, false} {
			if framesAfter(skipLead(r, pairs, csi)) {
				return true
			}
		}
	}
	return false
}

// skipLead drops the leading octets of a rendered line that are not
// letters; pairs says to drop "^X" caret pairs whole, csi whole control
// sequences.
func skipLead(r []byte, pairs, csi bool) []byte {
	for len(r) > 0 {
		switch {
		case csi && bytes.HasPrefix(r, []byte("^[[")):
			r = skipCSI(r[3:])
		case csi && bytes.HasPrefix(r, []byte("\\x9b")):
			r = skipCSI(r[4:])
		case len(r) >= 4 && r[0] == '\\' && r[1] == 'x' && isHex(r[2]) && isHex(r[3]):
			r = r[4:]
		case pairs && r[0] == '^' && len(r) >= 2:
			r = r[2:]
		case !isLetter(r[0]):
			r = r[1:]
		default:
			return r
		}
	}
	return r
}

// skipCSI drops a control sequence's parameter and intermediate octets and
// its final octet.
func skipCSI(r []byte) []byte {
	for len(r) > 0 && r[0] >= 0x20 && r[0] <= 0x3f {
		r = r[1:]
	}
	if len(r) > 0 && r[0] >= 0x40 && r[0] <= 0x7e {
		r = r[1:]
	}
	return r
}

// framesAfter is forgesFrame once the leading octets are gone.
func framesAfter(r []byte) bool {
	word := func(w string) bool {
		if len(r) < len(w) || !strings.EqualFold(string(r[:len(w)]), w) {
			return false
		}
		r = r[len(w):]
		return true
	}
	gap := func() bool {
		j := 0
		for j < len(r) && !isLetter(r[j]) {
			j++
		}
		r = r[j:]
		return j > 0
	}
	switch {
	case word("eof"):
		for _, c := range r {
			if isLetter(c) || c >= '0' && c <= '9' {
				return false
			}
		}
		return true
	case word("message"):
		return gap() && word("from")
	}
	return word("end") && gap() && word("of") && gap() && word("message")
}

func isHex(c byte) bool { return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' }

// isLetter reports whether c is an ASCII letter.
func isLetter(c byte) bool { return c|0x20 >= 'a' && c|0x20 <= 'z' }
