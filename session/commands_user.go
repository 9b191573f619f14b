package session

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os/user"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/msprelay/msprelay/msp"
	"github.com/msprelay/msprelay/principal"
	"github.com/msprelay/msprelay/sessionproto"
	"github.com/msprelay/msprelay/sessionsock"
	"github.com/msprelay/msprelay/switchboard"
)

// Commands that act for the user rather than for one session (issue 20,
// item 4): WAL broadcasts, STA changes the state of all her sessions on
// this node, BLK keeps her block list across sign-ins. Each needs a
// verified identity; WAL needs the local socket's peer credentials of
// root or of a member of the operator group.

// Broadcast limits per user: a burst of wallBurst, then one per wallEvery.
const (
	wallEvery = 10 * time.Second
	wallBurst = 3
	// maxWallers bounds the rate limiter table; only root and the
	// operator group may broadcast, so it never fills in practice, and
	// when it does the oldest entries are dropped, never kept unbounded.
	maxWallers = 256
	// wallTimeout bounds one broadcast across the cluster.
	wallTimeout = 15 * time.Second
	// blocksLoadTimeout bounds loading the block list at sign-in: a store
	// that does not answer must not hold every sign-in up for long.
	blocksLoadTimeout = 2 * time.Second
)

// BlockStore keeps each user's block list across sign-ins and nodes. It
// must be safe for concurrent use.
type BlockStore interface {
	// Blocks returns user's block list (canonical names), empty when
	// she has none.
	Blocks(ctx context.Context, user string) ([]string, error)
	// SetBlocks replaces user's block list.
	SetBlocks(ctx context.Context, user string, names []string) error
}

// userCmds is the server's state for the user commands. Its zero value is
// ready. mu guards walls.
type userCmds struct {
	mu    sync.Mutex
	walls map[string]*rate.Limiter // user -> her broadcast budget
}

// allowWall takes one broadcast from user's budget.
func (u *userCmds) allowWall(user string) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.walls == nil {
		u.walls = map[string]*rate.Limiter{}
	}
	l, ok := u.walls[user]
	if !ok {
		if len(u.walls) >= maxWallers {
			clear(u.walls)
		}
		l = rate.NewLimiter(rate.Every(wallEvery), wallBurst)
		u.walls[user] = l
	}
	return l.Allow()
}

// userCommand returns the handler of a user command, or nil.
func (s *session) userCommand(cmd string) func(*sessionproto.Frame) *sessionproto.Fault {
	switch cmd {
	case "WAL":
		return s.cmdWAL
	case "STA":
		return s.cmdSTA
	case "BLK":
		return s.cmdBLK
	case "ALS":
		return s.cmdALS
	}
	return nil
}

// mayWall decides whether the local user with uid may broadcast: root, or
// a member (primary or supplementary) of group. groupsOf lists a uid's
// group names; nil means os/user.
func mayWall(uid uint32, group string, groupsOf func(uint32) ([]string, error)) (bool, error) {
	if uid == 0 {
		return true, nil
	}
	if groupsOf == nil {
		groupsOf = osGroups
	}
	gs, err := groupsOf(uid)
	if err != nil {
		return false, err
	}
	return slices.Contains(gs, group), nil
}

// osGroups lists uid's group names from the system's databases.
func osGroups(uid uint32) ([]string, error) {
	u, err := user.LookupId(strconv.FormatUint(uint64(uid), 10))
	if err != nil {
		return nil, err
	}
	ids, err := u.GroupIds()
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(ids))
	for _, id := range ids {
		if g, err := user.LookupGroupId(id); err == nil {
			out = append(out, g.Name)
		}
	}
	return out, nil
}

