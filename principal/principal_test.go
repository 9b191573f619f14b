package principal

import (
	"errors"
	"strings"
	"testing"
)

// ParseState: "accepts a state word or MSN code, case-insensitively.
// Offline is not accepted: a principal goes offline by signing out."
func TestParseStateWordsAndCodes(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want State
		ok   bool
	}{
		{"online", Online, true},
		{"NLN", Online, true},
		{"Busy", Busy, true},
		{"bsy", Busy, true},
		{"away", Away, true},
		{"IDL", Idle, true},
		{"hidden", Hidden, true},
		{"offline", Offline, false},
		{"FLN", Offline, false},
		{"sleepy", Offline, false},
		{"", Offline, false},
	} {
		got, err := ParseState(tc.in)
		if tc.ok != (err == nil) || got != tc.want {
			t.Errorf("ParseState(%q) = %v, %v; want %v, ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
		if err != nil && !errors.Is(err, ErrBadState) {
			t.Errorf("ParseState(%q) error %v does not wrap ErrBadState", tc.in, err)
		}
		if tc.ok {
			if back, err := ParseState(got.Code()); err != nil || back != got {
				t.Errorf("%v: its code %s parses to %v, %v", got, got.Code(), back, err)
			}
		}
	}
}

// The name rules: "1..MaxNameLen octets, no spaces, control characters,
// '@' (it pins a node), '*' or '/'" for users; terminals may not be "*"
// ("which means every terminal"); node names are "letters, digits, '-' and
// '_'" because they go into NATS subjects and memberlist member names.
func TestNameRules(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("a", MaxNameLen+1)
	for _, tc := range []struct {
		rule     string
		check    func(string) error
		sentinel error
		name     string
		ok       bool
	}{
		{"a plain user", ValidUser, ErrBadUser, "alice", true},
		{"a Latin-1 user", ValidUser, ErrBadUser, "j\xfcrgen", true},
		{"a user pins no node", ValidUser, ErrBadUser, "alice@n1", false},
		{"a user is not a wildcard", ValidUser, ErrBadUser, "a*", false},
		{"a user has no slash", ValidUser, ErrBadUser, "a/b", false},
		{"a user has no space", ValidUser, ErrBadUser, "a b", false},
		{"a user has no control octet", ValidUser, ErrBadUser, "a\x1b", false},
		{"a user has no C1 octet", ValidUser, ErrBadUser, "a\x85", false},
		{"a user is not empty", ValidUser, ErrBadUser, "", false},
		{"a user fits MaxNameLen", ValidUser, ErrBadUser, long, false},
		{"a terminal may have a slash", ValidTerm, ErrBadTerm, "pts/1", true},
		{"a terminal is not *", ValidTerm, ErrBadTerm, "*", false},
		{"a terminal has no space", ValidTerm, ErrBadTerm, "tty 1", false},
		{"a node name", ValidNode, ErrBadNode, "node-1_a", true},
		{"a node has no dot (NATS subjects)", ValidNode, ErrBadNode, "n.1", false},
		{"a node is not empty", ValidNode, ErrBadNode, "", false},
		{"a node fits MaxNameLen", ValidNode, ErrBadNode, long, false},
	} {
		err := tc.check(tc.name)
		if tc.ok != (err == nil) {
			t.Errorf("%s: %q gives %v, want ok=%v", tc.rule, tc.name, err, tc.ok)
		}
		if err != nil && !errors.Is(err, tc.sentinel) {
			t.Errorf("%s: error %v does not wrap %v", tc.rule, err, tc.sentinel)
		}
	}
}

// Answers: "a message addressed to name reaches this entry, either by its
// user name or by one of its aliases", compared as MSP compares names
// (case-insensitively, RFC 1312).
func TestEntryAnswersUserAndAliases(t *testing.T) {
	t.Parallel()
	e := Entry{User: "alice", Aliases: []string{"helpdesk"}}
	for _, tc := range []struct {
		name string
		want bool
	}{
		{"alice", true},
		{"ALICE", true},
		{"HelpDesk", true},
		{"bob", false},
		{"alice@n1", false},
	} {
		if got := e.Answers(tc.name); got != tc.want {
			t.Errorf("Answers(%q) = %v, want %v", tc.name, got, tc.want)
		}
	}
	if got := CanonicalUser("J\xdcRGEN"); got != "j\xfcrgen" {
		t.Errorf("CanonicalUser folds Latin-1 capitals: got %q", got)
	}
}
