package session

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/msprelay/msprelay/principal"
	"github.com/msprelay/msprelay/sessionproto"
	"github.com/msprelay/msprelay/switchboard"
)

// session is one client connection.
//
// Goroutines and ownership: serve (the reader) is started by the server; it
// reads and runs commands one at a time, and on the way out (finish) signs
// the line out, waits for the writer and closes conn. An idle signed-in
// reader may park the connection and return; a new reader (resume) then
// takes over, so there is at most one reader at a time (park.go).
// The writer (writeLoop) runs
// only while there is something to write: queueing a frame into an empty,
// writer-less queue starts it (kickWriterLocked, under mu, counted in
// writers), and it returns once the queue is empty, so that an idle session
// costs one goroutine, not two. It owns the bufio.Writer it borrows and is
// the only goroutine writing to conn; once the session is ending it writes
// what is queued plus the final frame and half-closes. The queue q grows
// on demand (an idle session holds no slots) and is bounded: senders use
// the non-blocking pushLocked (OutQueue frames at most) or the waiting send
// (one slot more, for replies), both under mu, and quit tells everyone the
// session is ending. Other goroutines reach the session only through
// Deliver and Kick (switchboard), pushWatch (dispatcher), end and abort
// (server).
type session struct {
	srv  *Server
	conn net.Conn
	auth Authenticator
	fr   *sessionproto.FrameReader
	log  *slog.Logger
	kind listenerKind // of the listener that accepted conn

	space   chan struct{}  // cap 1; the writer signals after taking a frame
	quit    chan struct{}  // closed once, by end or abort
	writers sync.WaitGroup // the running writeLoop, if any; Add under mu, never after end
	// roomWaiters counts deliveries waiting on room (tests watch it).
	roomWaiters atomic.Int32

	// Owned by the reader goroutine; no lock.
	signedIn      bool
	loginDeadline time.Time
	ident         Identity          //
	line          *switchboard.Line // nil for sessionproto.NoTerminal sessions
	aliases       []string          // canonical, in the order added
	fl            map[string]struct{}
	conv          convState // conversations (conversation.go)

	// mu guards the fields below, and every send on out. user and term are
	// written only by the reader (under mu), so the reader reads them bare.
	mu        sync.Mutex
	q         [][]byte // frames for the writer, oldest first; nil when empty
	writing   bool     // writeLoop is running (or about to)
	user      string   // canonical; set at sign-in
	term      string   // as given; "" for sessionproto.NoTerminal sessions
	ending    bool     // quit is closed
	aborted   bool     // conn was closed without a goodbye
	final     []byte   // last frame, written after the queue drains
	signingIn bool     // SignIn under way: deliveries go to held
	held      [][]byte
	acks      bool                           // the client acknowledges messages (MSPS2)
	sending   bool                           // the reader is inside SND: it reads no ACK until it returns
	unacked   map[string]ackWaiters          // message id -> callers awaiting the client's ACK
	room      chan struct{}                  // made by deliveries waiting for room in out; closed (and cleared) by the writer when it takes a frame
	bl        map[string]struct{}            // blocked senders, canonical
	known     map[string]map[termKey]watched // watched user -> terminals the client was told about
	parked    uint64                         // the current park's token (park.go); 0: a reader runs
	parkUntil int64                          // while parked: the idle deadline, Unix ns
	idle      *time.Timer                    // made at the first park; fires idleExpired
}

// termKey identifies one terminal of a watched user.
type termKey struct{ node, term string } // term folded

// watched is what the client was last told about one terminal.
type watched struct {
	term  string
	state principal.State
}

func newSession(srv *Server, c net.Conn, auth Authenticator, kind listenerKind) *session {
	return &session{
		srv: srv, conn: c, auth: auth, kind: kind,
		fr:            sessionproto.NewPooledClientReader(c, &srv.readers),
		log:           srv.log.With("remote", c.RemoteAddr().String()),
		space:         make(chan struct{}, 1),
		quit:          make(chan struct{}),
		loginDeadline: time.Now().Add(srv.cfg.LoginTimeout),
		// fl, bl and known are made on first use: most sessions watch and
		// block no one.
	}
}

