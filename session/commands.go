package session

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/msprelay/msprelay/identity"
	"github.com/msprelay/msprelay/msp"
	"github.com/msprelay/msprelay/principal"
	"github.com/msprelay/msprelay/sessionproto"
	"github.com/msprelay/msprelay/switchboard"
)

// cmdVER: VER TrID version... -> VER TrID MSPS2|MSPS1 (MSPS2, with
// acknowledgements, when offered before sign-in; see ack.go).
func (s *session) cmdVER(f *sessionproto.Frame) *sessionproto.Fault {
	if len(f.Args) == 0 {
		return sessionproto.Errf(sessionproto.CodeSyntax, f.TrID, "VER needs at least one version")
	}
	// The newest version offered wins: MSPS3 (acknowledgements in
	// batches), then MSPS2 (one id per ACK). Both acknowledge.
	for _, v := range []string{sessionproto.ProtocolVersionBatch, sessionproto.ProtocolVersionAcks} {
		if !s.signedIn && slices.Contains(f.Args, v) {
			s.mu.Lock()
			s.acks = true
			s.mu.Unlock()
			return s.replied(s.sendFrame(sessionproto.Line("VER", f.TrID, true, v)))
		}
	}
	if !slices.Contains(f.Args, sessionproto.ProtocolVersion) {
		return sessionproto.Errf(sessionproto.CodeBadVersion, f.TrID, "this server speaks %s only (and %s, %s with acknowledgements, and %s, with acknowledgements in batches)", sessionproto.ProtocolVersion, sessionproto.ProtocolVersionAcks, sessionproto.ProtocolVersion, sessionproto.ProtocolVersionBatch)
	}
	return s.replied(s.sendFrame(sessionproto.Line("VER", f.TrID, true, sessionproto.ProtocolVersion)))
}

