package terminal

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/msprelay/msprelay/principal"
	"github.com/msprelay/msprelay/switchboard"
)

// Config configures a Service.
type Config struct {
	// Switchboard is where logins sign in as lines; required. The Service
	// must be closed before it.
	Switchboard *switchboard.Switchboard
	// Utmp is the utmp file; "" means DefaultUtmp.
	Utmp string
	// DevDir is where the devices live; "" means /dev.
	DevDir string
	// Idle is how long a terminal may see no input before its state is
	// idle; zero means 10 minutes.
	Idle time.Duration
	// Charset is the terminals' charset (default UTF8).
	Charset Charset
	// Poll is how often logins are scanned; zero means 1s.
	Poll time.Duration
	// WriteTimeout bounds one write to a terminal; zero means 1s.
	WriteTimeout time.Duration
	// ActivityEvery rate-limits last-active updates of a terminal in use, as
	// the switchboard does for sessions; zero means 10s.
	ActivityEvery time.Duration
	// MaxLogins bounds the logins signed in; zero means 1024.
	MaxLogins int
	// LookupUID maps user names to uids; nil means the host's passwd.
	LookupUID func(name string) (uint32, error)
	// Logger receives the service's logs; nil means slog.Default().
	Logger *slog.Logger
}

// Service publishes the host's logins as tty terminals: each login whose
// device belongs to its user signs in to the switchboard as a line (state
// online, idle after Config.Idle without input, busy for mesg n), and a
// message the switchboard routes to it is written to the device by a TTY.
//
// Start scans once and starts the watcher's goroutine, which owns every
// line the Service signed in; Close stops it and signs them all out.
type Service struct {
	cfg     Config
	log     *slog.Logger
	sb      *switchboard.Switchboard
	writer  *Writer
	watcher *Watcher

	// mu guards lines and closed; reconcile holds it while it signs lines
	// in and out, so Close cannot interleave with a scan.
	mu     sync.Mutex
	lines  map[string]*ttyLine // by device line
	closed bool
}

// ttyLine is one login the Service knows.
type ttyLine struct {
	login  Login
	uid    uint32
	term   *TTY
	line   *switchboard.Line // nil when a session took the name over
	state  principal.State
	active time.Time // LastActive last published
}

// New validates cfg and builds a Service. It starts nothing.
func New(cfg Config) (*Service, error) {
	if cfg.Switchboard == nil {
		return nil, errors.New("terminal: Config.Switchboard is required")
	}
	if cfg.Idle < 0 || cfg.ActivityEvery < 0 || cfg.MaxLogins < 0 || cfg.Poll < 0 || cfg.WriteTimeout < 0 {
		return nil, errors.New("terminal: Config.Idle, ActivityEvery, MaxLogins, Poll and WriteTimeout must not be negative (0 means the default)")
	}
	if cfg.Idle == 0 {
		cfg.Idle = DefaultIdle
	}
	if cfg.ActivityEvery == 0 {
		cfg.ActivityEvery = DefaultActivityEvery
	}
	if cfg.MaxLogins == 0 {
		cfg.MaxLogins = DefaultMaxLogins
	}
	if cfg.LookupUID == nil {
		cfg.LookupUID = LookupUID
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	wr, err := NewWriter(WriterConfig{Utmp: cfg.Utmp, DevDir: cfg.DevDir, Charset: cfg.Charset,
		Timeout: cfg.WriteTimeout, LookupUID: cfg.LookupUID})
	if err != nil {
		return nil, err
	}
	s := &Service{cfg: cfg, log: cfg.Logger, sb: cfg.Switchboard, writer: wr, lines: map[string]*ttyLine{}}
	s.watcher, err = NewWatcher(WatcherConfig{Utmp: cfg.Utmp, DevDir: cfg.DevDir, Poll: cfg.Poll,
		Report: s.reconcile, Logger: cfg.Logger})
	if err != nil {
		return nil, err
	}
	return s, nil
}

// Start signs in the current logins and starts watching for changes.
func (s *Service) Start() error { return s.watcher.Start() }

// Close stops watching and signs every tty line out. It is idempotent.
func (s *Service) Close() error {
	err := s.watcher.Close()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return err
	}
	s.closed = true
	for k, tl := range s.lines {
		if tl.line != nil {
			tl.line.SignOut()
		}
		delete(s.lines, k)
	}
	return err
}

