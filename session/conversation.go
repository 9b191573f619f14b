package session

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/msprelay/msprelay/conversation"
	"github.com/msprelay/msprelay/identity"
	"github.com/msprelay/msprelay/msp"
	"github.com/msprelay/msprelay/principal"
	"github.com/msprelay/msprelay/sessionproto"
)

// Conversation commands (MSN switchboard style, see docs/SESSION.md):
//
//	XFR TrID SB [name [PRIVATE]]   create or join; IRO lines, history MSG pushes, XFR TrID SB name
//	ANS TrID name                  join an existing one; IRO lines, history, ANS TrID OK name
//	CAL TrID name user             ring user; CAL TrID RINGING name user
//	MSG TrID name U|N|A len        a message or typing notice; ACK TrID id / NAK TrID reason per mode
//	BYE TrID name                  leave; BYE TrID name
//
// Pushes: JOI name user node term, BYE name user node term left|dropped,
// RNG name user node term, MSG name user node term len (headers, text).

// MaxSessionConversations caps the conversations one session is in.
const MaxSessionConversations = 16

// Timeouts and bounds of conversation commands.
const (
	convOpTimeout  = 10 * time.Second
	convNameMaxArg = 64 // how much of a refused name an error line repeats
)

// convState is a session's conversations. Owned by the reader goroutine.
type convState struct {
	members map[string]*conversation.Membership // canonical name -> membership
	detach  func()                              // ends ringing; nil when not attached
	sink    *convSink
}

// convSink turns conversation events into pushes for one session.
type convSink struct{ s *session }

// convCommand returns the handler of a conversation command, or nil.
func (s *session) convCommand(cmd string) func(*sessionproto.Frame) *sessionproto.Fault {
	if s.srv.cfg.Conversations == nil {
		return nil
	}
	switch cmd {
	case "XFR":
		return s.cmdXFR
	case "ANS":
		return s.cmdANS
	case "CAL":
		return s.cmdCAL
	case "MSG":
		return s.cmdMSGConv
	case "BYE":
		return s.cmdBYE
	}
	return nil
}

func (s *session) convSinkFor() *convSink {
	if s.conv.sink == nil {
		s.conv.sink = &convSink{s: s}
	}
	return s.conv.sink
}

// attachRings makes the signed-in session ringable for invitations.
func (s *session) attachRings() {
	if m := s.srv.cfg.Conversations; m != nil && s.line != nil && s.conv.detach == nil {
		s.conv.detach = m.Attach(s.user, s.convSinkFor())
	}
}

// leaveConversations ends ringing and leaves every conversation; the
// session is ending.
func (s *session) leaveConversations() {
	if s.conv.detach != nil {
		s.conv.detach()
		s.conv.detach = nil
	}
	// One bound for all of them: with the store unreachable, a session
	// in many conversations must not hold up shutdown for each in turn.
	ctx, cancel := context.WithTimeout(context.Background(), convOpTimeout)
	defer cancel()
	for name, ms := range s.conv.members {
		if err := ms.Leave(ctx); err != nil {
			s.log.Warn("leaving conversation failed", "conversation", name, "err", err)
		}
	}
	s.conv.members = nil
}

// convSender is the identity the session's conversation messages carry:
// its user, proved or not as its sign-in method says.
func (s *session) convSender() identity.Identity {
	m, _ := identity.ParseMethod(s.ident.Method)
	if !s.ident.Verified && m.Proves() {
		m = identity.None
	}
	return identity.Identity{User: s.user, Claimed: s.user, Method: m, Node: s.srv.cfg.Node, Source: "session"}
}

// convName decodes and checks argument i as a conversation name.
func (s *session) convName(f *sessionproto.Frame, i int) (string, *sessionproto.Fault) {
	name, pe := arg(f, i)
	if pe != nil {
		return "", pe
	}
	name = strings.TrimPrefix(name, "#")
	if err := conversation.ValidName(name); err != nil {
		return "", sessionproto.Errf(sessionproto.CodeBadConvName, f.TrID, "%v", err)
	}
	return conversation.CanonicalName(name), nil
}

// convError maps conversation errors to numeric replies.
func convError(trid uint32, err error) *sessionproto.Fault {
	code := sessionproto.CodeConvFailed
	switch {
	case errors.Is(err, conversation.ErrBadName):
		code = sessionproto.CodeBadConvName
	case errors.Is(err, conversation.ErrNoConversation):
		code = sessionproto.CodeNoConversation
	case errors.Is(err, conversation.ErrNotMember):
		code = sessionproto.CodeNotMember
	case errors.Is(err, conversation.ErrBlocked):
		code = sessionproto.CodeConvBlocked
	case errors.Is(err, conversation.ErrFull):
		code = sessionproto.CodeConvFull
	case errors.Is(err, conversation.ErrTooMany):
		code = sessionproto.CodeConvTooMany
	case errors.Is(err, conversation.ErrNotInvited):
		code = sessionproto.CodeNotInvited
	case errors.Is(err, conversation.ErrNotOwner):
		code = sessionproto.CodeNotOwner
	case errors.Is(err, conversation.ErrNotOnline):
		code = sessionproto.CodeNotOnline
	case errors.Is(err, conversation.ErrBadText):
		code = sessionproto.CodeBadText
	}
	return sessionproto.Errf(code, trid, "%v", err)
}

