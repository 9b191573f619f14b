package secrets_test

import (
	"strings"
	"testing"

	"github.com/msprelay/msprelay/msp"
	"github.com/msprelay/msprelay/principal"
	"github.com/msprelay/msprelay/secrets"
)

// FuzzParse: the secrets parser never panics, admits only users valid in
// the cluster (principal.ValidUser) with non-empty, trimmed secrets, and
// finds each user it admitted under any spelling of the name's case.
func FuzzParse(f *testing.F) {
	f.Add("alice s3cret\n# comment\n\nbob\tcorrect horse\n")
	f.Add("alice\n")
	f.Fuzz(func(t *testing.T, in string) {
		s, err := secrets.Parse(strings.NewReader(in))
		if err != nil {
			return
		}
		n := 0
		for line := range strings.Lines(in) {
			l := strings.TrimSpace(line)
			if l == "" || l[0] == '#' {
				continue
			}
			n++
			user, _, _ := strings.Cut(strings.ReplaceAll(l, "\t", " "), " ")
			if err := principal.ValidUser(user); err != nil {
				t.Fatalf("admitted user %q: %v", user, err)
			}
			secret, ok := s.Secret(msp.Fold(user))
			if !ok || secret == "" || strings.TrimSpace(secret) != secret {
				t.Fatalf("user %q has secret %q, %v", user, secret, ok)
			}
		}
		if s.Len() != n {
			t.Fatalf("Len = %d, want one per line (%d)", s.Len(), n)
		}
	})
}