// stateOf is a login's presence state and last-active time at now.
func (s *Service) stateOf(l *Login, now time.Time) (principal.State, time.Time) {
	active := l.Atime
	if active.After(now) {
		active = now
	}
	switch {
	case !l.Mesg:
		return principal.Busy, active
	case l.Idle(now) >= s.cfg.Idle:
		return principal.Idle, active
	}
	return principal.Online, active
}

// reconcile brings the signed-in lines in line with one scan.
func (s *Service) reconcile(logins []Login) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	now := time.Now()
	seen := make(map[string]bool, len(logins))
	for i := range logins {
		l := &logins[i]
		if principal.ValidUser(l.User) != nil || principal.ValidTerm(l.Line) != nil {
			continue
		}
		tl := s.lines[l.Line]
		if tl != nil && (tl.login.User != l.User || tl.login.PID != l.PID) {
			s.signOut(l.Line, tl) // a new login on the same device
			tl = nil
		}
		if tl == nil && len(s.lines) >= s.cfg.MaxLogins {
			continue
		}
		if tl != nil && tl.uid != l.UID {
			// The device changed hands under the same login record: stop
			// showing it until utmp says who holds it.
			s.signOut(l.Line, tl)
			continue
		}
		seen[l.Line] = true
		st, active := s.stateOf(l, now)
		if tl == nil {
			s.signIn(l, st, active)
			continue
		}
		tl.login = *l
		if tl.line == nil {
			continue // displaced by a session of the same name
		}
		if tl.term.kicked.Load() {
			tl.line = nil
			continue
		}
		if st == tl.state && (active.Equal(tl.active) || active.Sub(tl.active) < s.cfg.ActivityEvery && active.After(tl.active)) {
			continue
		}
		if err := tl.line.SetActivity(st, active); err != nil {
			s.log.Warn("tty state not published", "user", l.User, "line", l.Line, "err", err)
			continue
		}
		tl.state, tl.active = st, active
	}
	for k, tl := range s.lines {
		if !seen[k] {
			s.signOut(k, tl)
		}
	}
}

// signIn signs a new login in if its device belongs to its user.
func (s *Service) signIn(l *Login, st principal.State, active time.Time) {
	uid, err := s.cfg.LookupUID(l.User)
	if err != nil || uid != l.UID {
		s.log.Debug("login not shown: device owner is not the user", "user", l.User, "line", l.Line, "owner", l.UID, "err", err)
		return
	}
	t := NewTTY(s.writer, l.User, l.Line, s.log)
	line, err := s.sb.SignIn(l.User, l.Line, st, t)
	if err != nil {
		s.log.Warn("tty login not signed in", "user", l.User, "line", l.Line, "err", err)
		return
	}
	if err := line.SetActivity(st, active); err != nil {
		s.log.Warn("tty state not published", "user", l.User, "line", l.Line, "err", err)
	}
	s.lines[l.Line] = &ttyLine{login: *l, uid: uid, term: t, line: line, state: st, active: active}
	s.log.Info("tty login", "user", l.User, "line", l.Line, "host", l.Host, "state", st.String())
}

func (s *Service) signOut(key string, tl *ttyLine) {
	if tl.line != nil && !tl.term.kicked.Load() {
		tl.line.SignOut()
	}
	delete(s.lines, key)
	s.log.Info("tty logout", "user", tl.login.User, "line", tl.login.Line)
}