// cmdXFR: XFR TrID SB [name [PRIVATE]] -> IRO..., MSG... (history), XFR
// TrID SB name. PRIVATE creates an invite-only conversation.
func (s *session) cmdXFR(f *sessionproto.Frame) *sessionproto.Fault {
	if pe := wantArgs(f, 1, 3); pe != nil {
		return pe
	}
	if f.Args[0] != "SB" {
		return sessionproto.Errf(sessionproto.CodeBadParam, f.TrID, "XFR %q: only SB", sessionproto.Truncate(f.Args[0], 16))
	}
	name, how := conversation.NewName(), conversation.JoinOrCreate
	if len(f.Args) >= 2 {
		var pe *sessionproto.Fault
		if name, pe = s.convName(f, 1); pe != nil {
			return pe
		}
	}
	if len(f.Args) == 3 {
		if f.Args[2] != "PRIVATE" {
			return sessionproto.Errf(sessionproto.CodeBadParam, f.TrID, "XFR %q: only PRIVATE", sessionproto.Truncate(f.Args[2], 16))
		}
		how = conversation.CreatePrivate
	}
	return s.join(f, name, how, sessionproto.Line("XFR", f.TrID, true, "SB", name))
}

// cmdANS: ANS TrID name -> IRO..., MSG... (history), ANS TrID OK name.
func (s *session) cmdANS(f *sessionproto.Frame) *sessionproto.Fault {
	if pe := wantArgs(f, 1, 1); pe != nil {
		return pe
	}
	name, pe := s.convName(f, 0)
	if pe != nil {
		return pe
	}
	return s.join(f, name, conversation.JoinExisting, sessionproto.Line("ANS", f.TrID, true, "OK", name))
}

// join joins (or creates) name and answers with the roster, the history and
// reply, as one frame so nothing pushed meanwhile comes between them.
func (s *session) join(f *sessionproto.Frame, name string, how conversation.How, reply []byte) *sessionproto.Fault {
	if _, ok := s.conv.members[name]; ok {
		return sessionproto.Errf(sessionproto.CodeInList, f.TrID, "already in %s", name)
	}
	if len(s.conv.members) >= MaxSessionConversations {
		return sessionproto.Errf(sessionproto.CodeListFull, f.TrID, "this session is in %d conversations already", len(s.conv.members))
	}
	s.mu.Lock()
	blocks := make([]string, 0, len(s.bl))
	for b := range s.bl {
		blocks = append(blocks, b)
	}
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(s.srv.ctx, convOpTimeout)
	defer cancel()
	ms, others, hist, err := s.srv.cfg.Conversations.Join(ctx, name, conversation.Identity{User: s.user, Term: s.term, Blocks: blocks, Sender: s.convSender()}, s.convSinkFor(), how)
	if err != nil {
		return convError(f.TrID, err)
	}
	if s.conv.members == nil {
		s.conv.members = map[string]*conversation.Membership{}
	}
	s.conv.members[name] = ms
	if s.line != nil {
		s.line.Touch()
	}
	var b []byte
	for i, mb := range others {
		b = append(b, sessionproto.Line("IRO", f.TrID, true, strconv.Itoa(i+1), strconv.Itoa(len(others)), name,
			sessionproto.EncodeToken(mb.User), sessionproto.EncodeToken(mb.Node), sessionproto.EncodeToken(mb.Term))...)
	}
	s.mu.Lock()
	for i := range hist {
		if !s.blockedLocked(hist[i].User + "@" + hist[i].Node) {
			b = append(b, convMessageFrame(&hist[i], true)...)
		}
	}
	s.mu.Unlock()
	b = append(b, reply...)
	err = s.sendFrame(b)
	ms.Activate()
	return s.replied(err)
}

