package sessionproto

import (
	"fmt"
	"strings"
	"time"
)

// Conversation error codes.
const (
	CodeNotOnline      = 217 // CAL: the invitee is signed in nowhere (or blocks the caller)
	CodeBadConvName    = 230 // conversation name too long or outside the token rules
	CodeNoConversation = 231 // no such conversation
	CodeNotMember      = 232 // the session is not in that conversation
	CodeConvBlocked    = 233 // a member of the conversation blocks this user
	CodeConvFull       = 234 // the conversation has its maximum of members
	CodeConvTooMany    = 235 // this user has her maximum of open conversations, or of places in this one
	CodeNotInvited     = 236 // the conversation is private and this user was not invited
	CodeNotOwner       = 237 // only the owner of a private conversation invites
	CodeConvFailed     = 281 // the conversation store did not answer; try again
)

// Content types of conversation message payloads.
const (
	ContentText       = "text/plain; charset=ISO-8859-1"
	ContentTyping     = "text/x-msmsgscontrol"
	HeaderContentType = "Content-Type"
	HeaderTypingUser  = "TypingUser"
	HeaderHistory     = "History"
)

// ConvEvent is something that happened in a conversation: a message
// ("message"), a typing notice ("typing"), a member joining ("join") or
// leaving ("leave", Reason "left" or "dropped"), or an invitation ("invite",
// User inviting to Conversation).
type ConvEvent struct {
	Type         string
	Conversation string
	User         string
	Node         string
	Term         string
	Text         string    // messages; CR LF line ends
	ID           string    // messages
	Time         time.Time // messages (when sent); others: when received
	Reason       string    // leave
	History      bool      // a stored message shown on joining
	// Verified (messages): the sender's node proved that User sent it.
	// Anything else is a claim, to be shown as such.
	Verified bool
	// SenderMethod (messages) is how the sender was established
	// ("peercred", "kernel", "signature", "secret", "trust", "none").
	SenderMethod string
	// SenderUser (messages) is the local user who really sent a message
	// that claims User, when the kernel named her.
	SenderUser string
}

// ParseConvMessage decodes a conversation MSG payload into ev.
func ParseConvMessage(p []byte, ev *ConvEvent) error {
	head, text, ok := strings.Cut(string(p), "\r\n\r\n")
	if !ok {
		return fmt.Errorf("%w: conversation MSG has no blank line after its headers", ErrBadPayload)
	}
	ev.Type, ev.Text = "message", text
	for _, l := range SplitLines(head) {
		k, v, _ := strings.Cut(l, ":")
		v, err := Unescape(strings.TrimPrefix(v, " "))
		if err != nil {
			return fmt.Errorf("%w: conversation MSG header %s: %v", ErrBadPayload, k, err)
		}
		switch strings.ToLower(k) {
		case "id":
			ev.ID = v
		case "time":
			if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
				ev.Time = t
			}
		case "history":
			ev.History = v == "yes"
		case "verified":
			ev.Verified = v == "yes"
		case "sender-method":
			ev.SenderMethod = v
		case "sender-user":
			ev.SenderUser = v
		case "content-type":
			if strings.HasPrefix(strings.ToLower(v), ContentTyping) {
				ev.Type = "typing"
			}
		}
	}
	return nil
}