// cmdWAL: WAL TrID [node] len, payload -> WAL TrID terminals nodes.
// The text reaches every terminal in the cluster (or of node) headed
// "Broadcast from user@thisnode", sent as user with her verified
// identity.
func (s *session) cmdWAL(f *sessionproto.Frame) *sessionproto.Fault {
	if pe := wantArgs(f, 0, 1); pe != nil {
		return pe
	}
	if s.kind != kindUnix || s.ident.Method != "peercred" {
		return sessionproto.Errf(sessionproto.CodeNotOperator, f.TrID, "broadcasting needs the local session socket")
	}
	uid, err := sessionsock.PeerUID(s.conn)
	if err != nil {
		return sessionproto.Errf(sessionproto.CodeNotOperator, f.TrID, "cannot tell who you are: %v", err)
	}
	group := s.srv.cfg.AdminGroup
	if group == "" {
		group = sessionproto.DefaultAdminGroup
	}
	ok, err := mayWall(uid, group, s.srv.cfg.GroupsOf)
	if err != nil {
		s.log.Warn("wall: group lookup failed", "uid", uid, "err", err)
	}
	if !ok {
		return sessionproto.Errf(sessionproto.CodeNotOperator, f.TrID, "only root and members of group %s may broadcast", group)
	}
	node := ""
	if len(f.Args) == 1 {
		n, pe := arg(f, 0)
		if pe != nil {
			return pe
		}
		if err := principal.ValidNode(n); err != nil {
			return sessionproto.Errf(sessionproto.CodeBadParam, f.TrID, "%v", err)
		}
		node = n
	}
	text := msp.NormalizeNewlines(string(f.Payload))
	if strings.TrimSpace(text) == "" {
		return sessionproto.Errf(sessionproto.CodeBadText, f.TrID, "empty broadcast")
	}
	text = "Broadcast from " + s.user + "@" + s.srv.cfg.Node + ":\r\n" + text
	m := msp.Message{Version: msp.Version2, Recipient: "", Text: text, Sender: s.user, Cookie: "wall"}
	if err := m.Validate(); err != nil {
		return sessionproto.Errf(sessionproto.CodeBadText, f.TrID, "%v", err)
	}
	if !s.srv.user.allowWall(s.user) {
		return sessionproto.Errf(sessionproto.CodeRateLimited, f.TrID, "at most %d broadcasts at once and one every %s; try again later", wallBurst, wallEvery)
	}
	var raw [8]byte
	rand.Read(raw[:])
	d := &switchboard.Delivery{
		ID:     "wall-" + hex.EncodeToString(raw[:]),
		Sender: s.user, Text: text,
		Origin: switchboard.Origin{Node: s.srv.cfg.Node, Addr: "session", Transport: "session", Sender: s.senderIdentity(s.user, "session")},
		Time:   time.Now(),
	}
	ctx, cancel := context.WithTimeout(s.srv.ctx, wallTimeout)
	s.setSending(true)
	r := s.srv.sb.Broadcast(ctx, d, node)
	s.setSending(false)
	cancel()
	s.log.Info("broadcast", "user", s.user, "to_node", node, "terminals", r.Terminals, "nodes", r.Nodes, "refused", r.Refused)
	return s.replied(s.sendFrame(sessionproto.Line("WAL", f.TrID, true, strconv.Itoa(r.Terminals), strconv.Itoa(r.Nodes))))
}

// cmdSTA: STA TrID state -> STA TrID state n: every session line of the
// user on this node takes state (n of them). mesg n is STA BSY, mesg y
// STA NLN. ttys keep the state their device's mode gives them.
func (s *session) cmdSTA(f *sessionproto.Frame) *sessionproto.Fault {
	if pe := wantArgs(f, 1, 1); pe != nil {
		return pe
	}
	if !s.ident.Verified {
		return sessionproto.Errf(sessionproto.CodeUnverified, f.TrID, "changing all your terminals needs a verified sign-in")
	}
	st, err := principal.ParseState(f.Args[0])
	if err != nil || st == principal.Offline {
		return sessionproto.Errf(sessionproto.CodeBadParam, f.TrID, "state %q: want NLN, BSY, AWY, IDL or HDN", sessionproto.Truncate(f.Args[0], 16))
	}
	n := 0
	for _, l := range s.srv.sb.UserLines(s.user) {
		if l.Kind() != principal.KindSession {
			continue
		}
		if l.SetState(st) == nil {
			n++
		}
	}
	return s.replied(s.sendFrame(sessionproto.Line("STA", f.TrID, true, st.Code(), strconv.Itoa(n))))
}

