package msp

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// rfcExample is RFC 1312's "Example of Message Encoding": sandy on the
// console of alpha tells chris "Hi" / "How about lunch?".
const rfcExample = "Bchris\x00\x00Hi\r\nHow about lunch?\x00sandy\x00console\x00910806121325\x00\x00"

func TestRFC1312ExampleEncoding(t *testing.T) {
	t.Parallel()
	m := &Message{Version: 'B', Recipient: "chris", Text: "Hi\r\nHow about lunch?", Sender: "sandy", SenderTerm: "console", Cookie: "910806121325"}
	got := enc(t, m)
	if string(got) != rfcExample {
		t.Fatalf("MarshalBinary = %q, want %q", got, rfcExample)
	}
	// The RFC's figure ends at offset 56: 57 octets.
	if len(got) != 57 {
		t.Fatalf("len = %d, want 57", len(got))
	}
	back, err := Parse(got)
	if err != nil {
		t.Fatal(err)
	}
	if *back != *m {
		t.Fatalf("Parse = %+v, want %+v", back, m)
	}
}

func TestParse(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", MaxLen-8) // 'B' + 7 NULs + this = 511 octets
	tests := []struct {
		name string
		in   string
		want *Message
		err  error
	}{
		{
			name: "v2: 'B' then RECIPIENT, RECIP-TERM, MESSAGE, SENDER, SENDER-TERM, COOKIE, SIGNATURE, each NUL-terminated",
			in:   "Bbob\x00tty1\x00hello\x00alice\x00pts/3\x00c1\x00sig\x00",
			want: &Message{Version: 'B', Recipient: "bob", RecipTerm: "tty1", Text: "hello", Sender: "alice", SenderTerm: "pts/3", Cookie: "c1", Signature: "sig"},
		},
		{
			name: "v1: 'A' then RECIPIENT, TERM, MESSAGE (3 NULs)",
			in:   "Abob\x00tty1\x00hello\x00",
			want: &Message{Version: 'A', Recipient: "bob", RecipTerm: "tty1", Text: "hello"},
		},
		{
			name: "Some parts may be empty",
			in:   "B\x00\x00\x00\x00\x00\x00\x00",
			want: &Message{Version: 'B'},
		},
		{
			name: "Do not strip the eighth bit of the characters",
			in:   "Ab\xf6b\x00t\xe6rm\x00gr\xfc\xdf \xa0\xff\x00",
			want: &Message{Version: 'A', Recipient: "b\xf6b", RecipTerm: "t\xe6rm", Text: "gr\xfc\xdf \xa0\xff"},
		},
		{
			name: "MESSAGE may hold CR, LF and TAB",
			in:   "Bbob\x00\x00a\tb\r\nc\nd\x00\x00\x00\x00\x00",
			want: &Message{Version: 'B', Recipient: "bob", Text: "a\tb\r\nc\nd"},
		},
		{
			name: "SIGNATURE is opaque: any octet but NUL",
			in:   "Bbob\x00\x00hi\x00\x00\x00\x00\x01\x1b\x9b\xff\x00",
			want: &Message{Version: 'B', Recipient: "bob", Text: "hi", Signature: "\x01\x1b\x9b\xff"},
		},
		{
			name: "the total length of the message shall be less than 512 octets: 511 accepted",
			in:   "Bbob\x00\x00" + long[3:] + "\x00\x00\x00\x00\x00",
			want: &Message{Version: 'B', Recipient: "bob", Text: long[3:]},
		},
		{
			name: "the total length of the message shall be less than 512 octets: 512 refused",
			in:   "Bbob\x00\x00" + long[2:] + "\x00\x00\x00\x00\x00",
			err:  ErrTooLong,
		},
		{
			name: "the maximum length of a cookie is 32 octets: 32 accepted",
			in:   "Bbob\x00\x00hi\x00\x00\x00" + strings.Repeat("c", 32) + "\x00\x00",
			want: &Message{Version: 'B', Recipient: "bob", Text: "hi", Cookie: strings.Repeat("c", 32)},
		},
		{
			name: "the maximum length of a cookie is 32 octets: 33 refused",
			in:   "Bbob\x00\x00hi\x00\x00\x00" + strings.Repeat("c", 33) + "\x00\x00",
			err:  ErrCookieTooLong,
		},
		{name: "empty input", in: "", err: ErrVersion},
		{name: "revision octet other than 'A' or 'B'", in: "Cbob\x00\x00hi\x00", err: ErrVersion},
		{name: "lower-case revision", in: "bbob\x00\x00hi\x00\x00\x00\x00\x00", err: ErrVersion},
		{name: "v2 with too few parts", in: "Bbob\x00\x00hi\x00\x00\x00\x00", err: ErrParts},
		{name: "v2 with too many parts", in: "Bbob\x00\x00hi\x00\x00\x00\x00\x00\x00", err: ErrParts},
		{name: "v1 with too many parts", in: "Abob\x00\x00hi\x00x\x00", err: ErrParts},
		{name: "octets after the last NUL", in: "Abob\x00\x00hi\x00junk", err: ErrParts},
		{name: "last part not NUL-terminated", in: "Abob\x00\x00hi", err: ErrParts},
		{name: "revision octet alone", in: "B", err: ErrParts},
		{name: "No other control codes or escape sequences may be included: ESC in MESSAGE", in: "Bbob\x00\x00\x1b[2Jhi\x00\x00\x00\x00\x00", err: ErrBadOctet},
		{name: "C1 control CSI (0x9B) in MESSAGE", in: "Abob\x00\x00\x9b2Jhi\x00", err: ErrBadOctet},
		{name: "C1 control 0x80 in MESSAGE", in: "Abob\x00\x00\x80\x00", err: ErrBadOctet},
		{name: "DEL in MESSAGE", in: "Abob\x00\x00\x7f\x00", err: ErrBadOctet},
		{name: "BEL in MESSAGE", in: "Abob\x00\x00\a\x00", err: ErrBadOctet},
		{name: "the checks must be made on the sender's name", in: "Bbob\x00\x00hi\x00ali\x1bce\x00\x00\x00\x00", err: ErrBadOctet},
		{name: "the checks must be made on the sender's terminal", in: "Bbob\x00\x00hi\x00alice\x00\x9b\x00\x00\x00", err: ErrBadOctet},
		{name: "sender's name shown on one line: no LF", in: "Bbob\x00\x00hi\x00alice\nroot\x00\x00\x00\x00", err: ErrBadOctet},
		{name: "RECIPIENT is checked", in: "Bb\tob\x00\x00hi\x00\x00\x00\x00\x00", err: ErrBadOctet},
		{name: "RECIP-TERM is checked", in: "Abob\x00tty\r\x00hi\x00", err: ErrBadOctet},
		{name: "COOKIE is checked", in: "Bbob\x00\x00hi\x00\x00\x00c\x01\x00\x00", err: ErrBadOctet},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := Parse([]byte(tt.in))
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Fatalf("Parse error = %v, want %v", err, tt.err)
				}
				if got != nil {
					t.Fatalf("Parse returned %+v with an error", got)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if *got != *tt.want {
				t.Fatalf("Parse = %+v, want %+v", got, tt.want)
			}
			// Decoding keeps the octets as sent, so encoding gives them back.
			if out := enc(t, got); string(out) != tt.in {
				t.Fatalf("MarshalBinary(Parse(x)) = %q, want %q", out, tt.in)
			}
		})
	}
}