// cmdUSR: USR TrID user term [state] -> (CHL TrID nonce, QRY TrID' answer)
// -> USR TrID' OK user term state node method.
func (s *session) cmdUSR(f *sessionproto.Frame) *sessionproto.Fault {
	if s.signedIn {
		return sessionproto.Errf(sessionproto.CodeAlreadySignedIn, f.TrID, "already signed in as %s", s.user)
	}
	if pe := wantArgs(f, 2, 3); pe != nil {
		return pe
	}
	user, pe := arg(f, 0)
	if pe != nil {
		return pe
	}
	term, pe := arg(f, 1)
	if pe != nil {
		return pe
	}
	if err := principal.ValidUser(user); err != nil {
		return sessionproto.Errf(sessionproto.CodeBadUser, f.TrID, "%v", err)
	}
	if term != sessionproto.NoTerminal {
		if err := principal.ValidTerm(term); err != nil {
			return sessionproto.Errf(sessionproto.CodeBadTerm, f.TrID, "%v", err)
		}
	}
	state := principal.Online
	if len(f.Args) == 3 {
		st, err := principal.ParseState(f.Args[2])
		if err != nil {
			return sessionproto.Errf(sessionproto.CodeBadParam, f.TrID, "%v", err)
		}
		state = st
	}

	trid := f.TrID
	src, fromNet := s.srv.sourceOf(s.conn)
	if fromNet && s.srv.fails.blocked(src) {
		s.srv.stats.throttled.Add(1)
		s.srv.limits.Hit("session: sign-ins refused, too many failures from this source", "remote", s.conn.RemoteAddr().String(), "source", src.String())
		return &sessionproto.Fault{Code: sessionproto.CodeAuthFailed, TrID: trid, Text: "too many failed sign-ins from your address; try again later", Fatal: true, Quiet: true}
	}
	challenged := false
	req := &AuthRequest{Conn: s.conn, User: user, Term: term}
	req.Challenge = func(nonce string) (string, error) {
		if challenged {
			return "", fmt.Errorf("%w: the authenticator challenged twice", sessionproto.ErrAuthFailed)
		}
		challenged = true
		return s.challenge(&trid, nonce)
	}
	id, err := s.auth.Authenticate(s.srv.ctx, req)
	if err != nil {
		var pe *sessionproto.Fault
		if errors.As(err, &pe) {
			return pe
		}
		if challenged && !errors.Is(err, sessionproto.ErrAuthFailed) {
			return &sessionproto.Fault{} // the connection failed during the challenge
		}
		s.srv.stats.failed.Add(1)
		if fromNet {
			s.srv.fails.failed(src)
		}
		// One log line per limitLogEvery, not per guess.
		s.srv.limits.Hit("session: authentication failed", "remote", s.conn.RemoteAddr().String(), "user", user, "term", term, "err", err)
		return &sessionproto.Fault{Code: sessionproto.CodeAuthFailed, TrID: trid, Text: "authentication failed", Fatal: true, Quiet: true}
	}

	canon := principal.CanonicalUser(user)
	s.mu.Lock()
	s.user = canon
	if term != sessionproto.NoTerminal {
		s.term = term
	}
	s.signingIn = true
	s.mu.Unlock()
	s.loadBlocks() // the user's lasting block list, before any message arrives (commands_user.go)
	if term != sessionproto.NoTerminal {
		ln, err := s.srv.sb.SignIn(user, term, state, s)
		if err != nil {
			if errors.Is(err, switchboard.ErrClosed) {
				return &sessionproto.Fault{Code: sessionproto.CodeServerBusy, TrID: trid, Text: "server shutting down", Fatal: true}
			}
			if errors.Is(err, switchboard.ErrConsoleOnly) {
				s.log.Info("sign-in at the console refused", "user", canon, "term", term)
				return &sessionproto.Fault{Code: sessionproto.CodeTermReserved, TrID: trid, Text: switchboard.ErrConsoleOnly.Error(), Fatal: true}
			}
			s.log.Error("sign in failed", "user", user, "term", term, "err", err)
			return &sessionproto.Fault{Code: sessionproto.CodeInternal, TrID: trid, Text: "sign in failed", Fatal: true}
		}
		s.line = ln
	}
	s.ident = id
	s.signedIn = true
	s.srv.signedIn(s)
	s.attachRings()
	level := slog.LevelInfo
	if term == sessionproto.NoTerminal {
		level = slog.LevelDebug // a lookup (msp who), not a user arriving
	}
	s.log.Log(context.Background(), level, "session signed in", "user", canon, "term", term, "state", state.String(), "method", id.Method, "verified", id.Verified)
	ok := sessionproto.Line("USR", trid, true, "OK", sessionproto.EncodeToken(canon), sessionproto.EncodeToken(term), state.Code(), s.srv.cfg.Node, id.Method)
	return s.replied(s.send(func() []byte {
		// The reply and any message that arrived during SignIn go out as
		// one frame, reply first.
		s.signingIn = false
		for _, h := range s.held {
			ok = append(ok, h...)
		}
		s.held = nil
		return ok
	}))
}

// challenge sends CHL and reads the client's QRY; trid becomes the QRY's
// TrID, which the USR reply then echoes.
func (s *session) challenge(trid *uint32, nonce string) (string, error) {
	if err := s.sendFrame(sessionproto.Line("CHL", *trid, true, nonce)); err != nil {
		return "", &sessionproto.Fault{}
	}
	if !s.armRead() {
		return "", &sessionproto.Fault{}
	}
	f, err := s.fr.Read()
	if err != nil {
		return "", err
	}
	if f.Cmd != "QRY" {
		return "", &sessionproto.Fault{Code: sessionproto.CodeUnexpected, TrID: f.TrID, Text: "expected QRY after CHL", Fatal: true}
	}
	*trid = f.TrID
	if len(f.Args) != 1 {
		return "", &sessionproto.Fault{Code: sessionproto.CodeSyntax, TrID: f.TrID, Text: "QRY takes 1 argument", Fatal: true}
	}
	return f.Args[0], nil
}

// noTerminal refuses commands that need a terminal.
func (s *session) noTerminal(f *sessionproto.Frame) *sessionproto.Fault {
	if s.line == nil {
		return sessionproto.Errf(sessionproto.CodeNotAllowed, f.TrID, "%s needs a session with a terminal", f.Cmd)
	}
	return nil
}

