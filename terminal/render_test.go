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
	got := string(Format(Message{Sender: "alice", Node: "hosta", SenderTerm: "pts/9", Time: at, Text: "hi\r\nthere"}, UTF8))
	want := "\r\nMessage from alice@hosta on pts/9 at 14:03 ...\r\nhi\r\nthere\r\nEOF\r\n"
	if got != want {
		t.Fatalf("Format = %q, want %q", got, want)
	}
	got = string(Format(Message{Sender: "eve\r\nMessage from root", Node: "n1", Time: at, Text: "x\n"}, UTF8))
	want = "\r\nMessage from eve^M^JMessage from root@n1 at 14:03 ...\r\nx\r\nEOF\r\n"
	if got != want {
		t.Fatalf("Format with a hostile sender = %q, want %q", got, want)
	}
	if got := string(Format(Message{Node: "n1", Time: at}, ASCII)); !strings.HasPrefix(got, "\r\nMessage from ?@n1 at 14:03") {
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

// FuzzRender (issue 9): "no output byte outside the safe set, ever", in
// every charset, for the text and for a whole formatted message.
func FuzzRender(f *testing.F) {
	for _, s := range []string{"hi", "\x1b[2J\x9b\x9d\x07", "\xe2\x80\xae\r\n\r\r\n\n", "caf\xe9\x00\x7f\xff"} {
		f.Add(s, s)
	}
	f.Fuzz(func(t *testing.T, text, sender string) {
		for _, cs := range []Charset{UTF8, Latin1, ASCII} {
			out := Render(text, cs)
			checkSafe(t, out, cs)
			if len(out) > 4*len(text) {
				t.Fatalf("%d octets from %d", len(out), len(text))
			}
			m := Format(Message{Sender: sender, Node: "n1", SenderTerm: sender, Text: text}, cs)
			checkSafe(t, m, cs)
			if !bytes.HasSuffix(m, []byte("\r\nEOF\r\n")) {
				t.Fatalf("message does not end in EOF: %q", m)
			}
		}
	})
}
