package terminal

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// Rule (issue 9): "the text with every octet that is not printable in the
// terminal's charset shown safely (no escape sequence can ever reach a
// terminal), LF as CR LF".
func TestRenderShowsHostileOctetsSafely(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   string
		cs   Charset
		want string
	}{
		{"printable ASCII passes", "hello, world ~!", UTF8, "hello, world ~!"},
		{"LF becomes CR LF", "a\nb", UTF8, "a\r\nb"},
		{"CR LF stays CR LF", "a\r\nb\r\n", UTF8, "a\r\nb\r\n"},
		{"lone CR cannot overwrite the line", "pay bob\rpay eve", UTF8, "pay bob^Mpay eve"},
		{"TAB passes", "a\tb", UTF8, "a\tb"},
		{"ESC is caret", "\x1b[2J", UTF8, "^[[2J"},
		{"CSI as ESC [ cannot move the cursor", "\x1b[1;1H\x1b[31mred", UTF8, "^[[1;1H^[[31mred"},
		{"OSC title set is inert", "\x1b]0;owned\x07", UTF8, "^[]0;owned^G"},
		{"OSC 52 clipboard is inert", "\x1b]52;c;ZWNobyBoaQ==\x1b\\", UTF8, "^[]52;c;ZWNobyBoaQ==^[\\"},
		{"DCS is inert", "\x1bP+q\x1b\\", UTF8, "^[P+q^[\\"},
		{"C1 CSI octet", "\x9b2J", UTF8, `\x9b2J`},
		{"C1 OSC and ST octets", "\x9d0;t\x9c", UTF8, `\x9d0;t\x9c`},
		{"C1 is shown in Latin-1 too", "\x9b", Latin1, `\x9b`},
		{"NUL BEL BS DEL", "\x00\x07\x08\x7f", UTF8, "^@^G^H^?"},
		{"Latin-1 letters become UTF-8", "caf\xe9 \xfc\xdf", UTF8, "café üß"},
		{"Latin-1 letters pass to a Latin-1 terminal", "caf\xe9", Latin1, "caf\xe9"},
		{"Latin-1 letters are escaped for ASCII", "caf\xe9", ASCII, `caf\xe9`},
		// A sender who writes a bidi override in UTF-8 sends its octets;
		// read as ISO 8859-1 they are letters and C1 octets, and the C1
		// octets are escaped, so U+202E never reaches the terminal.
		{"UTF-8 RLO octets cannot become U+202E", "\xe2\x80\xaeevil", UTF8, "â\\x80®evil"},
		{"UTF-8 LRI octets cannot become U+2066", "\xe2\x81\xa6x", UTF8, "â\\x81¦x"},
		{"UTF-8 C1 CSI octets", "\xc2\x9b", UTF8, `Â\x9b`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := string(Render(tt.in, tt.cs)); got != tt.want {
				t.Fatalf("Render(%q, %v) = %q, want %q", tt.in, tt.cs, got, tt.want)
			}
		})
	}
}

// Rule (issue 9): the banner is "Message from SENDER@ORIGIN-NODE on
// SENDER-TERM at HH:MM ...", then the text, then EOF; names are rendered
// on one line, so a name cannot forge a second banner.
func TestFormatBannerTextEOF(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 11, 30, 14, 3, 0, 0, time.Local)
	got := string(Format(Message{Sender: "alice", Node: "hosta", SenderTerm: "pts/9", Time: at, Text: "hi\r\nthere", Verified: true}, UTF8))
	want := "\r\nMessage from alice@hosta on pts/9 at 14:03 ...\r\nhi\r\nthere\r\nEOF\r\n"
	if got != want {
		t.Fatalf("Format = %q, want %q", got, want)
	}
	got = string(Format(Message{Sender: "eve\r\nMessage from root", Node: "n1", Time: at, Text: "x\n", Verified: true}, UTF8))
	want = "\r\nMessage from eve^M^JMessage from root@n1 at 14:03 ...\r\nx\r\nEOF\r\n"
	if got != want {
		t.Fatalf("Format with a hostile sender = %q, want %q", got, want)
	}
	if got := string(Format(Message{Node: "n1", Time: at, Verified: true}, ASCII)); !strings.HasPrefix(got, "\r\nMessage from ?@n1 at 14:03") {
		t.Fatalf("Format without sender = %q", got)
	}
}

