package terminal

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Login is one user's login on a terminal device, as utmp and the device
// report it at one scan.
type Login struct {
	User  string    // ut_user
	Line  string    // ut_line: the device under DevDir, "pts/0"
	Host  string    // ut_host: where the login came from, "" for a local one
	PID   int32     // the login's process; a new PID on a line is a new login
	Time  time.Time // when the login began
	UID   uint32    // the device's owner
	Atime time.Time // the device's access time: the user's last input
	Mesg  bool      // the device's group write bit: "mesg y"
}

// Idle is how long the user has typed nothing at time now.
func (l *Login) Idle(now time.Time) time.Duration {
	if d := now.Sub(l.Atime); d > 0 {
		return d
	}
	return 0
}

// ErrBadLine is the error for a utmp line that cannot name a device under
// the device directory (an X display ":0", "../etc/passwd", ...).
var ErrBadLine = errors.New("terminal: invalid tty line")

// maxLineLen is ut_line's size.
const maxLineLen = 32

// ValidLine checks a utmp line name: a relative path of letters, digits and
// "/_.-", without empty, "." or ".." components.
func ValidLine(line string) error {
	if line == "" || len(line) > maxLineLen {
		return fmt.Errorf("%w %q: length must be 1..%d", ErrBadLine, line, maxLineLen)
	}
	for i := 0; i < len(line); i++ {
		c := line[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("/_.-", c) >= 0) {
			return fmt.Errorf("%w %q: byte %#x not allowed", ErrBadLine, line, c)
		}
	}
	for _, part := range strings.Split(line, "/") {
		if part == "" || part == "." || part == ".." {
			return fmt.Errorf("%w %q: bad path component", ErrBadLine, line)
		}
	}
	return nil
}

// WatcherConfig configures a Watcher.
type WatcherConfig struct {
	// Utmp is the utmp file; "" means /var/run/utmp. A missing file means
	// nobody is logged in.
	Utmp string
	// DevDir is where the devices named by ut_line live; "" means /dev.
	DevDir string
	// Poll is how often utmp and the devices are examined; zero means 1s.
	// A scan reads one small file and stats one device per login.
	Poll time.Duration
	// Report receives the logins after every scan, from the watcher's
	// goroutine (and from Start's, for the first scan); required. It must
	// not call Close.
	Report func([]Login)
	// Logger receives the watcher's logs; nil means slog.Default().
	Logger *slog.Logger
}

// Watcher polls utmp and the login devices and reports the logins: who is
// logged in on which device, how long idle, mesg y or n. Polling (rather
// than inotify) also catches what inotify cannot see on utmp: a device's
// access time and mode change without utmp changing.
//
// Start does the first scan and starts one goroutine, owned by the
// Watcher; Close stops it and waits for it.
type Watcher struct {
	cfg  WatcherConfig
	log  *slog.Logger
	stop chan struct{}
	done chan struct{}

	// mu guards started and closed.
	mu      sync.Mutex
	started bool
	closed  bool
}

// NewWatcher validates cfg. It starts nothing.
func NewWatcher(cfg WatcherConfig) (*Watcher, error) {
	if cfg.Report == nil {
		return nil, errors.New("terminal: WatcherConfig.Report is required")
	}
	if cfg.Utmp == "" {
		cfg.Utmp = DefaultUtmp
	}
	if cfg.DevDir == "" {
		cfg.DevDir = "/dev"
	}
	if cfg.Poll <= 0 {
		cfg.Poll = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Watcher{cfg: cfg, log: cfg.Logger, stop: make(chan struct{}), done: make(chan struct{})}, nil
}

// DefaultUtmp is the system's utmp file.
const DefaultUtmp = "/var/run/utmp"

// Start scans once, reports, and starts polling.
func (w *Watcher) Start() error {
	w.mu.Lock()
	if w.started || w.closed {
		w.mu.Unlock()
		return errors.New("terminal: watcher started twice or after Close")
	}
	w.started = true
	w.mu.Unlock()
	w.scanAndReport()
	go w.run()
	return nil
}

func (w *Watcher) run() {
	defer close(w.done)
	t := time.NewTicker(w.cfg.Poll)
	defer t.Stop()
	for {
		select {
		case <-w.stop:
			return
		case <-t.C:
			w.scanAndReport()
		}
	}
}

func (w *Watcher) scanAndReport() {
	ls, err := Scan(w.cfg.Utmp, w.cfg.DevDir)
	if err != nil {
		w.log.Warn("reading logins", "err", err)
		if ls == nil {
			return // keep what was reported last rather than log everyone out
		}
	}
	w.cfg.Report(ls)
}

// Close stops polling and waits for the goroutine. It is idempotent.
func (w *Watcher) Close() error {
	w.mu.Lock()
	started, closed := w.started, w.closed
	w.closed = true
	w.mu.Unlock()
	if closed {
		return nil
	}
	close(w.stop)
	if started {
		<-w.done
	}
	return nil
}

// Scan reads utmp and stats each login's device once. Records that are not
// user logins, name no valid device, or whose device is missing or not a
// character device are left out. A missing utmp file is no logins. A
// partial trailing record is an error returned with the logins before it.
func Scan(utmp, devDir string) ([]Login, error) {
	rs, err := ReadUtmp(utmp)
	if errors.Is(err, fs.ErrNotExist) {
		return []Login{}, nil
	}
	if rs == nil {
		return nil, err
	}
	out := make([]Login, 0, len(rs))
	seen := make(map[string]bool, len(rs))
	for _, r := range rs {
		if r.Type != UserProcess || r.User == "" || ValidLine(r.Line) != nil || seen[r.Line] {
			continue
		}
		st, err := lstatDevice(devDir, r.Line)
		if err != nil {
			continue
		}
		seen[r.Line] = true
		out = append(out, Login{User: r.User, Line: r.Line, Host: r.Host, PID: r.PID, Time: r.Time,
			UID: st.Uid, Atime: atime(st), Mesg: st.Mode&modeGroupWrite != 0})
	}
	return out, err
}

// lstatDevice stats devDir/line without following symbolic links, in the
// device itself or in the directories under devDir leading to it, and
// requires a character device.
func lstatDevice(devDir, line string) (*syscall.Stat_t, error) {
	if err := ValidLine(line); err != nil {
		return nil, err
	}
	parts := strings.Split(line, "/")
	p := devDir
	for _, dir := range parts[:len(parts)-1] {
		p = filepath.Join(p, dir)
		fi, err := os.Lstat(p)
		if err != nil {
			return nil, fmt.Errorf("terminal: %w", err)
		}
		if !fi.IsDir() {
			return nil, fmt.Errorf("%w: %s is not a directory", ErrNotTerminal, p)
		}
	}
	p = filepath.Join(devDir, line)
	var st syscall.Stat_t
	if err := syscall.Lstat(p, &st); err != nil {
		return nil, fmt.Errorf("terminal: lstat %s: %w", p, err)
	}
	if st.Mode&syscall.S_IFMT != syscall.S_IFCHR {
		return nil, fmt.Errorf("%w: %s", ErrNotTerminal, p)
	}
	return &st, nil
}
