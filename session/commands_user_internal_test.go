package session

import (
	"errors"
	"testing"

	"github.com/msprelay/msprelay/sessionproto"
)

// Issue 20 item 4: wall is "for root and an operator group only"; the
// group decides for everyone else, and a failed lookup refuses.
func TestMayWallRootAndOperatorGroupOnly(t *testing.T) {
	t.Parallel()
	groups := func(uid uint32) ([]string, error) {
		switch uid {
		case 1000:
			return []string{"users", "msprelay-admin"}, nil
		case 1001:
			return []string{"users", "adm", "sudo"}, nil
		}
		return nil, errors.New("no such user")
	}
	cases := []struct {
		name  string
		uid   uint32
		group string
		want  bool
	}{
		{"root may", 0, sessionproto.DefaultAdminGroup, true},
		{"a member of the operator group may", 1000, sessionproto.DefaultAdminGroup, true},
		{"a user outside it may not, whatever else she is", 1001, sessionproto.DefaultAdminGroup, false},
		{"the group is configurable", 1001, "adm", true},
		{"an unknown uid may not", 4242, sessionproto.DefaultAdminGroup, false},
	}
	for _, tc := range cases {
		got, _ := mayWall(tc.uid, tc.group, groups)
		if got != tc.want {
			t.Errorf("%s: mayWall(%d, %s) = %v, want %v", tc.name, tc.uid, tc.group, got, tc.want)
		}
	}
}

// The broadcast budget is per user: one user's walls do not use up
// another's, and the table stays bounded.
func TestWallRateIsPerUserAndBounded(t *testing.T) {
	t.Parallel()
	var u userCmds
	for i := range wallBurst {
		if !u.allowWall("root") {
			t.Fatalf("wall %d of the burst refused", i+1)
		}
	}
	if u.allowWall("root") {
		t.Errorf("wall past the burst allowed")
	}
	if !u.allowWall("oper") {
		t.Errorf("another user's first wall refused")
	}
	for i := range 3 * maxWallers {
		u.allowWall(string(rune('a'+i%26)) + string(rune('0'+i/26%10)) + string(rune('A'+i/260)))
	}
	if n := len(u.walls); n > maxWallers {
		t.Errorf("rate table holds %d users, over %d", n, maxWallers)
	}
}
