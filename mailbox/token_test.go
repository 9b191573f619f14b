package mailbox_test

import (
	"errors"
	"regexp"
	"testing"

	"github.com/msprelay/msprelay/mailbox"
	"github.com/msprelay/msprelay/principal"
)

// A JetStream key-value key, and with it one subject token: the stricter of
// the two alphabets (nats.go's key rule, without '.' so that it stays one
// token).
var tokenAlphabet = regexp.MustCompile(`^[-/_=a-zA-Z0-9]+$`)

// User names may hold '.', '>', '*' and Latin-1 octets (principal.ValidUser
// forbids only spaces, controls, '@', '*' and '/'); none of them may reach a
// subject token or a key. The encoding keeps plain names readable.
func TestUserTokenIsSubjectSafeAndOneToOne(t *testing.T) {
	t.Parallel()
	cases := []struct{ user, token string }{
		{"alice", "alice"},
		{"Alice", "alice"},
		{"j.doe", "j=2Edoe"},
		{"a>b", "a=3Eb"},
		{"x=y", "x=3Dy"},
		{"J\xd6RG", "j=F6rg"},
		{"caf\xe9", "caf=E9"},
		{"a-b_c9", "a-b_c9"},
		{"\xdf", "=DF"},
		{"%2E", "=252e"},
	}
	for _, tc := range cases {
		got := mailbox.UserToken(tc.user)
		if got != tc.token {
			t.Errorf("UserToken(%q) = %q, want %q", tc.user, got, tc.token)
		}
		if !tokenAlphabet.MatchString(got) {
			t.Errorf("UserToken(%q) = %q: not a valid key", tc.user, got)
		}
		back, err := mailbox.ParseUserToken(got)
		if err != nil || back != principal.CanonicalUser(tc.user) {
			t.Errorf("ParseUserToken(%q) = %q, %v; want %q", got, back, err, principal.CanonicalUser(tc.user))
		}
		if s := mailbox.Subject(tc.user); s != mailbox.SubjectPrefix+tc.token {
			t.Errorf("MailboxSubject(%q) = %q", tc.user, s)
		}
	}
}

// ParseUserToken accepts exactly what UserToken produces, so that no two
// tokens name one mailbox.
func TestParseUserTokenRejectsNonCanonicalText(t *testing.T) {
	t.Parallel()
	for _, tok := range []string{"", "Alice", "a=2e", "=61", "a=", "a=F", "a=G0", "a.b", "a b", "=C4", string(make([]byte, 200))} {
		if u, err := mailbox.ParseUserToken(tok); !errors.Is(err, mailbox.ErrBadToken) {
			t.Errorf("ParseUserToken(%q) = %q, %v; want ErrBadToken", tok, u, err)
		}
	}
}

func FuzzUserToken(f *testing.F) {
	for _, s := range []string{"alice", "j.doe", "a>b", "J\xd6RG", "x=y", "=2E", "a=F6"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if principal.ValidUser(s) == nil {
			tok := mailbox.UserToken(s)
			if !tokenAlphabet.MatchString(tok) {
				t.Fatalf("UserToken(%q) = %q: not a valid key", s, tok)
			}
			if back, err := mailbox.ParseUserToken(tok); err != nil || back != principal.CanonicalUser(s) {
				t.Fatalf("round trip of %q: %q, %v", s, back, err)
			}
		}
		// Any text: ParseUserToken either refuses it or inverts UserToken.
		if u, err := mailbox.ParseUserToken(s); err == nil && mailbox.UserToken(u) != s {
			t.Fatalf("ParseUserToken(%q) = %q, whose token is %q", s, u, mailbox.UserToken(u))
		}
	})
}