// serve is the session's first reader; see resume for the others.
func (s *session) serve() {
	if s.loop() {
		return // parked: a later reader finishes
	}
	s.finish()
}

// finish runs the session's end, in its last reader.
func (s *session) finish() {
	defer s.srv.wg.Done()
	s.end(nil)
	s.failAcks()
	s.leaveConversations()
	if s.line != nil {
		s.line.SignOut()
	}
	for u := range s.fl {
		s.srv.w.remove(u, s)
	}
	s.writers.Wait() // end started the writer, if it was not running
	s.mu.Lock()
	aborted := s.aborted
	s.mu.Unlock()
	if !aborted {
		// Read what the client still sends, so that closing does not reset
		// the connection before it has read our last line.
		s.conn.SetReadDeadline(time.Now().Add(lingerTimeout))
		io.Copy(io.Discard, io.LimitReader(s.fr.Rest(), sessionproto.MaxServerPayload))
	}
	s.conn.Close()
	s.srv.forget(s)
	s.log.Debug("session ended", "user", s.user, "term", s.term)
}

// loop reads and runs commands until the session ends, or until it parks
// (parked: the caller returns without finishing).
func (s *session) loop() (parked bool) {
	for s.armRead() {
		parked, err := s.await()
		if parked {
			return true
		}
		var f *sessionproto.Frame
		if err == nil {
			f, err = s.fr.Read()
		}
		if err != nil {
			var pe *sessionproto.Fault
			if errors.As(err, &pe) {
				if !s.refuse(pe) {
					return false
				}
				continue
			}
			s.readFailed(err)
			return false
		}
		if pe := s.dispatch(f); pe != nil && !s.refuse(pe) {
			return false
		}
		if s.isEnding() {
			return false
		}
	}
	return false
}

// armRead sets the read deadline for the next frame, unless the session is
// ending (end sets its own short deadline).
func (s *session) armRead() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ending {
		return false
	}
	d := s.loginDeadline
	if s.signedIn {
		d = time.Now().Add(s.srv.cfg.IdleTimeout)
	}
	s.conn.SetReadDeadline(d)
	return true
}

// readFailed ends the session after an I/O error.
func (s *session) readFailed(err error) {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() && !s.isEnding() {
		s.log.Info("session timed out", "user", s.user, "term", s.term)
		s.end(outFrame("TMO"))
		return
	}
	if !errors.Is(err, io.EOF) && !s.isEnding() {
		s.log.Debug("session read failed", "err", err)
	}
	s.end(nil)
}

// refuse answers a protocol error. It reports whether the session goes on:
// errors before sign-in and fatal errors close it. Code 0 closes silently.
func (s *session) refuse(pe *sessionproto.Fault) bool {
	if pe.Code == 0 {
		s.end(nil)
		return false
	}
	if pe.Fatal || !s.signedIn {
		if !pe.Quiet {
			s.log.Info("session closed on error", "code", pe.Code, "err", pe.Text)
		}
		s.end(sessionproto.ErrorLine(pe.Code, pe.TrID, pe.Text))
		return false
	}
	return s.sendFrame(sessionproto.ErrorLine(pe.Code, pe.TrID, pe.Text)) == nil
}

func (s *session) isEnding() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ending
}

// end starts a graceful close: the writer flushes the queue, writes final
// (if any) and half-closes; the reader stops after a short linger. Only the
// first call's final frame counts.
func (s *session) end(final []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ending {
		return
	}
	s.ending = true
	s.final = final
	close(s.quit)
	s.conn.SetReadDeadline(time.Now().Add(lingerTimeout))
	// A parked session needs a reader to finish.
	s.unparkLocked(false)
	s.kickWriterLocked() // to write what is queued and final, and half-close
}

