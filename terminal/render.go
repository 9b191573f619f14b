package terminal

import (
	"errors"
	"fmt"
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

// Message is what a tty shows: who sent it from where, when, and the text.
type Message struct {
	Sender     string    // ISO 8859-1; "" is shown as "?"
	Node       string    // the ingress node
	SenderTerm string    // ISO 8859-1; "" leaves out "on TERM"
	Time       time.Time // shown as HH:MM in the node's local time
	Text       string    // ISO 8859-1, CR LF or LF line ends
}

// Format renders m the way write(1) shows a message:
//
//	Message from SENDER@ORIGIN-NODE on SENDER-TERM at HH:MM ...
//	the text
//	EOF
//
// with every line ending in CR LF and every part rendered by Render, the
// names on one line.
func Format(m Message, cs Charset) []byte {
	out := make([]byte, 0, 64+len(m.Text)+len(m.Text)/4)
	out = append(out, "\r\nMessage from "...)
	sender := m.Sender
	if sender == "" {
		sender = "?"
	}
	out = appendRendered(out, sender, cs, true)
	out = append(out, '@')
	out = appendRendered(out, m.Node, cs, true)
	if m.SenderTerm != "" {
		out = append(out, " on "...)
		out = appendRendered(out, m.SenderTerm, cs, true)
	}
	out = append(out, " at "...)
	out = m.Time.Local().AppendFormat(out, "15:04")
	out = append(out, " ...\r\n"...)
	out = appendRendered(out, m.Text, cs, false)
	if len(m.Text) > 0 && !strings.HasSuffix(m.Text, "\n") {
		out = append(out, '\r', '\n')
	}
	return append(out, "EOF\r\n"...)
}