// cmdCHG: CHG TrID state -> CHG TrID code.
func (s *session) cmdCHG(f *sessionproto.Frame) *sessionproto.Fault {
	if pe := firstOf(wantArgs(f, 1, 1), s.noTerminal(f)); pe != nil {
		return pe
	}
	st, err := principal.ParseState(f.Args[0])
	if err != nil {
		return sessionproto.Errf(sessionproto.CodeBadParam, f.TrID, "%v", err)
	}
	if err := s.line.SetState(st); err != nil {
		return &sessionproto.Fault{} // signed out under us: kicked
	}
	s.line.Touch()
	return s.replied(s.sendFrame(sessionproto.Line("CHG", f.TrID, true, st.Code())))
}

func firstOf(pes ...*sessionproto.Fault) *sessionproto.Fault {
	for _, pe := range pes {
		if pe != nil {
			return pe
		}
	}
	return nil
}

// listArgs parses "FL|BL name" for ADD and REM.
func (s *session) listArgs(f *sessionproto.Frame) (list, name string, pe *sessionproto.Fault) {
	if pe := wantArgs(f, 2, 2); pe != nil {
		return "", "", pe
	}
	list = f.Args[0]
	if list != "FL" && list != "BL" {
		return "", "", sessionproto.Errf(sessionproto.CodeBadParam, f.TrID, "unknown list %q (want FL or BL)", sessionproto.Truncate(list, 16))
	}
	if name, pe = arg(f, 1); pe != nil {
		return "", "", pe
	}
	if list == "BL" {
		if pe := s.noTerminal(f); pe != nil {
			return "", "", pe
		}
		user, node := switchboard.SplitAddress(name)
		if err := principal.ValidUser(user); err != nil {
			return "", "", sessionproto.Errf(sessionproto.CodeBadUser, f.TrID, "%v", err)
		}
		if node != "" {
			if err := principal.ValidNode(node); err != nil {
				return "", "", sessionproto.Errf(sessionproto.CodeBadUser, f.TrID, "%v", err)
			}
		}
	} else if err := principal.ValidUser(name); err != nil {
		return "", "", sessionproto.Errf(sessionproto.CodeBadUser, f.TrID, "%v", err)
	}
	return list, principal.CanonicalUser(name), nil
}

// cmdADD: ADD TrID FL user -> ILN lines, ADD TrID FL user; ADD TrID BL name.
func (s *session) cmdADD(f *sessionproto.Frame) *sessionproto.Fault {
	list, name, pe := s.listArgs(f)
	if pe != nil {
		return pe
	}
	reply := sessionproto.Line("ADD", f.TrID, true, list, sessionproto.EncodeToken(name))
	if list == "BL" {
		var perr *sessionproto.Fault
		err := s.send(func() []byte {
			_, dup := s.bl[name]
			switch {
			case dup:
				perr = sessionproto.Errf(sessionproto.CodeInList, f.TrID, "%s is already blocked", name)
			case len(s.bl) >= s.srv.cfg.MaxList:
				perr = sessionproto.Errf(sessionproto.CodeListFull, f.TrID, "block list holds %d names already", len(s.bl))
			default:
				if s.bl == nil {
					s.bl = map[string]struct{}{}
				}
				s.bl[name] = struct{}{}
				return reply
			}
			return nil
		})
		return firstOf(s.replied(err), perr)
	}
	if _, dup := s.fl[name]; dup {
		return sessionproto.Errf(sessionproto.CodeInList, f.TrID, "already watching %s", name)
	}
	if len(s.fl) >= s.srv.cfg.MaxList {
		return sessionproto.Errf(sessionproto.CodeListFull, f.TrID, "watch list holds %d names already", len(s.fl))
	}
	if s.fl == nil {
		s.fl = map[string]struct{}{}
	}
	s.fl[name] = struct{}{}
	s.srv.w.add(name, s)
	trid := f.TrID
	return s.replied(s.send(func() []byte {
		// The snapshot is taken under mu: any later change reaches the
		// dispatcher as an event, which pushWatch applies after this.
		if s.known == nil {
			s.known = map[string]map[termKey]watched{}
		}
		s.known[name] = map[termKey]watched{}
		b := s.diffLocked(name, s.srv.terminalsOf(name), &trid)
		return append(b, reply...)
	}))
}

