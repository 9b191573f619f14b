package main

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"syscall"

	"github.com/msprelay/msprelay/sessionclient"
	"github.com/msprelay/msprelay/sessionproto"
)

// peopleError turns an error from the session protocol or the network into
// one sentence for a person, saying what to do where there is something to
// do, without the protocol's numeric code (issue 20: "Errors for people are
// one sentence with what to do, never a protocol code"). --json output keeps
// the code in a field of its own. subject names the other user or room the
// command was about, when there is one, for sentences like "bob is not
// signed in".
func peopleError(err error, subject ...string) string {
	who := "they"
	if len(subject) > 0 && subject[0] != "" {
		who = subject[0]
	}
	var se *sessionproto.Error
	if errors.As(err, &se) {
		switch se.Code {
		case sessionproto.CodeNotOnline:
			return who + " is not signed in anywhere; they will see the invitation if they sign in while it lasts"
		case sessionproto.CodeNoConversation:
			return "no such room; 'msp chat NAME' creates one"
		case sessionproto.CodeNotMember:
			return "you are not in that room; join it first with 'msp chat NAME'"
		case sessionproto.CodeConvBlocked:
			return "a member of that room blocks you"
		case sessionproto.CodeConvFull:
			return "that room is full; try again later or use another room"
		case sessionproto.CodeConvFailed, sessionproto.CodeNameUnchecked:
			return "the node's store did not answer; try again in a moment"
		case sessionproto.CodeBadConvName:
			return "that room name is not allowed (letters, digits and -_. only, at most 64 characters)"
		case sessionproto.CodeBadText:
			return "the text breaks MSP's rules: " + firstClause(se.Text)
		case sessionproto.CodeBadUser:
			return "that user name is not valid: " + firstClause(se.Text)
		case sessionproto.CodeBadTerm:
			return "that terminal name is not valid: " + firstClause(se.Text)
		case sessionproto.CodeNameReserved:
			return "that name is reserved; choose another"
		case sessionproto.CodeNameTaken:
			return "that name belongs to another user; choose another"
		case sessionproto.CodeListFull:
			return "your list is full; remove an entry first"
		case sessionproto.CodeInList:
			return who + " is already in your list"
		case sessionproto.CodeNotInList:
			return who + " is not in your list"
		case sessionproto.CodeNotAllowed:
			return "not allowed: " + firstClause(se.Text)
		case sessionproto.CodeServerBusy:
			return "the node is busy or shutting down; try again in a moment"
		case sessionproto.CodeAuthFailed:
			return "the node did not accept your sign-in; check --user and --secret-file"
		case sessionproto.CodeTermReserved:
			return "you may not sign in at that terminal; use --term"
		case sessionproto.CodeBadVersion:
			return "the node speaks another protocol version; upgrade msp or the node"
		case sessionproto.CodeUnknownCommand:
			return "the node does not know this command; it runs an older msprelay"
		case sessionproto.CodeNotOperator, sessionproto.CodeRateLimited:
			return firstClause(se.Text)
		case sessionproto.CodeUnverified:
			return "the node does not know for sure who you are; use the local session socket (run msp on the node's host)"
		case sessionproto.CodeStoreFailed:
			return "the node's store did not answer; try again in a moment"
		case sessionproto.CodeInternal:
			return "the node failed; its log says why"
		}
		return firstClause(se.Text)
	}
	switch {
	case errors.Is(err, sessionclient.ErrServerShutdown):
		return "the node is shutting down"
	case errors.Is(err, sessionclient.ErrKicked):
		return "someone signed in again at this terminal"
	case errors.Is(err, sessionclient.ErrIdleTimeout):
		return "the node closed the idle session"
	case errors.Is(err, sessionclient.ErrConnClosed), errors.Is(err, io.EOF), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return "the node closed the connection"
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ENOENT):
		return "no node answers"
	}
	return strings.TrimPrefix(err.Error(), "session: ")
}

// firstClause is a server's explanation without a package prefix.
func firstClause(s string) string {
	s = strings.TrimSpace(s)
	for _, p := range []string{"conversation: ", "session: "} {
		s = strings.TrimPrefix(s, p)
	}
	return s
}

// codeOf returns the session protocol code inside err, or 0.
func codeOf(err error) int {
	var se *sessionproto.Error
	if errors.As(err, &se) {
		return se.Code
	}
	return 0
}

// failPeople prints err for people (peopleError), prefixed with what was
// being done, and returns code.
func failPeople(e env, code int, doing string, err error, subject ...string) int {
	return fail(e, code, "%s", fmt.Sprintf("%s: %s", doing, peopleError(err, subject...)))
}