func TestBadOctetErrorNamesPartOctetAndOffset(t *testing.T) {
	t.Parallel()
	_, err := Parse([]byte("Bbob\x00\x00hi\x1b\x00\x00\x00\x00\x00"))
	const want = "msp: illegal octet: MESSAGE has octet 0x1B at offset 2"
	if err == nil || err.Error() != want {
		t.Fatalf("error = %v, want %q", err, want)
	}
}

func TestParseCopiesInput(t *testing.T) {
	t.Parallel()
	b := []byte("Bbob\x00\x00hi\x00\x00\x00\x00\x00")
	m, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	for i := range b {
		b[i] = 'z'
	}
	if m.Recipient != "bob" || m.Text != "hi" {
		t.Fatalf("message changed with its input buffer: %+v", m)
	}
}

func TestMarshalBinaryValidates(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		m    Message
		err  error
	}{
		{"unknown revision", Message{Version: 'C'}, ErrVersion},
		{"revision A has no SENDER", Message{Version: 'A', Sender: "alice"}, ErrParts},
		{"revision A has no COOKIE", Message{Version: 'A', Cookie: "c"}, ErrParts},
		{"512 octets", Message{Text: strings.Repeat("x", MaxLen-7)}, ErrTooLong},
		{"cookie of 33 octets", Message{Cookie: strings.Repeat("c", 33)}, ErrCookieTooLong},
		{"NUL inside a part", Message{Recipient: "b\x00b"}, ErrBadOctet},
		{"NUL inside SIGNATURE", Message{Signature: "s\x00"}, ErrBadOctet},
		{"ESC in MESSAGE", Message{Text: "\x1b[H"}, ErrBadOctet},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if _, err := tt.m.MarshalBinary(); !errors.Is(err, tt.err) {
				t.Fatalf("MarshalBinary error = %v, want %v", err, tt.err)
			}
			dst := []byte("keep")
			out, err := tt.m.AppendBinary(dst)
			if !errors.Is(err, tt.err) || string(out) != "keep" {
				t.Fatalf("AppendBinary = %q, %v; want dst unchanged and %v", out, err, tt.err)
			}
		})
	}
}

