package main

import (
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/msprelay/msprelay/msp"
	"github.com/msprelay/msprelay/sessionclient"
	"github.com/msprelay/msprelay/sessionproto"
)

// Everything msp prints that came from the network (message parts, names,
// node names, server explanations) is hostile: a sender may put ESC, C1
// controls or bidi overrides in it to repaint the terminal or to forge the
// "verified" header. The functions here are the only way such text reaches
// the terminal, and their output holds nothing but printable runes and the
// line ends the renderer itself writes.

// footerAfter is how many text lines a message may have before its header
// is repeated after the text, so that the verified mark stays on screen
// however far a long text scrolls.
const footerAfter = 5

// textMark starts every line of a message's text, so that no line of the
// text can pass for a header msp wrote.
const textMark = "| "

// tabWidth is the distance between tab stops inside a message's text.
const tabWidth = 8

// safeRune reports whether r may reach the terminal as it is: printable
// (letters, marks, numbers, punctuation, symbols, ASCII space). Controls,
// C1, format characters (bidi overrides, zero-width joiners), line and
// paragraph separators and unassigned runes are not.
func safeRune(r rune) bool {
	return r != utf8.RuneError && unicode.IsPrint(r)
}

// escapeRune appends r in a visible, inert spelling: caret notation for C0
// controls and DEL ("^[" for ESC), \xNN for C1, \u{...} for anything else.
func escapeRune(b *strings.Builder, r rune) {
	switch {
	case r < 0x20:
		b.WriteByte('^')
		b.WriteByte(byte(r) + '@')
	case r == 0x7f:
		b.WriteString("^?")
	case r >= 0x80 && r < 0xa0:
		fmt.Fprintf(b, `\x%02x`, r)
	default:
		fmt.Fprintf(b, `\u{%04x}`, r)
	}
}

// safeUTF8 returns s (UTF-8, possibly invalid) with every rune that is not
// safe escaped; an octet that is not UTF-8 shows as \xNN.
func safeUTF8(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n <= 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case safeRune(r):
			b.WriteRune(r)
		default:
			escapeRune(&b, r)
		}
		i += n
	}
	return b.String()
}

// show converts an ISO 8859-1 part received over MSP or the session
// protocol to UTF-8 and makes it safe to print.
func show(latin1 string) string { return safeUTF8(msp.Latin1ToUTF8(latin1)) }

// textLines splits an ISO 8859-1 message text into safe display lines: CR
// LF, CR and LF all end a line, tabs expand to spaces, and trailing empty
// lines are dropped.
func textLines(latin1 string) []string {
	t := strings.ReplaceAll(latin1, "\r\n", "\n")
	t = strings.ReplaceAll(t, "\r", "\n")
	t = strings.TrimRight(t, "\n")
	lines := strings.Split(t, "\n")
	for i, l := range lines {
		if strings.IndexByte(l, '\t') >= 0 {
			l = expandTabs(l)
		}
		lines[i] = show(l)
	}
	return lines
}

// expandTabs replaces each tab of an ISO 8859-1 line (one octet, one
// column) with spaces up to the next tab stop.
func expandTabs(l string) string {
	var b strings.Builder
	for i := 0; i < len(l); i++ {
		if l[i] != '\t' {
			b.WriteByte(l[i])
			continue
		}
		b.WriteString(strings.Repeat(" ", tabWidth-b.Len()%tabWidth))
	}
	return b.String()
}

// renderMessage is the text form of one message: a header naming sender,
// origin and whether the node verified the sender, every text line behind
// [textMark], and for texts longer than [footerAfter] lines a closing line
// that repeats who sent it and the mark. A sender the node identified as
// a local user other than the one named ([sessionproto.Message.Impersonation])
// shows as both: "UNVERIFIED root (sent by local user mallory)".
func renderMessage(m *sessionproto.Message, loc *time.Location) string {
	from := "(no sender)"
	switch {
	case m.Impersonation():
		who := "user"
		if m.SenderMethod == "kernel" {
			who = "local user"
		}
		from = "UNVERIFIED " + show(m.Sender) + " (sent by " + who + " " + show(m.SenderUser) + ")"
	case m.Sender != "":
		from = show(m.Sender)
	case m.SenderUser != "":
		// No SENDER part, and the node knows who sent it.
		from = show(m.SenderUser)
	}
	if m.SenderTerm != "" {
		from += " on " + show(m.SenderTerm)
	}
	mark := "UNVERIFIED"
	if m.Verified {
		mark = "verified"
	}
	origin := mark
	if how := strings.TrimSpace(m.Transport + " " + m.OriginAddr); how != "" {
		origin = safeUTF8(how) + ", " + mark
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\nMessage from %s via %s (%s) at %s:\n", from, safeUTF8(orDefault(m.OriginNode, "?")),
		origin, m.Time.In(loc).Format("15:04:05"))
	lines := textLines(m.Text)
	for _, l := range lines {
		b.WriteString(textMark)
		b.WriteString(l)
		b.WriteByte('\n')
	}
	if len(lines) > footerAfter {
		fmt.Fprintf(&b, "End of message from %s (%s), %d lines.\n", from, mark, len(lines))
	}
	return b.String()
}

// renderEvent is the text form of one presence event.
func renderEvent(ev sessionclient.PresenceEvent) string {
	return fmt.Sprintf("* %s at %s on %s is %s\n", show(ev.User), show(ev.Term), safeUTF8(ev.Node), ev.State)
}

// safeJSON escapes, inside the JSON document b, every rune a terminal could
// act on that encoding/json leaves raw (DEL, C1, bidi and other format
// characters, invalid octets), as \uXXXX. Such runes only occur inside JSON
// strings, where the escape means the same rune, so b stays equivalent JSON.
func safeJSON(b []byte) []byte {
	out := make([]byte, 0, len(b))
	for i := 0; i < len(b); {
		r, n := utf8.DecodeRune(b[i:])
		switch {
		case r == utf8.RuneError && n <= 1:
			out = append(out, `\ufffd`...)
		case safeRune(r), r == '\n': // encoding/json escapes LF in strings: this one is layout
			out = append(out, b[i:i+n]...)
		case r > 0xffff:
			r1, r2 := utf16.EncodeRune(r)
			out = fmt.Appendf(out, `\u%04x\u%04x`, r1, r2)
		default:
			out = fmt.Appendf(out, `\u%04x`, r)
		}
		i += n
	}
	return out
}