// cmdREM: REM TrID FL|BL name -> REM TrID FL|BL name.
func (s *session) cmdREM(f *sessionproto.Frame) *sessionproto.Fault {
	list, name, pe := s.listArgs(f)
	if pe != nil {
		return pe
	}
	reply := sessionproto.Line("REM", f.TrID, true, list, sessionproto.EncodeToken(name))
	if list == "FL" {
		if _, ok := s.fl[name]; !ok {
			return sessionproto.Errf(sessionproto.CodeNotInList, f.TrID, "not watching %s", name)
		}
		delete(s.fl, name)
		s.srv.w.remove(name, s)
	}
	var perr *sessionproto.Fault
	err := s.send(func() []byte {
		if list == "FL" {
			delete(s.known, name)
			return reply
		}
		if _, ok := s.bl[name]; !ok {
			perr = sessionproto.Errf(sessionproto.CodeNotInList, f.TrID, "%s is not blocked", name)
			return nil
		}
		delete(s.bl, name)
		return reply
	})
	return firstOf(s.replied(err), perr)
}

// cmdLST: LST TrID FL|BL -> LST TrID FL|BL len, one name per line.
func (s *session) cmdLST(f *sessionproto.Frame) *sessionproto.Fault {
	if pe := wantArgs(f, 1, 1); pe != nil {
		return pe
	}
	list := f.Args[0]
	var names []string
	switch list {
	case "FL":
		for n := range s.fl {
			names = append(names, n)
		}
	case "BL":
		s.mu.Lock()
		for n := range s.bl {
			names = append(names, n)
		}
		s.mu.Unlock()
	default:
		return sessionproto.Errf(sessionproto.CodeBadParam, f.TrID, "unknown list %q (want FL or BL)", sessionproto.Truncate(list, 16))
	}
	slices.Sort(names)
	return s.replied(s.sendFrame(sessionproto.WithPayload("LST", f.TrID, true, sessionproto.AppendNames(nil, names), list)))
}

// visibleTo reports whether viewer may see e: hidden terminals appear
// offline to everyone but their own user.
func visibleTo(e *principal.Entry, viewer string) bool {
	return e.State != principal.Hidden || e.User == viewer
}

// cmdWHO: WHO TrID [name[@node]] -> WHO TrID count len, one terminal per
// line. count is the number of matches; the payload may hold fewer when it
// would exceed sessionproto.MaxServerPayload.
func (s *session) cmdWHO(f *sessionproto.Frame) *sessionproto.Fault {
	if pe := wantArgs(f, 0, 1); pe != nil {
		return pe
	}
	var entries []principal.Entry
	if len(f.Args) == 1 {
		name, pe := arg(f, 0)
		if pe != nil {
			return pe
		}
		if strings.HasPrefix(name, "#") && s.srv.cfg.Conversations != nil {
			return s.whoConversation(f, name)
		}
		user, node := switchboard.SplitAddress(name)
		if err := principal.ValidUser(user); err != nil {
			return sessionproto.Errf(sessionproto.CodeBadUser, f.TrID, "%v", err)
		}
		// As routing resolves it: her own terminals win over others'
		// aliases of her name, and others' hidden ones are left out.
		entries = s.srv.sb.Lookup(s.srv.ctx, user, s.user)
		if node != "" {
			entries = slices.DeleteFunc(entries, func(e principal.Entry) bool { return e.Node != node })
		}
	} else {
		entries = s.srv.dir.All()
	}
	var p []byte
	n := 0
	for i := range entries {
		e := &entries[i]
		if !visibleTo(e, s.user) {
			continue
		}
		n++
		if l := sessionproto.AppendWhoLine(nil, e); len(p)+len(l) <= sessionproto.MaxServerPayload {
			p = append(p, l...)
		}
	}
	if n == 0 && len(f.Args) == 1 {
		// Like finger: an absent user the cluster knows is shown offline
		// with where and when she was last seen.
		if e, ok := s.lastSeen(f.Args[0]); ok {
			n++
			p = sessionproto.AppendWhoLine(p, &e)
		}
	}
	return s.replied(s.sendFrame(sessionproto.WithPayload("WHO", f.TrID, true, p, strconv.Itoa(n))))
}

