package secrets

import (
	"strings"
	"testing"

	"github.com/msprelay/msprelay/principal"
)

// The parser admits exactly the user names the rest of the cluster does
// (principal.ValidUser): the rule is repeated here to keep the package a
// leaf, and this test keeps the two copies in step, octet by octet.
func TestUserRuleIsPresences(t *testing.T) {
	t.Parallel()
	names := []string{"", "alice", "Ünal", strings.Repeat("x", MaxUserLen), strings.Repeat("x", MaxUserLen+1)}
	for c := range 256 {
		names = append(names, "u"+string([]byte{byte(c)})+"v")
	}
	for _, u := range names {
		got, want := validUser(u) == nil, principal.ValidUser(u) == nil
		if got != want {
			t.Errorf("user %q: secrets accepts %v, principal.ValidUser %v", u, got, want)
		}
	}
}
