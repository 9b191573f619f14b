package msp

import (
	"errors"
	"strings"
	"testing"
)

func TestValidateParts(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", MaxLen)
	for _, tc := range []struct {
		name string
		p    Parts
		want error
	}{
		{"a plain message passes", Parts{Recipient: "alice", Text: "hi\r\n", Sender: "bob", Cookie: "c1"}, nil},
		{"RFC 1312: checks must be made on any part which may be displayed: ESC in MESSAGE",
			Parts{Recipient: "alice", Text: "\x1b]0;owned\x07", Sender: "bob"}, ErrBadOctet},
		{"ESC in SENDER", Parts{Recipient: "alice", Text: "hi", Sender: "b\x1b[2Jb"}, ErrBadOctet},
		{"CSI (0x9B) in SENDER-TERM", Parts{Recipient: "alice", Text: "hi", SenderTerm: "\x9b2J"}, ErrBadOctet},
		{"LF in RECIP-TERM", Parts{Recipient: "alice", RecipTerm: "a\nb", Text: "hi"}, ErrBadOctet},
		{"NUL in SIGNATURE", Parts{Recipient: "alice", Text: "hi", Signature: "a\x00b"}, ErrBadOctet},
		{"RFC 1312: maximum length of a cookie is 32 octets",
			Parts{Recipient: "alice", Text: "hi", Cookie: strings.Repeat("c", 33)}, ErrCookieTooLong},
		{"RFC 1312: total length shall be less than 512 octets",
			Parts{Recipient: "alice", Text: long, Sender: "bob"}, ErrTooLong},
		{"a 90 KB text is refused", Parts{Recipient: "alice", Text: strings.Repeat("y", 90<<10)}, ErrTooLong},
		{"revision A of 511 octets passes", Parts{Recipient: "a", Text: long[:511-1-1-3]}, nil},
		{"line ends rewritten to CR LF do not count twice",
			Parts{Recipient: "a", Text: strings.Repeat("\r\n", 250), Sender: "b"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := ValidateParts(tc.p)
			if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("ValidateParts = %v, want %v", err, tc.want)
			}
		})
	}
}