// lastSeenTimeout bounds the known-users lookup of one WHO.
const lastSeenTimeout = 2 * time.Second

// lastSeen asks the known-users store about an absent user. Whatever the
// record is, it is shown as offline (FLN) at its node, terminal and time:
// a record of a sign-in with no visible terminal is a hidden user (or one
// whose presence has not reached this node yet), and answering anything
// but what an offline user's record gets would expose her (issue 12:
// "hidden users are indistinguishable from offline ones in every reply").
func (s *session) lastSeen(arg string) (principal.Entry, bool) {
	name, err := sessionproto.DecodeToken(arg)
	if err != nil {
		return principal.Entry{}, false
	}
	user, node := switchboard.SplitAddress(name)
	ctx, cancel := context.WithTimeout(context.Background(), lastSeenTimeout)
	defer cancel()
	seen, err := s.srv.sb.LastSeen(ctx, user)
	// A record without a time is of a user only ever seen hidden: she
	// has never been seen, as far as anyone may tell.
	if err != nil || seen.Time.IsZero() || (node != "" && seen.Node != node) {
		return principal.Entry{}, false
	}
	return principal.Entry{User: seen.User, Node: seen.Node, Term: seen.Term, State: principal.Offline, LastActive: seen.Time}, true
}

// cmdSND: SND TrID recipient recip-term len, text -> ACK|NAK TrID summary.
func (s *session) cmdSND(f *sessionproto.Frame) *sessionproto.Fault {
	if pe := wantArgs(f, 2, 2); pe != nil {
		return pe
	}
	rcpt, pe := arg(f, 0)
	if pe != nil {
		return pe
	}
	rterm, pe := arg(f, 1)
	if pe != nil {
		return pe
	}
	var raw [8]byte
	rand.Read(raw[:])
	m := msp.Message{
		Version:   msp.Version2,
		Recipient: rcpt, RecipTerm: rterm,
		Text:   msp.NormalizeNewlines(string(f.Payload)),
		Sender: s.user, SenderTerm: s.term,
		Cookie: hex.EncodeToString(raw[:]),
	}
	if err := m.Validate(); err != nil {
		return sessionproto.Errf(sessionproto.CodeBadText, f.TrID, "%v", err)
	}
	if s.line != nil {
		s.line.Touch()
	}
	const originAddr = "session"
	d := &switchboard.Delivery{
		// No ID: Send keys it from the parts and originAddr.
		Recipient: m.Recipient, RecipTerm: m.RecipTerm,
		Sender: m.Sender, SenderTerm: m.SenderTerm,
		Text: m.Text, Cookie: m.Cookie,
		Origin: switchboard.Origin{Node: s.srv.cfg.Node, Addr: originAddr, Transport: "session",
			Sender: s.senderIdentity(m.Sender, originAddr)},
		Time: time.Now(),
	}
	ctx, cancel := context.WithTimeout(s.srv.ctx, s.srv.cfg.SendTimeout)
	s.setSending(true)
	o := s.srv.sb.Send(ctx, d)
	s.setSending(false)
	cancel()
	cmd := "NAK"
	if o.Delivered() {
		cmd = "ACK"
	}
	return s.replied(s.sendFrame(sessionproto.TextLine(cmd, 0, f.TrID, o.Summary())))
}