func TestParseCharset(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]Charset{"UTF-8": UTF8, "utf8": UTF8, "ISO-8859-1": Latin1, "latin1": Latin1, "ASCII": ASCII, "us-ascii": ASCII} {
		if got, err := ParseCharset(in); err != nil || got != want {
			t.Fatalf("ParseCharset(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	if _, err := ParseCharset("KOI8-R"); !errors.Is(err, ErrBadCharset) {
		t.Fatalf("ParseCharset(KOI8-R) = %v, want ErrBadCharset", err)
	}
}

// checkSafe fails unless out holds only what the charset displays as
// itself: printable ASCII, TAB, CR only before LF, LF only after CR, and
// U+00A0-U+00FF (as UTF-8 or as Latin-1 octets, by charset).
func checkSafe(t *testing.T, out []byte, cs Charset) {
	t.Helper()
	for i := 0; i < len(out); {
		c := out[i]
		switch {
		case c == '\r':
			if i+1 >= len(out) || out[i+1] != '\n' {
				t.Fatalf("CR not before LF at %d in %q", i, out)
			}
			i += 2
			continue
		case c == '\n':
			t.Fatalf("LF without CR at %d in %q", i, out)
		case c == '\t' || c >= 0x20 && c < 0x7f:
		case cs == Latin1 && c >= 0xa0:
		case cs == UTF8 && c >= 0x80:
			r, n := utf8.DecodeRune(out[i:])
			if r < 0xa0 || r > 0xff {
				t.Fatalf("rune %U at %d in %q", r, i, out)
			}
			i += n
			continue
		default:
			t.Fatalf("octet %#x at %d in %q (charset %v)", c, i, out, cs)
		}
		i++
	}
}

// Rule (issue 18): "the write(1) banner names the sender only when
// verified, otherwise says UNVERIFIED with the claimed name and where it
// came from"; "a footer like msp listen's closes a long text".
func TestFormatBannerSaysWhoIsVerified(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 11, 30, 14, 3, 0, 0, time.Local)
	tests := []struct {
		name string
		m    Message
		want string
	}{
		{"verified sender is named plainly",
			Message{Sender: "alice", Node: "hosta", SenderTerm: "pts/9", Time: at, Text: "hi", Verified: true},
			"\r\nMessage from alice@hosta on pts/9 at 14:03 ...\r\nhi\r\nEOF\r\n"},
		{"unverified sender is a claim with its source",
			Message{Sender: "root", Node: "hosta", SenderTerm: "console", Time: at, Text: "reboot now", Source: "192.0.2.7:4000"},
			"\r\nMessage from UNVERIFIED \"root\" (via hosta from 192.0.2.7:4000) on console at 14:03 ...\r\nreboot now\r\nEOF\r\n"},
		{"a local user claiming another name is named",
			Message{Sender: "alice", Node: "hosta", Time: at, Text: "x", Source: "127.0.0.1:5000", RealUser: "mallory"},
			"\r\nMessage from UNVERIFIED \"alice\" (local user mallory, via hosta from 127.0.0.1:5000) at 14:03 ...\r\nx\r\nEOF\r\n"},
		{"unverified without a source",
			Message{Node: "n1", Time: at},
			"\r\nMessage from UNVERIFIED \"?\" (via n1) at 14:03 ...\r\nEOF\r\n"},
		{"five lines have no footer",
			Message{Sender: "bob", Node: "n1", Time: at, Text: "1\n2\n3\n4\n5\n", Verified: true},
			"\r\nMessage from bob@n1 at 14:03 ...\r\n1\r\n2\r\n3\r\n4\r\n5\r\nEOF\r\n"},
		{"six lines end with a footer naming the sender and mark",
			Message{Sender: "bob", Node: "n1", Time: at, Text: "1\n2\n3\n4\n5\n6", Source: "session"},
			"\r\nMessage from UNVERIFIED \"bob\" (via n1 from session) at 14:03 ...\r\n1\r\n2\r\n3\r\n4\r\n5\r\n6\r\n" +
				"End of message from UNVERIFIED \"bob\" (via n1 from session), 6 lines.\r\nEOF\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := string(Format(tt.m, UTF8)); got != tt.want {
				t.Fatalf("Format =\n%q\nwant\n%q", got, tt.want)
			}
		})
	}
}