// abort closes the connection at once, dropping whatever is queued.
func (s *session) abort() {
	s.mu.Lock()
	s.abortLocked()
	s.mu.Unlock()
}

func (s *session) abortLocked() {
	if !s.ending {
		s.ending = true
		close(s.quit)
	}
	s.aborted = true
	s.unparkLocked(false) // before Close: the parker drops the fd first
	s.conn.Close()
}

// errEnding is returned by send once the session is ending.
var errEnding = errors.New("session: ending")

// send waits (at most WriteTimeout) for room in the queue, then calls build
// under mu and queues what it returns. Only the reader goroutine calls it;
// pushes never use the last slot, so after the wait the send cannot block.
// build runs under mu so that a state change and the frame announcing it are
// atomic with respect to Deliver and pushWatch.
func (s *session) send(build func() []byte) error {
	var timer *time.Timer
	for {
		s.mu.Lock()
		if s.ending {
			s.mu.Unlock()
			return errEnding
		}
		if len(s.q) <= s.srv.cfg.OutQueue {
			if b := build(); len(b) > 0 {
				s.enqueueLocked(b)
			}
			s.mu.Unlock()
			return nil
		}
		s.mu.Unlock()
		if timer == nil {
			timer = time.NewTimer(s.srv.cfg.WriteTimeout)
			defer timer.Stop()
		}
		select {
		case <-s.space:
		case <-s.quit:
			return errEnding
		case <-timer.C:
			s.log.Info("session closed: client not reading", "user", s.user, "term", s.term)
			s.abort()
			return errEnding
		}
	}
}

// sendFrame queues a ready frame; see send.
func (s *session) sendFrame(b []byte) error {
	return s.send(func() []byte { return b })
}

// pushLocked queues a server-initiated frame without waiting; it reports
// false when the client is too far behind. mu must be held.
func (s *session) pushLocked(b []byte) bool {
	if len(s.q) >= s.srv.cfg.OutQueue {
		return false
	}
	s.enqueueLocked(b)
	return true
}

// enqueueLocked appends b to the queue and makes sure a writer runs. The
// callers keep the bound (OutQueue, plus one slot for send). mu must be
// held.
func (s *session) enqueueLocked(b []byte) {
	s.q = append(s.q, b)
	s.kickWriterLocked()
}

// kickWriterLocked starts writeLoop unless it runs already or the
// connection is gone. mu must be held.
func (s *session) kickWriterLocked() {
	if s.writing || s.aborted {
		return
	}
	s.writing = true
	s.writers.Add(1)
	go s.writeLoop()
}

// takeLocked removes the oldest queued frame, wakes a reader waiting in
// send and deliveries waiting for room, and reports whether more frames
// remain. mu must be held and q non-empty.
func (s *session) takeLocked() (b []byte, more bool) {
	b = s.q[0]
	s.q[0] = nil
	s.q = s.q[1:]
	if len(s.q) == 0 {
		s.q = nil // an idle session keeps no slots
	}
	select {
	case s.space <- struct{}{}:
	default:
	}
	if s.room != nil {
		close(s.room)
		s.room = nil
	}
	return b, len(s.q) > 0
}