// cmdNAM: NAM TrID ADD|DEL name -> NAM TrID ADD|DEL name; NAM TrID LST ->
// NAM TrID LST len, one name per line.
func (s *session) cmdNAM(f *sessionproto.Frame) *sessionproto.Fault {
	if pe := firstOf(wantArgs(f, 1, 2), s.noTerminal(f)); pe != nil {
		return pe
	}
	op := f.Args[0]
	if op == "LST" {
		if pe := wantArgs(f, 1, 1); pe != nil {
			return pe
		}
		return s.replied(s.sendFrame(sessionproto.WithPayload("NAM", f.TrID, true, sessionproto.AppendNames(nil, s.aliases), "LST")))
	}
	if op != "ADD" && op != "DEL" {
		return sessionproto.Errf(sessionproto.CodeBadParam, f.TrID, "unknown NAM operation %q (want ADD, DEL or LST)", sessionproto.Truncate(op, 16))
	}
	name, pe := aliasArg(f)
	if pe != nil {
		return pe
	}
	i := slices.Index(s.aliases, name)
	next := slices.Clone(s.aliases)
	switch {
	case op == "ADD" && (i >= 0 || name == s.user):
		return sessionproto.Errf(sessionproto.CodeInList, f.TrID, "%s is already a name of this session", name)
	case op == "ADD" && len(s.aliases) >= s.srv.cfg.MaxNames:
		return sessionproto.Errf(sessionproto.CodeListFull, f.TrID, "this session has %d names already", len(s.aliases))
	case op == "ADD":
		next = append(next, name)
	case i < 0:
		return sessionproto.Errf(sessionproto.CodeNotInList, f.TrID, "%s is not a name of this session", name)
	default:
		next = slices.Delete(next, i, i+1)
	}
	if err := s.line.SetAliases(next); err != nil {
		if errors.Is(err, switchboard.ErrSignedOut) {
			return &sessionproto.Fault{}
		}
		return s.aliasFault(f, name, err)
	}
	s.aliases = next
	return s.replied(s.sendFrame(sessionproto.Line("NAM", f.TrID, true, op, sessionproto.EncodeToken(name))))
}

// aliasArg is the name argument of NAM or ALS ADD|DEL, checked and
// canonical.
func aliasArg(f *sessionproto.Frame) (string, *sessionproto.Fault) {
	if pe := wantArgs(f, 2, 2); pe != nil {
		return "", pe
	}
	name, pe := arg(f, 1)
	if pe != nil {
		return "", pe
	}
	if err := principal.ValidUser(name); err != nil {
		return "", sessionproto.Errf(sessionproto.CodeBadUser, f.TrID, "%v", err)
	}
	return principal.CanonicalUser(name), nil
}

// aliasFault answers a refused Line.SetAliases (other than ErrSignedOut,
// which NAM and ALS treat differently) with its numeric error.
func (s *session) aliasFault(f *sessionproto.Frame, name string, err error) *sessionproto.Fault {
	switch {
	case errors.Is(err, switchboard.ErrNameTaken):
		return sessionproto.Errf(sessionproto.CodeNameTaken, f.TrID, "%v", err)
	case errors.Is(err, switchboard.ErrNameReserved):
		return sessionproto.Errf(sessionproto.CodeNameReserved, f.TrID, "%v", err)
	case errors.Is(err, switchboard.ErrNameUnchecked):
		s.log.Warn("alias not checked", "user", s.user, "name", name, "err", err)
		return sessionproto.Errf(sessionproto.CodeNameUnchecked, f.TrID, "%s: cannot check the name now; try again", name)
	}
	return sessionproto.Errf(sessionproto.CodeInternal, f.TrID, "%v", err)
}

// senderIdentity is the identity of a message this session sends, made
// here, once: the signed-in user, established by the session's
// authentication (peer credentials, a secret, or trust, which proves
// nothing). An Authenticator that says it did not verify the user, or
// names a scheme this package does not know, proves nothing either.
func (s *session) senderIdentity(claimed, source string) identity.Identity {
	m, _ := identity.ParseMethod(s.ident.Method)
	if !s.ident.Verified && m.Proves() {
		m = identity.None
	}
	id := identity.Identity{Claimed: claimed, Method: m, Node: s.srv.cfg.Node, Source: source}
	if m.Proves() {
		id.User = s.user // trust believed the name; it proved nobody
	}
	return id
}
