package session

import (
	"errors"
	"slices"
	"testing"

	"github.com/msprelay/msprelay/principal"
	"github.com/msprelay/msprelay/sessionproto"
)

// TestNamesBelongToPeople: issue 12, "an alias may not be a known user's
// name or a reserved name"; "session errors for refused aliases must be
// numeric and the session goes on"; a hidden user's name is refused in the
// same words as a visible one's, naming nobody.
func TestNamesBelongToPeople(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Trust{}, nil)
	e.signIn("bob", "pts/2")
	e.signInState("carol", "pts/3", principal.Hidden)
	mallory := e.signIn("mallory", "pts/6")
	ctx := ctxT(t)
	cases := []struct {
		rule string
		name string
		code int
		text string
	}{
		{"a reserved name is 208", "postmaster", sessionproto.CodeNameReserved, "postmaster: name is reserved"},
		{"root is reserved", "ROOT", sessionproto.CodeNameReserved, "root: name is reserved"},
		{"a signed-in user's name is 209", "bob", sessionproto.CodeNameTaken, "bob: name in use (a user's name)"},
		{"a hidden user's name is 209 in the same words", "carol", sessionproto.CodeNameTaken, "carol: name in use (a user's name)"},
	}
	for _, tc := range cases {
		err := mallory.AddName(ctx, tc.name)
		var se *sessionproto.Error
		if !sessionproto.IsCode(err, tc.code) || !errors.As(err, &se) || se.Text != tc.text {
			t.Errorf("%s: AddName(%s) = %v, want %d %s", tc.rule, tc.name, err, tc.code, tc.text)
		}
	}
	// The session goes on.
	mustNil(t, mallory.AddName(ctx, "oncall"))
	if n, err := mallory.Names(ctx); err != nil || !slices.Equal(n, []string{"oncall"}) {
		t.Fatalf("Names = %v %v", n, err)
	}
}

// TestConsoleSignInRefused: issue 12, "a non-root user signing in at
// terminal console is refused with a numeric session error".
func TestConsoleSignInRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Trust{}, nil)
	c := e.dial()
	if _, err := c.SignIn(ctxT(t), "mallory", "console", principal.Online); !sessionproto.IsCode(err, sessionproto.CodeTermReserved) {
		t.Fatalf("mallory at console: %v, want %d", err, sessionproto.CodeTermReserved)
	}
	if es := e.dir.All(); len(es) != 0 {
		t.Fatalf("refused sign-in is present: %+v", es)
	}
	e.signIn("root", "console")
}