// writeLoop is the only writer of conn; see session for when it runs. It
// writes the queue out and returns when it is empty; once the session is
// ending it writes the final frame and half-closes conn.
func (s *session) writeLoop() {
	defer s.writers.Done()
	// The write buffer is borrowed from the server while frames are queued
	// and returned, flushed, when the queue runs dry: idle sessions (most of
	// them) then cost no buffer.
	var bw *bufio.Writer
	release := func() {
		if bw != nil {
			bw.Reset(nil)
			s.srv.writers.Put(bw)
			bw = nil
		}
	}
	defer release()
	write := func(b []byte, more bool) error {
		if bw == nil {
			if w, ok := s.srv.writers.Get().(*bufio.Writer); ok {
				bw = w
				bw.Reset(s.conn)
			} else {
				bw = bufio.NewWriterSize(s.conn, 8<<10)
			}
		}
		s.conn.SetWriteDeadline(time.Now().Add(s.srv.cfg.WriteTimeout))
		if _, err := bw.Write(b); err != nil {
			return err
		}
		if !more {
			err := bw.Flush()
			release()
			return err
		}
		return nil
	}
	failed := func() {
		s.mu.Lock()
		s.writing = false
		s.mu.Unlock()
		s.abort()
	}
	for {
		s.mu.Lock()
		switch {
		case s.aborted:
			s.writing = false
			s.mu.Unlock()
			return
		case len(s.q) > 0:
			b, more := s.takeLocked()
			s.mu.Unlock()
			if err := write(b, more); err != nil {
				failed()
				return
			}
			continue
		case !s.ending:
			s.writing = false // the next frame queued starts a writer again
			s.mu.Unlock()
			return
		}
		// Ending, and everything queued is written: the final frame and
		// the half-close. No frame is queued once ending is set.
		final := s.final
		s.mu.Unlock()
		if final != nil {
			if err := write(final, false); err != nil {
				failed()
				return
			}
		}
		if cw, ok := s.conn.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
		}
		s.mu.Lock()
		s.writing = false
		s.mu.Unlock()
		return
	}
}

// outFrame is the server's "OUT <reason>" line.
func outFrame(reason string) []byte { return sessionproto.Line("OUT", 0, false, reason) }

// Deliver implements switchboard.Terminal: it queues d for the client,
// waiting at most QueueWait (or until ctx ends) for room.
func (s *session) Deliver(ctx context.Context, d *switchboard.Delivery) error {
	return s.deliver(ctx, d, nil)
}

// deliver queues d for the client. With done, the session also remembers
// that d.ID awaits the client's ACK and sends on done when it comes (see
// ack.go). A full queue is waited on once, until QueueWait or ctx ends.
func (s *session) deliver(ctx context.Context, d *switchboard.Delivery, done chan<- error) error {
	b := s.srv.msgFrame(d)
	var timer *time.Timer
	waited := false
	for {
		s.mu.Lock()
		switch {
		case s.ending:
			s.mu.Unlock()
			return switchboard.ErrTerminalGone
		case s.blockedLocked(d.Sender):
			s.mu.Unlock()
			return switchboard.ErrBlocked
		case done != nil && s.unackedLocked() >= s.srv.cfg.AckWindow:
			s.mu.Unlock()
			return switchboard.ErrTerminalSlow
		case s.signingIn:
			// The USR reply is not queued yet; keep the message behind it.
			if len(s.held) >= s.srv.cfg.OutQueue {
				s.mu.Unlock()
				return switchboard.ErrTerminalSlow
			}
			s.held = append(s.held, b)
		case !s.pushLocked(b):
			if waited || s.srv.cfg.QueueWait < 0 {
				s.mu.Unlock()
				return switchboard.ErrTerminalSlow
			}
			// Full: wait (once, bounded) for the writer to make room.
			room := s.room
			if room == nil {
				room = make(chan struct{})
				s.room = room
			}
			s.roomWaiters.Add(1)
			s.mu.Unlock()
			if timer == nil {
				timer = time.NewTimer(s.srv.cfg.QueueWait)
				defer timer.Stop()
			}
			select {
			case <-room:
			case <-timer.C:
				waited = true
			case <-ctx.Done():
				waited = true
			case <-s.quit:
			}
			s.roomWaiters.Add(-1)
			continue
		}
		if done != nil {
			s.awaitAckLocked(d.ID, done)
		}
		s.mu.Unlock()
		return nil
	}
}