// TTY is the switchboard Terminal of one login's device. Deliver writes the
// message at once (within the Writer's timeout), one message at a time per
// device, so a message's lines are never interleaved with another's.
type TTY struct {
	w          *Writer
	log        *slog.Logger
	user, line string
	slot       chan struct{} // capacity 1: held while writing
	kicked     atomic.Bool   // a session took over this (user, line) name
}

// NewTTY returns the Terminal for user's login on line, written by w;
// failures are logged in detail to log (nil: slog.Default()).
func NewTTY(w *Writer, user, line string, log *slog.Logger) *TTY {
	if log == nil {
		log = slog.Default()
	}
	return &TTY{w: w, log: log, user: user, line: line, slot: make(chan struct{}, 1)}
}

// Deliver writes d to the device. A refusal (mesg n) wraps
// switchboard.ErrBusy; a device that is gone, changed or not the user's
// wraps switchboard.ErrTerminalGone; a stuck one (the write or the wait for
// the previous write timed out, or ctx ended during that wait) wraps
// switchboard.ErrTerminalSlow.
func (t *TTY) Deliver(ctx context.Context, d *switchboard.Delivery) error {
	wait := time.NewTimer(t.w.cfg.Timeout)
	defer wait.Stop()
	select {
	case t.slot <- struct{}{}:
	case <-wait.C:
		return &deliveryError{msg: "terminal busy with an earlier message", class: switchboard.ErrTerminalSlow}
	case <-ctx.Done():
		return &deliveryError{msg: "terminal busy with an earlier message", err: ctx.Err(), class: switchboard.ErrTerminalSlow}
	}
	defer func() { <-t.slot }()
	err := t.w.Write(t.user, t.line, messageOf(d))
	if err == nil {
		return nil
	}
	if errors.Is(err, ErrMesgN) {
		return &deliveryError{msg: ErrMesgN.Error(), err: err, class: switchboard.ErrBusy}
	}
	// The reply goes to a remote sender: it says what happened, while the
	// details (paths, uids) stay in the log.
	t.log.Warn("tty delivery failed", "user", t.user, "line", t.line, "err", err)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return &deliveryError{msg: "terminal not reading (write timed out)", err: err, class: switchboard.ErrTerminalSlow}
	}
	return &deliveryError{msg: "terminal not available", err: err, class: switchboard.ErrTerminalGone}
}

// messageOf is what the tty shows for d: the sender as the ingress node
// established it (d.Origin.Sender), never believed from the SENDER part.
func messageOf(d *switchboard.Delivery) Message {
	id := d.Origin.Sender
	m := Message{Sender: d.Sender, Node: d.Origin.Node, SenderTerm: d.SenderTerm, Time: d.Time, Text: d.Text, Verified: id.Verified()}
	if m.Sender == "" {
		m.Sender = id.Name()
	}
	if m.Verified {
		return m
	}
	if id.Node != "" {
		m.Node = id.Node
	}
	m.Source = id.Source
	if m.Source == "" {
		m.Source = d.Origin.Addr
	}
	if id.Impersonation() {
		m.RealUser = id.User
	}
	return m
}

// Kick marks the line as taken over by a session of the same name; the
// Service leaves it to that session until the login changes.
func (t *TTY) Kick(string) { t.kicked.Store(true) }

// Kind is principal.KindTTY.
func (t *TTY) Kind() principal.Kind { return principal.KindTTY }

// DeliveredNote makes replies say "(terminal)".
func (t *TTY) DeliveredNote() string { return "terminal" }

// BusyReason is the refusal while the user has said mesg n.
func (t *TTY) BusyReason() string { return ErrMesgN.Error() }

// deliveryError is a tty failure as the sender reads it (msg) that still
// matches its cause (err, may be nil) and the switchboard's class of it
// (class) with errors.Is.
type deliveryError struct {
	msg        string
	err, class error
}

func (e *deliveryError) Error() string { return e.msg }

func (e *deliveryError) Unwrap() []error {
	if e.err == nil {
		return []error{e.class}
	}
	return []error{e.err, e.class}
}