// cmdCAL: CAL TrID name user -> CAL TrID RINGING name user terminals.
func (s *session) cmdCAL(f *sessionproto.Frame) *sessionproto.Fault {
	if pe := wantArgs(f, 2, 2); pe != nil {
		return pe
	}
	name, pe := s.convName(f, 0)
	if pe != nil {
		return pe
	}
	user, pe := arg(f, 1)
	if pe != nil {
		return pe
	}
	if err := principal.ValidUser(user); err != nil {
		return sessionproto.Errf(sessionproto.CodeBadUser, f.TrID, "%v", err)
	}
	user = principal.CanonicalUser(user)
	ms, ok := s.conv.members[name]
	if !ok {
		return sessionproto.Errf(sessionproto.CodeNotMember, f.TrID, "not in %s", name)
	}
	ctx, cancel := context.WithTimeout(s.srv.ctx, convOpTimeout)
	defer cancel()
	n, err := ms.Invite(ctx, user)
	if err != nil {
		return convError(f.TrID, err)
	}
	// The count of terminals rung comes last, so that clients that read
	// three arguments still work (msp chat confirms "rang bob (1 terminal)").
	return s.replied(s.sendFrame(sessionproto.Line("CAL", f.TrID, true, "RINGING", name, sessionproto.EncodeToken(user), strconv.Itoa(n))))
}

// cmdMSGConv: MSG TrID name U|N|A len, payload -> ACK TrID id (A) or NAK
// TrID reason (N, A).
func (s *session) cmdMSGConv(f *sessionproto.Frame) *sessionproto.Fault {
	if pe := wantArgs(f, 2, 2); pe != nil {
		return pe
	}
	name, pe := s.convName(f, 0)
	if pe != nil {
		return pe
	}
	mode := f.Args[1]
	if mode != "U" && mode != "N" && mode != "A" {
		return sessionproto.Errf(sessionproto.CodeBadParam, f.TrID, "ack mode %q: want U, N or A", sessionproto.Truncate(mode, 16))
	}
	ms, ok := s.conv.members[name]
	if !ok {
		return sessionproto.Errf(sessionproto.CodeNotMember, f.TrID, "not in %s", name)
	}
	kind, text, err := parseConvPayload(f.Payload)
	if err != nil {
		return sessionproto.Errf(sessionproto.CodeBadText, f.TrID, "%v", err)
	}
	if kind == conversation.KindMessage {
		if err := conversation.ValidText(text, s.srv.cfg.Conversations.MaxText()); err != nil {
			return sessionproto.Errf(sessionproto.CodeBadText, f.TrID, "%v", err)
		}
		if s.line != nil {
			s.line.Touch()
		}
	}
	ctx, cancel := context.WithTimeout(s.srv.ctx, convOpTimeout)
	id, err := ms.Send(ctx, kind, text)
	cancel()
	switch {
	case err != nil && mode != "U":
		s.log.Warn("conversation message not stored", "conversation", name, "err", err)
		return s.replied(s.sendFrame(sessionproto.TextLine("NAK", 0, f.TrID, "not stored: "+err.Error())))
	case err == nil && mode == "A":
		return s.replied(s.sendFrame(sessionproto.TextLine("ACK", 0, f.TrID, id)))
	}
	return nil
}

// cmdBYE: BYE TrID name -> BYE TrID name.
func (s *session) cmdBYE(f *sessionproto.Frame) *sessionproto.Fault {
	if pe := wantArgs(f, 1, 1); pe != nil {
		return pe
	}
	name, pe := s.convName(f, 0)
	if pe != nil {
		return pe
	}
	ms, ok := s.conv.members[name]
	if !ok {
		return sessionproto.Errf(sessionproto.CodeNotMember, f.TrID, "not in %s", name)
	}
	delete(s.conv.members, name)
	ctx, cancel := context.WithTimeout(s.srv.ctx, convOpTimeout)
	defer cancel()
	if err := ms.Leave(ctx); err != nil {
		s.log.Warn("leaving conversation failed", "conversation", name, "err", err)
	}
	return s.replied(s.sendFrame(sessionproto.Line("BYE", f.TrID, true, name)))
}

// parseConvPayload reads a client MSG payload: plain text, or MSN style
// headers ("Content-Type: ...") and a blank line before the text. The
// control type is a typing notice.
func parseConvPayload(p []byte) (conversation.Kind, string, error) {
	s := string(p)
	if len(s) < len(sessionproto.HeaderContentType)+1 || !strings.EqualFold(s[:len(sessionproto.HeaderContentType)+1], sessionproto.HeaderContentType+":") {
		return conversation.KindMessage, msp.NormalizeNewlines(s), nil
	}
	head, body, ok := strings.Cut(s, "\r\n\r\n")
	if !ok {
		return 0, "", errors.New("headers without a blank line after them")
	}
	ctype := ""
	for _, l := range sessionproto.SplitLines(head) {
		k, v, _ := strings.Cut(l, ":")
		if strings.EqualFold(k, sessionproto.HeaderContentType) {
			ctype = strings.ToLower(strings.TrimSpace(v))
		}
	}
	switch {
	case ctype == sessionproto.ContentTyping:
		return conversation.KindTyping, "", nil
	case strings.HasPrefix(ctype, "text/plain"):
		return conversation.KindMessage, msp.NormalizeNewlines(body), nil
	}
	return 0, "", errors.New("Content-Type must be text/plain or " + sessionproto.ContentTyping)
}

