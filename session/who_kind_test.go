package session

import (
	"errors"
	"testing"

	"github.com/msprelay/msprelay/principal"
	"github.com/msprelay/msprelay/sessionproto"
)

// Rule (issue 9): `msp who` shows tty terminals, so a WHO line carries the
// kind of a host login's tty as an eighth field; session lines keep seven.
func TestWhoLineCarriesTTYKind(t *testing.T) {
	t.Parallel()
	e := principal.Entry{User: "bob", Node: "hosta", Term: "pts/0", State: principal.Idle, Kind: principal.KindTTY}
	line := string(sessionproto.AppendWhoLine(nil, &e))
	if line != "bob hosta pts/0 IDL - - - tty\r\n" {
		t.Fatalf("tty WHO line = %q", line)
	}
	es, err := sessionproto.ParseWho([]byte(line))
	if err != nil || len(es) != 1 || es[0].Kind != principal.KindTTY {
		t.Fatalf("parseWho = %+v, %v", es, err)
	}
	e.Kind = principal.KindSession
	if line := string(sessionproto.AppendWhoLine(nil, &e)); line != "bob hosta pts/0 IDL - - -\r\n" {
		t.Fatalf("session WHO line = %q, want the seven fields older clients read", line)
	}
	if _, err := sessionproto.ParseWho([]byte("bob hosta pts/0 IDL - - - printer\r\n")); !errors.Is(err, sessionproto.ErrBadPayload) {
		t.Fatalf("unknown kind: %v, want sessionproto.ErrBadPayload", err)
	}
}