func TestZeroVersionEncodesAsB(t *testing.T) {
	t.Parallel()
	got := enc(t, &Message{Recipient: "bob", Text: "hi"})
	if want := "Bbob\x00\x00hi\x00\x00\x00\x00\x00"; string(got) != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func TestAppendBinaryAppends(t *testing.T) {
	t.Parallel()
	m := &Message{Version: 'A', Recipient: "bob", Text: "hi"}
	out, err := m.AppendBinary([]byte("xx"))
	if err != nil {
		t.Fatal(err)
	}
	if want := "xxAbob\x00\x00hi\x00"; string(out) != want {
		t.Fatalf("got %q, want %q", out, want)
	}
	if m.EncodedLen() != len(out)-2 {
		t.Fatalf("EncodedLen = %d, want %d", m.EncodedLen(), len(out)-2)
	}
}

func TestSanitizeStripsOnlyForbiddenOctets(t *testing.T) {
	t.Parallel()
	m := &Message{
		Recipient:  "b\x1bob",
		RecipTerm:  "tty\n",
		Text:       "\x1b[31mred\x9b\tok\r\n\xe9\x7f",
		Sender:     "al\x00ice",
		SenderTerm: "pts\x85/3",
		Cookie:     "c\x01",
		Signature:  "\x01\x1b",
	}
	if !m.Sanitize() {
		t.Fatal("Sanitize reported no change")
	}
	want := Message{Recipient: "bob", RecipTerm: "tty", Text: "[31mred\tok\r\n\xe9", Sender: "alice", SenderTerm: "pts/3", Cookie: "c", Signature: "\x01\x1b"}
	if *m != want {
		t.Fatalf("Sanitize gave %+v, want %+v", *m, want)
	}
	if m.Sanitize() {
		t.Fatal("second Sanitize reported a change")
	}
	if err := m.Validate(); err != nil {
		t.Fatalf("sanitized message invalid: %v", err)
	}
}

func TestNormalizeNewlines(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{"", ""},
		{"no newline", "no newline"},
		{"a\r\nb", "a\r\nb"},
		{"LF only: a\nb\n", "LF only: a\r\nb\r\n"},
		{"lone CR\rover", "lone CR\r\nover"},
		{"mixed\r\n\n\r", "mixed\r\n\r\n\r\n"},
		{"\n\r\n", "\r\n\r\n"},
	}
	for _, tt := range tests {
		if got := NormalizeNewlines(tt.in); got != tt.want {
			t.Errorf("NormalizeNewlines(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestComparisonsOfPartsAreCaseInsensitive(t *testing.T) {
	t.Parallel()
	tests := []struct {
		a, b string
		want bool
	}{
		{"Alice", "aLICE", true},
		{"J\xd6RG", "j\xf6rg", true}, // Ö / ö
		{"\xc0\xde", "\xe0\xfe", true},
		{"\xd7", "\xf7", false}, // × and ÷ are not a case pair
		{"\xdf", "\xff", false}, // ß has no capital in ISO 8859-1
		{"a", "ab", false},
		{"[", "{", false},
	}
	for _, tt := range tests {
		if got := EqualFold(tt.a, tt.b); got != tt.want {
			t.Errorf("EqualFold(%q, %q) = %v, want %v", tt.a, tt.b, got, tt.want)
		}
		if got := Fold(tt.a) == Fold(tt.b); got != tt.want {
			t.Errorf("Fold(%q) == Fold(%q) is %v, want %v", tt.a, tt.b, got, tt.want)
		}
	}
	if got := Fold("COOKIE-\xc9t\xe9"); got != "cookie-\xe9t\xe9" {
		t.Errorf("Fold = %q", got)
	}
}

func TestLatin1Conversions(t *testing.T) {
	t.Parallel()
	if got := Latin1ToUTF8("gr\xfc\xdf"); got != "grüß" {
		t.Fatalf("Latin1ToUTF8 = %q", got)
	}
	got, err := UTF8ToLatin1("grüß")
	if err != nil || got != "gr\xfc\xdf" {
		t.Fatalf("UTF8ToLatin1 = %q, %v", got, err)
	}
	for _, bad := range []string{"€", "\xff\xfe", "日本"} {
		if _, err := UTF8ToLatin1(bad); !errors.Is(err, ErrNotLatin1) {
			t.Errorf("UTF8ToLatin1(%q) error = %v, want ErrNotLatin1", bad, err)
		}
	}
}

func TestFormatReply(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		ack   bool
		text  string
		limit int
		want  string
	}{
		{"positive", true, "delivered", 512, "+delivered\x00"},
		{"negative", false, "user not online", 512, "-user not online\x00"},
		{"no NUL or control characters in the explanation", true, "a\x00b\x1b[1mc\r\nd\x9b", 512, "+ab[1mcd\x00"},
		{"eight-bit text kept", true, "d\xe9j\xe0", 512, "+d\xe9j\xe0\x00"},
		{"cut to the limit", true, "abcdef", 5, "+abc\x00"},
		{"bare sign when nothing fits", true, "abc", 2, "+\x00"},
		{"bounded by MaxReplyText", false, strings.Repeat("x", 2000), 4096, "-" + strings.Repeat("x", MaxReplyText) + "\x00"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := formatReply(tt.ack, tt.text, tt.limit); string(got) != tt.want {
				t.Fatalf("formatReply = %q, want %q", got, tt.want)
			}
		})
	}
	if got := fitReply([]byte("+abcdef\x00"), 4); !bytes.Equal(got, []byte("+ab\x00")) {
		t.Fatalf("fitReply = %q", got)
	}
}

func TestParseReply(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want Reply
		err  bool
	}{
		{"+\x00", Reply{OK: true}, false},
		{"+delivered to pts/3\x00", Reply{OK: true, Text: "delivered to pts/3"}, false},
		{"-User not online\x00", Reply{Text: "User not online"}, false},
		{"+evil\x1b[2J\x00", Reply{OK: true, Text: "evil[2J"}, false},
		{"", Reply{}, true},
		{"+", Reply{}, true},
		{"?x\x00", Reply{}, true},
		{"+a\x00b\x00", Reply{}, true},
	}
	for _, tt := range tests {
		got, err := parseReply([]byte(tt.in))
		if (err != nil) != tt.err || got != tt.want {
			t.Errorf("parseReply(%q) = %+v, %v; want %+v, error %v", tt.in, got, err, tt.want, tt.err)
		}
		if err != nil && !errors.Is(err, ErrBadReply) {
			t.Errorf("parseReply(%q) error %v is not ErrBadReply", tt.in, err)
		}
	}
}
