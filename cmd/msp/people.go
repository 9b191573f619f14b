package main

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"syscall"

	"github.com/msprelay/msprelay/session"
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
	var se *session.Error
	if errors.As(err, &se) {
		switch se.Code {
		case session.CodeNotOnline:
			return who + " is not signed in anywhere; they will see the invitation if they sign in while it lasts"
		case session.CodeNoConversation:
			return "no such room; 'msp chat NAME' creates one"
		case session.CodeNotMember:
			return "you are not in that room; join it first with 'msp chat NAME'"
		case session.CodeConvBlocked:
			return "a member of that room blocks you"
		case session.CodeConvFull:
			return "that room is full; try again later or use another room"
		case session.CodeConvFailed, session.CodeNameUnchecked:
			return "the node's store did not answer; try again in a moment"
		case session.CodeBadConvName:
			return "that room name is not allowed (letters, digits and -_. only, at most 64 characters)"
		case session.CodeBadText:
			return "the text breaks MSP's rules: " + firstClause(se.Text)
		case session.CodeBadUser:
			return "that user name is not valid: " + firstClause(se.Text)
		case session.CodeBadTerm:
			return "that terminal name is not valid: " + firstClause(se.Text)
		case session.CodeNameReserved:
			return "that name is reserved; choose another"
		case session.CodeNameTaken:
			return "that name belongs to another user; choose another"
		case session.CodeListFull:
			return "your list is full; remove an entry first"
		case session.CodeInList:
			return who + " is already in your list"
		case session.CodeNotInList:
			return who + " is not in your list"
		case session.CodeNotAllowed:
			return "not allowed: " + firstClause(se.Text)
		case session.CodeServerBusy:
			return "the node is busy or shutting down; try again in a moment"
		case session.CodeAuthFailed:
			return "the node did not accept your sign-in; check --user and --secret-file"
		case session.CodeTermReserved:
			return "you may not sign in at that terminal; use --term"
		case session.CodeBadVersion:
			return "the node speaks another protocol version; upgrade msp or the node"
		case session.CodeUnknownCommand:
			return "the node does not know this command; it runs an older msprelay"
		case session.CodeNotOperator, session.CodeRateLimited:
			return firstClause(se.Text)
		case session.CodeUnverified:
			return "the node does not know for sure who you are; use the local session socket (run msp on the node's host)"
		case session.CodeStoreFailed:
			return "the node's store did not answer; try again in a moment"
		case session.CodeInternal:
			return "the node failed; its log says why"
		}
		return firstClause(se.Text)
	}
	switch {
	case errors.Is(err, session.ErrServerShutdown):
		return "the node is shutting down"
	case errors.Is(err, session.ErrKicked):
		return "someone signed in again at this terminal"
	case errors.Is(err, session.ErrIdleTimeout):
		return "the node closed the idle session"
	case errors.Is(err, session.ErrConnClosed), errors.Is(err, io.EOF), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
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
	var se *session.Error
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