// Kick implements switchboard.Terminal: a newer sign-in took this (user,
// terminal) over, so the client is told "OUT OTH" and the session closes.
func (s *session) Kick(reason string) {
	s.mu.Lock()
	user, term := s.user, s.term
	s.mu.Unlock()
	s.log.Info("session kicked", "user", user, "term", term, "reason", reason)
	s.end(outFrame("OTH"))
}

// blockedLocked reports whether the block list refuses sender: by the full
// sender name or, for "user@node", by its user part. mu must be held.
func (s *session) blockedLocked(sender string) bool {
	if len(s.bl) == 0 || sender == "" {
		return false
	}
	c := principal.CanonicalUser(sender)
	if _, ok := s.bl[c]; ok {
		return true
	}
	u, _ := switchboard.SplitAddress(c)
	_, ok := s.bl[u]
	return ok
}

// dispatch runs one command. A returned error is answered by refuse.
func (s *session) dispatch(f *sessionproto.Frame) *sessionproto.Fault {
	switch f.Cmd {
	case "VER":
		return s.cmdVER(f)
	case "USR":
		return s.cmdUSR(f)
	case "PNG":
		if err := wantArgs(f, 0, 0); err != nil {
			return err
		}
		secs := max(int(s.srv.cfg.IdleTimeout/time.Second)/2, 1)
		return s.replied(s.sendFrame(sessionproto.Line("QNG", 0, false, strconv.Itoa(secs))))
	case "OUT":
		if err := wantArgs(f, 0, 0); err != nil {
			return err
		}
		s.end(sessionproto.Line("OUT", 0, false))
		return nil
	case "QRY":
		return sessionproto.Errf(sessionproto.CodeUnexpected, f.TrID, "QRY without a challenge")
	}
	var run func(*sessionproto.Frame) *sessionproto.Fault
	switch f.Cmd {
	case "CHG":
		run = s.cmdCHG
	case "ADD":
		run = s.cmdADD
	case "REM":
		run = s.cmdREM
	case "LST":
		run = s.cmdLST
	case "WHO":
		run = s.cmdWHO
	case "SND":
		run = s.cmdSND
	case "NAM":
		run = s.cmdNAM
	case "ACK":
		run = s.cmdACK
	default:
		if run = s.userCommand(f.Cmd); run != nil {
			break // WAL, STA, BLK (commands_user.go)
		}
		if run = s.convCommand(f.Cmd); run == nil {
			return sessionproto.Errf(sessionproto.CodeUnknownCommand, f.TrID, "unknown command %s", f.Cmd)
		}
	}
	if !s.signedIn {
		return sessionproto.Errf(sessionproto.CodeNotSignedIn, f.TrID, "sign in first (USR)")
	}
	return run(f)
}

// replied turns a send error into the silent-close error (the session is
// already ending) or nil.
func (s *session) replied(err error) *sessionproto.Fault {
	if err != nil {
		return &sessionproto.Fault{} // code 0: close without a word
	}
	return nil
}

// wantArgs checks the argument count.
func wantArgs(f *sessionproto.Frame, lo, hi int) *sessionproto.Fault {
	if n := len(f.Args); n < lo || n > hi {
		switch {
		case lo == hi:
			return sessionproto.Errf(sessionproto.CodeSyntax, f.TrID, "%s takes %d arguments, got %d", f.Cmd, lo, n)
		default:
			return sessionproto.Errf(sessionproto.CodeSyntax, f.TrID, "%s takes %d to %d arguments, got %d", f.Cmd, lo, hi, n)
		}
	}
	return nil
}

// arg decodes argument i.
func arg(f *sessionproto.Frame, i int) (string, *sessionproto.Fault) {
	v, err := sessionproto.DecodeToken(f.Args[i])
	if err != nil {
		return "", sessionproto.Errf(sessionproto.CodeBadParam, f.TrID, "argument %d: %v", i+1, err)
	}
	return v, nil
}
