package secrets

import (
	"strings"
	"testing"

	"github.com/msprelay/msprelay/presence"
)

// The parser admits exactly the user names the rest of the cluster does
// (presence.ValidUser): the rule is repeated here to keep the package a
// leaf, and this test keeps the two copies in step, octet by octet.
func TestUserRuleIsPresences(t *testing.T) {
	t.Parallel()
	names := []string{"", "alice", "Ünal", strings.Repeat("x", MaxUserLen), strings.Repeat("x", MaxUserLen+1)}
	for c := range 256 {
		names = append(names, "u"+string([]byte{byte(c)})+"v")
	}
	for _, u := range names {
		got, want := validUser(u) == nil, presence.ValidUser(u) == nil
		if got != want {
			t.Errorf("user %q: secrets accepts %v, presence.ValidUser %v", u, got, want)
		}
	}
}
