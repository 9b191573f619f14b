package session

import (
	"cmp"
	"errors"
	"slices"
	"sync"

	"github.com/msprelay/msprelay/presence"
	"github.com/msprelay/msprelay/principal"
	"github.com/msprelay/msprelay/sessionproto"
)

// watchIndex maps a watched user to the sessions watching it.
type watchIndex struct {
	mu sync.Mutex // guards m
	m  map[string]map[*session]struct{}
}

func (w *watchIndex) add(user string, s *session) {
	w.mu.Lock()
	defer w.mu.Unlock()
	set := w.m[user]
	if set == nil {
		set = map[*session]struct{}{}
		w.m[user] = set
	}
	set[s] = struct{}{}
}

func (w *watchIndex) remove(user string, s *session) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if set := w.m[user]; set != nil {
		delete(set, s)
		if len(set) == 0 {
			delete(w.m, user)
		}
	}
}

func (w *watchIndex) watchers(user string) []*session {
	w.mu.Lock()
	defer w.mu.Unlock()
	set := w.m[user]
	out := make([]*session, 0, len(set))
	for s := range set {
		out = append(out, s)
	}
	return out
}

func (w *watchIndex) users() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]string, 0, len(w.m))
	for u := range w.m {
		out = append(out, u)
	}
	return out
}

// startWatch subscribes to the directory and starts the dispatcher, unless
// the server is already closed.
func (srv *Server) startWatch() {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if srv.closed {
		return
	}
	sub := srv.dir.Subscribe()
	srv.wg.Add(1)
	go srv.watchLoop(sub)
}

// watchLoop is the dispatcher: one goroutine per server turns directory
// events into NLN/FLN pushes for the sessions watching the user concerned.
// It never waits on a session: a push that cannot be queued closes that
// session. If the dispatcher itself falls behind the directory, it
// resubscribes and re-syncs every watch from a fresh lookup.
func (srv *Server) watchLoop(sub *presence.Subscription) {
	defer srv.wg.Done()
	defer func() { sub.Cancel() }()
	for {
		select {
		case <-srv.quit:
			return
		case ev, ok := <-sub.C:
			if !ok {
				if !errors.Is(sub.Err(), presence.ErrLagged) {
					return // directory closed
				}
				srv.log.Warn("session watch dispatcher fell behind the directory; resynchronising")
				sub = srv.dir.Subscribe()
				for _, u := range srv.w.users() {
					srv.refresh(u)
				}
				continue
			}
			srv.refresh(ev.Entry.User)
		}
	}
}

// refresh pushes user's current terminals to every session watching it.
func (srv *Server) refresh(user string) {
	ws := srv.w.watchers(user)
	if len(ws) == 0 {
		return
	}
	entries := srv.terminalsOf(user)
	for _, s := range ws {
		s.pushWatch(user, entries)
	}
}

// terminalsOf returns user's terminals in the directory (not the entries
// that merely hold user as an alias).
func (srv *Server) terminalsOf(user string) []principal.Entry {
	es := srv.dir.Lookup(user)
	return slices.DeleteFunc(es, func(e principal.Entry) bool { return e.User != user })
}

// pushWatch tells the client what changed in user's terminals since it was
// last told; a client too far behind to take it is disconnected.
func (s *session) pushWatch(user string, entries []principal.Entry) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ending {
		return
	}
	if _, ok := s.known[user]; !ok {
		return // not watched (yet, or any more)
	}
	b := s.diffLocked(user, entries, nil)
	if len(b) > 0 && !s.pushLocked(b) {
		s.log.Info("session closed: client not reading presence pushes", "user", s.user, "term", s.term)
		s.abortLocked()
	}
}

// diffLocked records entries as what the client knows of user and returns
// the lines telling it: NLN for a new or changed terminal, FLN for one gone
// (or hidden), or, when trid is set, ILN for every visible terminal (the
// initial report of ADD FL). mu must be held.
func (s *session) diffLocked(user string, entries []principal.Entry, trid *uint32) []byte {
	old := s.known[user]
	now := make(map[termKey]watched, len(entries))
	var b []byte
	for i := range entries {
		e := &entries[i]
		if !visibleTo(e, s.user) {
			continue
		}
		k := termKey{e.Node, principal.CanonicalUser(e.Term)}
		now[k] = watched{term: e.Term, state: e.State}
		args := []string{e.State.Code(), sessionproto.EncodeToken(e.User), sessionproto.EncodeToken(e.Node), sessionproto.EncodeToken(e.Term)}
		if trid != nil {
			b = append(b, sessionproto.Line("ILN", *trid, true, args...)...)
		} else if w, had := old[k]; !had || w.state != e.State {
			b = append(b, sessionproto.Line("NLN", 0, false, args...)...)
		}
	}
	gone := make([]termKey, 0, len(old))
	for k := range old {
		if _, ok := now[k]; !ok {
			gone = append(gone, k)
		}
	}
	slices.SortFunc(gone, func(a, b termKey) int { return cmp.Or(cmp.Compare(a.node, b.node), cmp.Compare(a.term, b.term)) })
	for _, k := range gone {
		b = append(b, sessionproto.Line("FLN", 0, false, sessionproto.EncodeToken(user), sessionproto.EncodeToken(k.node), sessionproto.EncodeToken(old[k].term))...)
	}
	s.known[user] = now
	return b
}
