package session

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os/user"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/msprelay/msprelay/msp"
	"github.com/msprelay/msprelay/presence"
	"github.com/msprelay/msprelay/switchboard"
)

// Commands that act for the user rather than for one session (issue 20,
// item 4): WAL broadcasts, STA changes the state of all her sessions on
// this node, BLK keeps her block list across sign-ins. Each needs a
// verified identity; WAL needs the local socket's peer credentials of
// root or of a member of the operator group.

// Numeric errors of the user commands.
const (
	CodeNotOperator = 290 // WAL: not root or a member of the operator group, or not on the local socket
	CodeRateLimited = 291 // WAL: too many broadcasts from this user; try later
	CodeUnverified  = 292 // STA, BLK: the session's identity is a claim, not verified
	CodeStoreFailed = 293 // BLK: the block store did not answer; try again
)

// DefaultAdminGroup is the operator group whose members may broadcast (WAL)
// besides root; the Debian package creates it.
const DefaultAdminGroup = "msprelay-admin"

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
func (s *session) userCommand(cmd string) func(*frame) *protoError {
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
func (s *session) cmdWAL(f *frame) *protoError {
	if pe := wantArgs(f, 0, 1); pe != nil {
		return pe
	}
	if s.kind != kindUnix || s.ident.Method != "peercred" {
		return errf(CodeNotOperator, f.trid, "broadcasting needs the local session socket")
	}
	uid, err := peerUID(s.conn)
	if err != nil {
		return errf(CodeNotOperator, f.trid, "cannot tell who you are: %v", err)
	}
	group := s.srv.cfg.AdminGroup
	if group == "" {
		group = DefaultAdminGroup
	}
	ok, err := mayWall(uid, group, s.srv.cfg.GroupsOf)
	if err != nil {
		s.log.Warn("wall: group lookup failed", "uid", uid, "err", err)
	}
	if !ok {
		return errf(CodeNotOperator, f.trid, "only root and members of group %s may broadcast", group)
	}
	node := ""
	if len(f.args) == 1 {
		n, pe := arg(f, 0)
		if pe != nil {
			return pe
		}
		if err := presence.ValidNode(n); err != nil {
			return errf(CodeBadParam, f.trid, "%v", err)
		}
		node = n
	}
	text := msp.NormalizeNewlines(string(f.payload))
	if strings.TrimSpace(text) == "" {
		return errf(CodeBadText, f.trid, "empty broadcast")
	}
	text = "Broadcast from " + s.user + "@" + s.srv.cfg.Node + ":\r\n" + text
	m := msp.Message{Version: msp.Version2, Recipient: "", Text: text, Sender: s.user, Cookie: "wall"}
	if err := m.Validate(); err != nil {
		return errf(CodeBadText, f.trid, "%v", err)
	}
	if !s.srv.user.allowWall(s.user) {
		return errf(CodeRateLimited, f.trid, "at most %d broadcasts at once and one every %s; try again later", wallBurst, wallEvery)
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
	s.log.Info("broadcast", "user", s.user, "node", node, "terminals", r.Terminals, "nodes", r.Nodes, "refused", r.Refused)
	return s.replied(s.sendFrame(line("WAL", f.trid, true, strconv.Itoa(r.Terminals), strconv.Itoa(r.Nodes))))
}

// cmdSTA: STA TrID state -> STA TrID state n: every session line of the
// user on this node takes state (n of them). mesg n is STA BSY, mesg y
// STA NLN. ttys keep the state their device's mode gives them.
func (s *session) cmdSTA(f *frame) *protoError {
	if pe := wantArgs(f, 1, 1); pe != nil {
		return pe
	}
	if !s.ident.Verified {
		return errf(CodeUnverified, f.trid, "changing all your terminals needs a verified sign-in")
	}
	st, err := presence.ParseState(f.args[0])
	if err != nil || st == presence.Offline {
		return errf(CodeBadParam, f.trid, "state %q: want NLN, BSY, AWY, IDL or HDN", truncate(f.args[0], 16))
	}
	n := 0
	for _, l := range s.srv.sb.UserLines(s.user) {
		if l.Kind() != presence.KindSession {
			continue
		}
		if l.SetState(st) == nil {
			n++
		}
	}
	return s.replied(s.sendFrame(line("STA", f.trid, true, st.Code(), strconv.Itoa(n))))
}

// cmdBLK: BLK TrID ADD|DEL name -> BLK TrID ADD|DEL name; BLK TrID LST ->
// BLK TrID LST name... . The change goes
// to the block store (kept across sign-ins, on every node) and to every
// session of the user on this node at once; other nodes' sessions take it
// at their next sign-in. Without a store it applies to this node's
// sessions only.
func (s *session) cmdBLK(f *frame) *protoError {
	if pe := wantArgs(f, 1, 2); pe != nil {
		return pe
	}
	op := f.args[0]
	if op == "LST" {
		if pe := wantArgs(f, 1, 1); pe != nil {
			return pe
		}
		return s.blockList(f)
	}
	if op != "ADD" && op != "DEL" {
		return errf(CodeBadParam, f.trid, "BLK %q: want ADD, DEL or LST", truncate(op, 8))
	}
	if pe := wantArgs(f, 2, 2); pe != nil {
		return pe
	}
	name, pe := arg(f, 1)
	if pe != nil {
		return pe
	}
	u, node := switchboard.SplitAddress(name)
	if err := presence.ValidUser(u); err != nil {
		return errf(CodeBadUser, f.trid, "%v", err)
	}
	if node != "" {
		if err := presence.ValidNode(node); err != nil {
			return errf(CodeBadUser, f.trid, "%v", err)
		}
	}
	name = presence.CanonicalUser(name)
	if !s.ident.Verified {
		return errf(CodeUnverified, f.trid, "a lasting block list needs a verified sign-in")
	}
	if st := s.srv.cfg.Blocks; st != nil {
		ctx, cancel := context.WithTimeout(s.srv.ctx, convOpTimeout)
		defer cancel()
		cur, err := st.Blocks(ctx, s.user)
		if err != nil {
			s.log.Warn("block store", "user", s.user, "err", err)
			return errf(CodeStoreFailed, f.trid, "the block store did not answer; try again")
		}
		has := slices.Contains(cur, name)
		switch {
		case op == "ADD" && has:
			return errf(CodeInList, f.trid, "%s is already blocked", name)
		case op == "ADD" && len(cur) >= s.srv.cfg.MaxList:
			return errf(CodeListFull, f.trid, "block list holds %d names already", len(cur))
		case op == "DEL" && !has:
			return errf(CodeNotInList, f.trid, "%s is not blocked", name)
		case op == "ADD":
			cur = append(cur, name)
		default:
			cur = slices.DeleteFunc(cur, func(x string) bool { return x == name })
		}
		if err := st.SetBlocks(ctx, s.user, cur); err != nil {
			s.log.Warn("block store", "user", s.user, "err", err)
			return errf(CodeStoreFailed, f.trid, "the block store did not answer; try again")
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
	return s.replied(s.sendFrame(line("BLK", f.trid, true, op, encodeToken(name))))
}

// blockList answers BLK LST: BLK TrID LST name... , the stored list (or,
// without a store, this session's).
func (s *session) blockList(f *frame) *protoError {
	var names []string
	if st := s.srv.cfg.Blocks; st != nil {
		ctx, cancel := context.WithTimeout(s.srv.ctx, convOpTimeout)
		defer cancel()
		cur, err := st.Blocks(ctx, s.user)
		if err != nil {
			s.log.Warn("block store", "user", s.user, "err", err)
			return errf(CodeStoreFailed, f.trid, "the block store did not answer; try again")
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
	room := MaxServerLine - 32
	for _, n := range names {
		t := encodeToken(n)
		if room < len(t)+1 {
			break // a list longer than a line: the first ones
		}
		room -= len(t) + 1
		args = append(args, t)
	}
	return s.replied(s.sendFrame(line("BLK", f.trid, true, args...)))
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
		if presence.ValidUser(strings.SplitN(n, "@", 2)[0]) == nil {
			if s.bl == nil {
				s.bl = map[string]struct{}{} // made on first use (idle sessions cost little)
			}
			s.bl[presence.CanonicalUser(n)] = struct{}{}
		}
	}
}

// Wall broadcasts text to every terminal of the cluster, or of node when
// it is not "", (WAL) and returns how many terminals on how many nodes took
// it.
func (c *Client) Wall(ctx context.Context, node, text string) (terminals, nodes int, err error) {
	var args []string
	if node != "" {
		args = []string{node}
	}
	f, _, err := c.call(ctx, "WAL", []byte(text), args...)
	if err != nil {
		return 0, 0, err
	}
	if f.cmd != "WAL" || len(f.args) != 2 {
		return 0, 0, fmt.Errorf("%w: unexpected WAL reply %s %v", ErrBadPayload, f.cmd, f.args)
	}
	terminals, _ = strconv.Atoi(f.args[0])
	nodes, _ = strconv.Atoi(f.args[1])
	return terminals, nodes, nil
}

// SetUserState sets the state of every session of the signed-in user on
// this node (STA) and returns how many took it.
func (c *Client) SetUserState(ctx context.Context, st presence.State) (int, error) {
	f, _, err := c.expect(ctx, "STA", nil, st.Code())
	if err != nil {
		return 0, err
	}
	if len(f.args) != 2 {
		return 0, fmt.Errorf("%w: STA reply with %d arguments", ErrBadPayload, len(f.args))
	}
	n, _ := strconv.Atoi(f.args[1])
	return n, nil
}

// BlockList returns the user's lasting block list (BLK LST).
func (c *Client) BlockList(ctx context.Context) ([]string, error) {
	f, _, err := c.expect(ctx, "BLK", nil, "LST")
	if err != nil {
		return nil, err
	}
	return lstNames("BLK", f.args)
}

// BlockUser adds (block true) or removes name from the user's lasting block
// list (BLK).
func (c *Client) BlockUser(ctx context.Context, name string, block bool) error {
	op := "DEL"
	if block {
		op = "ADD"
	}
	_, _, err := c.expect(ctx, "BLK", nil, op, encodeToken(name))
	return err
}

// cmdALS: ALS TrID ADD|DEL name -> ALS TrID ADD|DEL name n; ALS TrID LST ->
// ALS TrID LST name... . An alias belongs to terminals (it is part of
// their presence entries and ends with them), so ADD and DEL change every
// session line of the user on this node, n of them; LST lists the aliases
// those lines hold.
func (s *session) cmdALS(f *frame) *protoError {
	if pe := wantArgs(f, 1, 2); pe != nil {
		return pe
	}
	if !s.ident.Verified {
		return errf(CodeUnverified, f.trid, "changing all your terminals needs a verified sign-in")
	}
	var lines []*switchboard.Line
	for _, l := range s.srv.sb.UserLines(s.user) {
		if l.Kind() == presence.KindSession {
			lines = append(lines, l)
		}
	}
	op := f.args[0]
	if op == "LST" {
		if pe := wantArgs(f, 1, 1); pe != nil {
			return pe
		}
		var names []string
		room := MaxServerLine - 32
		for _, l := range lines {
			for _, a := range l.Entry().Aliases {
				if !slices.Contains(names, a) && room > len(encodeToken(a))+1 {
					names = append(names, a)
					room -= len(encodeToken(a)) + 1
				}
			}
		}
		slices.Sort(names)
		args := []string{"LST"}
		for _, n := range names {
			args = append(args, encodeToken(n))
		}
		return s.replied(s.sendFrame(line("ALS", f.trid, true, args...)))
	}
	if op != "ADD" && op != "DEL" {
		return errf(CodeBadParam, f.trid, "ALS %q: want ADD, DEL or LST", truncate(op, 8))
	}
	if pe := wantArgs(f, 2, 2); pe != nil {
		return pe
	}
	name, pe := arg(f, 1)
	if pe != nil {
		return pe
	}
	if err := presence.ValidUser(name); err != nil {
		return errf(CodeBadUser, f.trid, "%v", err)
	}
	name = presence.CanonicalUser(name)
	if name == s.user {
		return errf(CodeInList, f.trid, "%s is your own name", name)
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
			return errf(CodeListFull, f.trid, "a terminal of yours has %d names already", len(cur))
		case op == "ADD":
			next = append(next, name)
		default:
			next = slices.Delete(next, i, i+1)
		}
		if err := l.SetAliases(next); err != nil {
			switch {
			case errors.Is(err, switchboard.ErrNameTaken):
				return errf(CodeNameTaken, f.trid, "%v", err)
			case errors.Is(err, switchboard.ErrNameReserved):
				return errf(CodeNameReserved, f.trid, "%v", err)
			case errors.Is(err, switchboard.ErrNameUnchecked):
				return errf(CodeNameUnchecked, f.trid, "%s: cannot check the name now; try again", name)
			case errors.Is(err, switchboard.ErrSignedOut):
				continue
			}
			return errf(CodeInternal, f.trid, "%v", err)
		}
		n++
	}
	return s.replied(s.sendFrame(line("ALS", f.trid, true, op, encodeToken(name), strconv.Itoa(n))))
}

// Alias adds (add true) or removes an alias on every session terminal of
// the signed-in user on this node (ALS) and returns how many changed.
func (c *Client) Alias(ctx context.Context, name string, add bool) (int, error) {
	op := "DEL"
	if add {
		op = "ADD"
	}
	f, _, err := c.expect(ctx, "ALS", nil, op, encodeToken(name))
	if err != nil {
		return 0, err
	}
	if len(f.args) != 3 {
		return 0, fmt.Errorf("%w: ALS reply with %d arguments", ErrBadPayload, len(f.args))
	}
	n, _ := strconv.Atoi(f.args[2])
	return n, nil
}

// Aliases lists the aliases the signed-in user's session terminals on this
// node hold (ALS LST).
func (c *Client) Aliases(ctx context.Context) ([]string, error) {
	f, _, err := c.expect(ctx, "ALS", nil, "LST")
	if err != nil {
		return nil, err
	}
	return lstNames("ALS", f.args)
}

// lstNames decodes the names of a "CMD TrID LST name..." reply.
func lstNames(cmd string, args []string) ([]string, error) {
	if len(args) < 1 || args[0] != "LST" {
		return nil, fmt.Errorf("%w: %s LST reply %v", ErrBadPayload, cmd, args)
	}
	out := make([]string, 0, len(args)-1)
	for _, a := range args[1:] {
		n, err := decodeToken(a)
		if err != nil {
			return nil, fmt.Errorf("%w: %s LST: %v", ErrBadPayload, cmd, err)
		}
		out = append(out, n)
	}
	return out, nil
}