// cmdBLK: BLK TrID ADD|DEL name -> BLK TrID ADD|DEL name; BLK TrID LST ->
// BLK TrID LST name... . The change goes
// to the block store (kept across sign-ins, on every node) and to every
// session of the user on this node at once; other nodes' sessions take it
// at their next sign-in. Without a store it applies to this node's
// sessions only.
func (s *session) cmdBLK(f *sessionproto.Frame) *sessionproto.Fault {
	if pe := wantArgs(f, 1, 2); pe != nil {
		return pe
	}
	op := f.Args[0]
	if op == "LST" {
		if pe := wantArgs(f, 1, 1); pe != nil {
			return pe
		}
		return s.blockList(f)
	}
	if op != "ADD" && op != "DEL" {
		return sessionproto.Errf(sessionproto.CodeBadParam, f.TrID, "BLK %q: want ADD, DEL or LST", sessionproto.Truncate(op, 8))
	}
	if pe := wantArgs(f, 2, 2); pe != nil {
		return pe
	}
	name, pe := arg(f, 1)
	if pe != nil {
		return pe
	}
	u, node := switchboard.SplitAddress(name)
	if err := principal.ValidUser(u); err != nil {
		return sessionproto.Errf(sessionproto.CodeBadUser, f.TrID, "%v", err)
	}
	if node != "" {
		if err := principal.ValidNode(node); err != nil {
			return sessionproto.Errf(sessionproto.CodeBadUser, f.TrID, "%v", err)
		}
	}
	name = principal.CanonicalUser(name)
	if !s.ident.Verified {
		return sessionproto.Errf(sessionproto.CodeUnverified, f.TrID, "a lasting block list needs a verified sign-in")
	}
	if st := s.srv.cfg.Blocks; st != nil {
		cur, pe := s.storedBlocks(st, f)
		if pe != nil {
			return pe
		}
		has := slices.Contains(cur, name)
		switch {
		case op == "ADD" && has:
			return sessionproto.Errf(sessionproto.CodeInList, f.TrID, "%s is already blocked", name)
		case op == "ADD" && len(cur) >= s.srv.cfg.MaxList:
			return sessionproto.Errf(sessionproto.CodeListFull, f.TrID, "block list holds %d names already", len(cur))
		case op == "DEL" && !has:
			return sessionproto.Errf(sessionproto.CodeNotInList, f.TrID, "%s is not blocked", name)
		case op == "ADD":
			cur = append(cur, name)
		default:
			cur = slices.DeleteFunc(cur, func(x string) bool { return x == name })
		}
		ctx, cancel := context.WithTimeout(s.srv.ctx, convOpTimeout)
		defer cancel()
		if err := st.SetBlocks(ctx, s.user, cur); err != nil {
			s.log.Warn("block store", "user", s.user, "err", err)
			return sessionproto.Errf(sessionproto.CodeStoreFailed, f.TrID, "the block store did not answer; try again")
		}
	}
	for _, o := range s.srv.userSessions(s.user) {
		o.mu.Lock()
		if op == "ADD" {
			if len(o.bl) < s.srv.cfg.MaxList {
				if o.bl == nil {
					o.bl = map[string]struct{}{}
				}
				o.bl[name] = struct{}{}
			}
		} else {
			delete(o.bl, name)
		}
		o.mu.Unlock()
	}
	return s.replied(s.sendFrame(sessionproto.Line("BLK", f.TrID, true, op, sessionproto.EncodeToken(name))))
}

// storedBlocks reads the user's lasting block list from st, answering a
// store that does not reply with 293.
func (s *session) storedBlocks(st BlockStore, f *sessionproto.Frame) ([]string, *sessionproto.Fault) {
	ctx, cancel := context.WithTimeout(s.srv.ctx, convOpTimeout)
	defer cancel()
	cur, err := st.Blocks(ctx, s.user)
	if err != nil {
		s.log.Warn("block store", "user", s.user, "err", err)
		return nil, sessionproto.Errf(sessionproto.CodeStoreFailed, f.TrID, "the block store did not answer; try again")
	}
	return cur, nil
}

// blockList answers BLK LST: BLK TrID LST name... , the stored list (or,
// without a store, this session's).
func (s *session) blockList(f *sessionproto.Frame) *sessionproto.Fault {
	var names []string
	if st := s.srv.cfg.Blocks; st != nil {
		cur, pe := s.storedBlocks(st, f)
		if pe != nil {
			return pe
		}
		names = cur
	} else {
		s.mu.Lock()
		for n := range s.bl {
			names = append(names, n)
		}
		s.mu.Unlock()
	}
	slices.Sort(names)
	args := []string{"LST"}
	room := sessionproto.MaxServerLine - 32
	for _, n := range names {
		t := sessionproto.EncodeToken(n)
		if room < len(t)+1 {
			break // a list longer than a line: the first ones
		}
		room -= len(t) + 1
		args = append(args, t)
	}
	return s.replied(s.sendFrame(sessionproto.Line("BLK", f.TrID, true, args...)))
}

