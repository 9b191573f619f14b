package session

import (
	"errors"
	"net"
	"syscall"
	"time"
)

// Parking idle sessions (issue 22: an idle signed-in user should cost a few
// KiB). A goroutine parked in a network read keeps a 4 KiB stack, more than
// everything else an idle session holds. So a signed-in reader that has
// waited ParkAfter for the next frame, holding nothing unread, parks its
// socket with the server's parker (one epoll set, park_linux.go) and
// returns: the session then has no goroutine. The parker starts a new
// reader (resume) when the socket becomes readable; a timer starts one when
// the idle timeout expires; end and abort start one at once, so that every
// way out of a session still runs through its reader and finish.
//
// State: s.parked (the park's token, 0 when not parked), s.parkUntil and
// s.idle are guarded by s.mu. Exactly one of the parties above (poller,
// timer, end/abort) unparks a park, under s.mu, and only it starts the next
// reader, so there is never more than one reader.

// parker returns the server's parker, making and starting it on first use,
// or nil when parking is off, failed to start or the server is closing.
func (srv *Server) parker() *parker {
	if p := srv.park.Load(); p != nil {
		return p
	}
	if srv.cfg.ParkAfter < 0 {
		return nil
	}
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if p := srv.park.Load(); p != nil || srv.closed || srv.parkFailed {
		return p
	}
	p, err := newParker(srv.log)
	if err != nil {
		srv.parkFailed = true
		srv.log.Warn("session: idle sessions keep their reader goroutine", "err", err)
		return nil
	}
	srv.park.Store(p)
	srv.wg.Add(1)
	go func() {
		defer srv.wg.Done()
		p.run()
	}()
	return p
}

// await waits for the first octet of the next frame of an idle signed-in
// session for at most ParkAfter; if none comes it parks the session and
// reports parked: the caller (the reader) must then return at once. An
// error is a read error for readFailed. The reader's deadline is the idle
// timeout again when await returns without parking, unless the session is
// ending (end's deadline stays).
func (s *session) await() (parked bool, err error) {
	cfg := &s.srv.cfg
	if !s.signedIn || cfg.ParkAfter < 0 || cfg.ParkAfter >= cfg.IdleTimeout || !s.fr.Idle() {
		return false, nil
	}
	if _, ok := s.conn.(syscall.Conn); !ok || s.srv.parker() == nil {
		return false, nil
	}
	until := time.Now().Add(cfg.IdleTimeout)
	if !s.setReadDeadline(time.Now().Add(cfg.ParkAfter)) {
		return false, nil
	}
	err = s.fr.Await()
	if err == nil {
		s.setReadDeadline(until)
		return false, nil
	}
	if ne := net.Error(nil); !errors.As(err, &ne) || !ne.Timeout() {
		return false, err
	}
	if s.park(until) {
		return true, nil
	}
	s.setReadDeadline(until)
	return false, nil
}

// setReadDeadline sets the read deadline unless the session is ending, and
// reports whether it did.
func (s *session) setReadDeadline(d time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ending {
		return false
	}
	s.conn.SetReadDeadline(d)
	return true
}

// park hands the connection to the server's parker, to be woken by data or
// by the idle timeout at until. It reports false (nothing changed) when the
// session is ending or the parker refuses.
func (s *session) park(until time.Time) bool {
	p := s.srv.park.Load()
	rc, err := s.conn.(syscall.Conn).SyscallConn()
	if p == nil || err != nil {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ending {
		return false
	}
	t, err := p.add(s, rc)
	if err != nil {
		return false
	}
	s.parked = t
	s.parkUntil = until.UnixNano()
	if s.idle == nil {
		s.idle = time.AfterFunc(time.Until(until), s.idleExpired)
	} else {
		s.idle.Reset(time.Until(until))
	}
	return true
}

// unparkToken wakes the session if its park t is still current (the
// poller's events may be stale).
func (s *session) unparkToken(t uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.parked == t {
		s.unparkLocked(false)
	}
}

// idleExpired is the idle timer's callback: a parked session whose idle
// timeout has passed is woken to time out.
func (s *session) idleExpired() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.parked != 0 && time.Now().UnixNano() >= s.parkUntil {
		s.unparkLocked(true)
	}
}

// unparkLocked ends the current park, if any, and starts the next reader;
// expired says the idle timeout passed. mu must be held.
func (s *session) unparkLocked(expired bool) {
	if s.parked == 0 {
		return
	}
	t := s.parked
	s.parked = 0
	s.idle.Stop()
	if rc, err := s.conn.(syscall.Conn).SyscallConn(); err == nil {
		s.srv.park.Load().remove(t, rc)
	}
	go s.resume(expired)
}

// resume is the reader started by unparkLocked.
func (s *session) resume(expired bool) {
	if expired {
		s.log.Info("session timed out", "user", s.user, "term", s.term)
		s.end(outFrame("TMO"))
	} else if s.loop() {
		return // parked again
	}
	s.finish()
}

// parkedSessions is the number of sessions parked now.
func (srv *Server) parkedSessions() int {
	if p := srv.park.Load(); p != nil {
		return p.len()
	}
	return 0
}