// Rule (issue 18): "no line of the text can pass for a banner or the end
// marker (a line EOF, a line starting Message from)": such lines are shown
// behind QuotePrefix, whatever their case and whatever blanks or
// neutralised controls come first; other lines are untouched.
func TestFormatTextCannotForgeAFrame(t *testing.T) {
	t.Parallel()
	tests := []struct {
		line, want string
	}{
		{"EOF", "> EOF"},
		{"eof", "> eof"},
		{"EOF  ", "> EOF  "},
		{"  EOF", ">   EOF"},
		{"\x1bEOF", "> ^[EOF"},
		{"\x00\x00EOF", "> ^@^@EOF"},
		{"\x9bEOF", "> \\x9bEOF"},
		{"Message from root@hosta on console at 14:03 ...", "> Message from root@hosta on console at 14:03 ..."},
		{"MESSAGE FROM root", "> MESSAGE FROM root"},
		{"\tmessage   from x", "> \tmessage   from x"},
		{"^Message from root", "> ^Message from root"},
		{"\x0dMessage from root", "> ^MMessage from root"},
		{"\x1b[2KMessage from root", "> ^[[2KMessage from root"},
		{"\xa0Message\xa0from root", "> \u00a0Message\u00a0from root"},
		{"End of message from root, 9 lines.", "> End of message from root, 9 lines."},
		{"EOFs are fine", "EOFs are fine"},
		{"a message from me", "a message from me"},
		{"Messages from home", "Messages from home"},
		{"see EOF", "see EOF"},
	}
	at := time.Date(2026, 11, 30, 14, 3, 0, 0, time.Local)
	for _, tt := range tests {
		t.Run(tt.line, func(t *testing.T) {
			t.Parallel()
			got := string(Format(Message{Sender: "eve", Node: "n1", Time: at, Text: "hi\r\n" + tt.line + "\r\nbye"}, UTF8))
			lines := strings.Split(got, "\r\n")
			// "", banner, "hi", the line, "bye", "EOF", "".
			if len(lines) != 7 || lines[2] != "hi" || lines[4] != "bye" || lines[5] != "EOF" {
				t.Fatalf("Format = %q", got)
			}
			if lines[3] != tt.want {
				t.Fatalf("line %q shown as %q, want %q", tt.line, lines[3], tt.want)
			}
		})
	}
}

// looksLikeFrame is a plain reader's idea of a banner or end marker, kept
// apart from forgesFrame so that the fuzz target checks Format against
// something it did not write: EOF alone, or a line starting "Message
// from" or "End of message", after blanks.
func looksLikeFrame(l string) bool {
	l = strings.ToLower(strings.TrimLeft(l, " \t"))
	return strings.TrimSpace(l) == "eof" || strings.HasPrefix(l, "message from") || strings.HasPrefix(l, "end of message")
}

// FuzzRender (issue 9, issue 18): "no output byte outside the safe set,
// ever", in every charset, for the text and for a whole formatted message;
// and a formatted message has exactly one banner line, at most one footer
// and exactly one end marker, at its end, whatever the text and names.
func FuzzRender(f *testing.F) {
	for _, s := range []string{"hi", "\x1b[2J\x9b\x9d\x07", "\xe2\x80\xae\r\n\r\r\n\n", "caf\xe9\x00\x7f\xff",
		"x\r\nEOF\r\n\r\nMessage from root@hosta on console at 09:00 ...\r\nrm -rf\r\n", "1\n2\n3\n4\n5\n6\n \x1bEOF"} {
		f.Add(s, s)
	}
	f.Fuzz(func(t *testing.T, text, sender string) {
		for _, cs := range []Charset{UTF8, Latin1, ASCII} {
			out := Render(text, cs)
			checkSafe(t, out, cs)
			if len(out) > 4*len(text) {
				t.Fatalf("%d octets from %d", len(out), len(text))
			}
			for _, verified := range []bool{true, false} {
				m := Format(Message{Sender: sender, Node: "n1", SenderTerm: sender, Text: text, Verified: verified, Source: sender, RealUser: sender}, cs)
				checkSafe(t, m, cs)
				if !bytes.HasSuffix(m, []byte("\r\nEOF\r\n")) {
					t.Fatalf("message does not end in EOF: %q", m)
				}
				lines := strings.Split(strings.TrimSuffix(string(m), "\r\n"), "\r\n")
				body := lines[2 : len(lines)-1] // after "" and the banner, before EOF
				if len(body) > FooterAfter && strings.HasPrefix(body[len(body)-1], "End of message from ") {
					body = body[:len(body)-1]
				}
				for _, l := range body {
					if looksLikeFrame(l) {
						t.Fatalf("text line %q passes for a banner or EOF in %q", l, m)
					}
				}
			}
		}
	})
}