// userSessions lists the signed-in sessions of user on this server.
func (srv *Server) userSessions(user string) []*session {
	srv.mu.Lock()
	all := make([]*session, 0, len(srv.sessions))
	for o := range srv.sessions {
		all = append(all, o)
	}
	srv.mu.Unlock()
	var out []*session
	for _, o := range all {
		o.mu.Lock()
		if o.user == user { // user is set at sign-in
			out = append(out, o)
		}
		o.mu.Unlock()
	}
	return out
}

// loadBlocks fills a newly signed-in session's block list from the store,
// so that a block made anywhere in the cluster holds at every sign-in. A
// store that does not answer is logged; the session starts with what it
// has.
func (s *session) loadBlocks() {
	st := s.srv.cfg.Blocks
	if st == nil {
		return
	}
	ctx, cancel := context.WithTimeout(s.srv.ctx, blocksLoadTimeout)
	defer cancel()
	names, err := st.Blocks(ctx, s.user)
	if err != nil {
		s.log.Warn("block list not loaded", "user", s.user, "err", err)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, n := range names {
		if len(s.bl) >= s.srv.cfg.MaxList {
			break
		}
		if principal.ValidUser(strings.SplitN(n, "@", 2)[0]) == nil {
			if s.bl == nil {
				s.bl = map[string]struct{}{} // made on first use (idle sessions cost little)
			}
			s.bl[principal.CanonicalUser(n)] = struct{}{}
		}
	}
}

// cmdALS: ALS TrID ADD|DEL name -> ALS TrID ADD|DEL name n; ALS TrID LST ->
// ALS TrID LST name... . An alias belongs to terminals (it is part of
// their presence entries and ends with them), so ADD and DEL change every
// session line of the user on this node, n of them; LST lists the aliases
// those lines hold.
func (s *session) cmdALS(f *sessionproto.Frame) *sessionproto.Fault {
	if pe := wantArgs(f, 1, 2); pe != nil {
		return pe
	}
	if !s.ident.Verified {
		return sessionproto.Errf(sessionproto.CodeUnverified, f.TrID, "changing all your terminals needs a verified sign-in")
	}
	var lines []*switchboard.Line
	for _, l := range s.srv.sb.UserLines(s.user) {
		if l.Kind() == principal.KindSession {
			lines = append(lines, l)
		}
	}
	op := f.Args[0]
	if op == "LST" {
		if pe := wantArgs(f, 1, 1); pe != nil {
			return pe
		}
		var names []string
		room := sessionproto.MaxServerLine - 32
		for _, l := range lines {
			for _, a := range l.Entry().Aliases {
				if !slices.Contains(names, a) && room > len(sessionproto.EncodeToken(a))+1 {
					names = append(names, a)
					room -= len(sessionproto.EncodeToken(a)) + 1
				}
			}
		}
		slices.Sort(names)
		args := []string{"LST"}
		for _, n := range names {
			args = append(args, sessionproto.EncodeToken(n))
		}
		return s.replied(s.sendFrame(sessionproto.Line("ALS", f.TrID, true, args...)))
	}
	if op != "ADD" && op != "DEL" {
		return sessionproto.Errf(sessionproto.CodeBadParam, f.TrID, "ALS %q: want ADD, DEL or LST", sessionproto.Truncate(op, 8))
	}
	name, pe := aliasArg(f)
	if pe != nil {
		return pe
	}
	if name == s.user {
		return sessionproto.Errf(sessionproto.CodeInList, f.TrID, "%s is your own name", name)
	}
	n := 0
	for _, l := range lines {
		cur := l.Entry().Aliases
		i := slices.Index(cur, name)
		next := slices.Clone(cur)
		switch {
		case op == "ADD" && i >= 0, op == "DEL" && i < 0:
			continue
		case op == "ADD" && len(cur) >= s.srv.cfg.MaxNames:
			return sessionproto.Errf(sessionproto.CodeListFull, f.TrID, "a terminal of yours has %d names already", len(cur))
		case op == "ADD":
			next = append(next, name)
		default:
			next = slices.Delete(next, i, i+1)
		}
		if err := l.SetAliases(next); err != nil {
			if errors.Is(err, switchboard.ErrSignedOut) {
				continue
			}
			return s.aliasFault(f, name, err)
		}
		n++
	}
	return s.replied(s.sendFrame(sessionproto.Line("ALS", f.TrID, true, op, sessionproto.EncodeToken(name), strconv.Itoa(n))))
}