// convMessageFrame is the MSG push for a message or typing notice.
func convMessageFrame(ev *conversation.Event, history bool) []byte {
	var p []byte
	h := func(name, value string) {
		p = append(p, name...)
		p = append(p, ": "...)
		p = sessionproto.AppendEscaped(p, value, sessionproto.HeaderSpecial)
		p = append(p, "\r\n"...)
	}
	if ev.Kind == conversation.KindTyping {
		h(sessionproto.HeaderContentType, sessionproto.ContentTyping)
		h(sessionproto.HeaderTypingUser, ev.User)
	} else {
		h(sessionproto.HeaderID, ev.ID)
		h(sessionproto.HeaderTime, ev.Time.UTC().Format(time.RFC3339Nano))
		h(sessionproto.HeaderVerified, sessionproto.YesNo(ev.Sender.Verified()))
		h(sessionproto.HeaderMethod, ev.Sender.Method.String())
		if ev.Sender.Impersonation() {
			h(sessionproto.HeaderSenderUser, ev.Sender.User)
		}
		if history {
			h(sessionproto.HeaderHistory, "yes")
		}
		h(sessionproto.HeaderContentType, sessionproto.ContentText)
	}
	p = append(p, "\r\n"...)
	p = append(p, ev.Text...)
	return sessionproto.WithPayload("MSG", 0, false, p, ev.Conversation, sessionproto.EncodeToken(ev.User), sessionproto.EncodeToken(ev.Node), sessionproto.EncodeToken(ev.Term))
}

// Event implements conversation.Sink: it queues the push without waiting.
// Messages from blocked senders are dropped; a ring from a blocked inviter
// is refused. A session too far behind to take a push is closed, as for
// presence pushes.
func (c *convSink) Event(ev *conversation.Event) bool {
	s := c.s
	var b []byte
	args := func(cmd string, extra ...string) []byte {
		a := append([]string{ev.Conversation, sessionproto.EncodeToken(ev.User), sessionproto.EncodeToken(ev.Node), sessionproto.EncodeToken(ev.Term)}, extra...)
		return sessionproto.Line(cmd, 0, false, a...)
	}
	switch ev.Kind {
	case conversation.KindMessage, conversation.KindTyping:
		b = convMessageFrame(ev, false)
	case conversation.KindJoin:
		b = args("JOI")
	case conversation.KindLeave:
		b = args("BYE", ev.Reason)
	case conversation.KindInvite:
		b = args("RNG")
	default:
		return false
	}
	if ev.Kind == conversation.KindInvite && s.line != nil && s.line.Entry().State == principal.Hidden &&
		principal.CanonicalUser(ev.User) != s.user {
		// A hidden terminal is offline to others (issue 12): it is not
		// rung, so the inviter hears "not online" as for an absent user.
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.ending || s.signingIn:
		return false
	case ev.Kind != conversation.KindJoin && ev.Kind != conversation.KindLeave && s.blockedLocked(ev.User+"@"+ev.Node):
		return ev.Kind != conversation.KindInvite
	case !s.pushLocked(b):
		s.log.Info("session closed: client not reading conversation pushes", "user", s.user, "term", s.term)
		s.abortLocked()
		return false
	}
	return true
}

// whoConversation: WHO TrID #name -> WHO TrID count len, one member per
// line in the WHO format (state NLN, since and last-active the time the
// member joined, no aliases), in order of joining.
func (s *session) whoConversation(f *sessionproto.Frame, name string) *sessionproto.Fault {
	name = strings.TrimPrefix(name, "#")
	if err := conversation.ValidName(name); err != nil {
		return sessionproto.Errf(sessionproto.CodeBadConvName, f.TrID, "%v", err)
	}
	ctx, cancel := context.WithTimeout(s.srv.ctx, convOpTimeout)
	defer cancel()
	members, err := s.srv.cfg.Conversations.RosterFor(ctx, name, s.user)
	if err != nil {
		return convError(f.TrID, err)
	}
	var p []byte
	for _, mb := range members {
		e := principal.Entry{User: mb.User, Node: mb.Node, Term: mb.Term, State: principal.Online, Since: mb.Joined, LastActive: mb.Joined}
		if l := sessionproto.AppendWhoLine(nil, &e); len(p)+len(l) <= sessionproto.MaxServerPayload {
			p = append(p, l...)
		}
	}
	return s.replied(s.sendFrame(sessionproto.WithPayload("WHO", f.TrID, true, p, strconv.Itoa(len(members)))))
}
