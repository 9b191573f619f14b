package terminal

import (
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// Refusals and faults of a tty delivery. Writer.Write wraps them.
var (
	// ErrMesgN: the user said "mesg n" (the device's group write bit is clear).
	ErrMesgN = errors.New("not accepting messages (mesg n)")
	// ErrNotTerminal: the path is not a character device, or it changed
	// (a symbolic link, a replaced file) between the checks and the open.
	ErrNotTerminal = errors.New("terminal: not a terminal device")
	// ErrWrongOwner: the device does not belong to the login's user.
	ErrWrongOwner = errors.New("terminal: device not owned by the login's user")
	// ErrNotLoggedIn: utmp lists no login of the user on that line.
	ErrNotLoggedIn = errors.New("terminal: no such login in utmp")
	// ErrUnknownUser: the login's user has no uid on this host.
	ErrUnknownUser = errors.New("terminal: no such user on this host")
)

// DefaultWriteTimeout bounds a write to a terminal when no timeout is set.
const DefaultWriteTimeout = time.Second

// WriterConfig configures a Writer.
type WriterConfig struct {
	// Utmp is the utmp file that must list a login; "" means DefaultUtmp.
	Utmp string
	// DevDir is where the devices live; "" means /dev.
	DevDir string
	// Charset is the charset messages are rendered in (default UTF8).
	Charset Charset
	// Timeout bounds one write, so that a terminal whose output is stopped
	// (^S) or whose buffer is full cannot hold a delivery; zero means
	// DefaultWriteTimeout.
	Timeout time.Duration
	// LookupUID maps a user name to its uid; nil means the host's passwd
	// database (os/user).
	LookupUID func(name string) (uint32, error)
}

// Writer writes messages to login terminals, checking each device the way
// write(1) does before it writes. It holds no open files between writes and
// is safe for concurrent use.
type Writer struct {
	cfg WriterConfig
}

// NewWriter validates cfg and builds a Writer.
func NewWriter(cfg WriterConfig) (*Writer, error) {
	if cfg.Utmp == "" {
		cfg.Utmp = DefaultUtmp
	}
	if cfg.DevDir == "" {
		cfg.DevDir = "/dev"
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultWriteTimeout
	}
	if cfg.Charset > ASCII {
		return nil, fmt.Errorf("%w %d", ErrBadCharset, cfg.Charset)
	}
	if cfg.LookupUID == nil {
		cfg.LookupUID = LookupUID
	}
	return &Writer{cfg: cfg}, nil
}

// LookupUID returns the uid of the named user from the host's passwd
// database.
func LookupUID(name string) (uint32, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return 0, fmt.Errorf("%w: %s: %v", ErrUnknownUser, name, err)
	}
	id, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("%w: %s: uid %q", ErrUnknownUser, name, u.Uid)
	}
	return uint32(id), nil
}

// Write shows m on user's terminal line: it checks that utmp lists user on
// line, that the device is a character device owned by user (no symbolic
// link followed, checked again on the open descriptor), and that it
// accepts messages, then writes Format(m) within the timeout. The errors
// wrap ErrMesgN, ErrNotLoggedIn, ErrNotTerminal, ErrWrongOwner,
// ErrUnknownUser, os.ErrDeadlineExceeded (a stuck terminal) or the
// system's error.
func (w *Writer) Write(userName, line string, m Message) error {
	if err := ValidLine(line); err != nil {
		return err
	}
	if err := w.listed(userName, line); err != nil {
		return err
	}
	uid, err := w.cfg.LookupUID(userName)
	if err != nil {
		return err
	}
	f, err := w.open(line, uid)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.SetWriteDeadline(time.Now().Add(w.cfg.Timeout)); err != nil {
		return fmt.Errorf("terminal: %s: %w", line, err)
	}
	if _, err := f.Write(Format(m, w.cfg.Charset)); err != nil {
		return fmt.Errorf("terminal: write %s: %w", line, err)
	}
	return nil
}

// listed checks that utmp holds a login of user on line now.
func (w *Writer) listed(userName, line string) error {
	rs, err := ReadUtmp(w.cfg.Utmp)
	if rs == nil && err != nil {
		return err
	}
	for _, r := range rs {
		if r.Type == UserProcess && r.User == userName && r.Line == line {
			return nil
		}
	}
	return fmt.Errorf("%w: %s on %s", ErrNotLoggedIn, userName, line)
}

// open opens DevDir/line for writing after checking it, and checks the open
// descriptor again: O_NOFOLLOW refuses a symbolic link in the last
// component, lstatDevice one in the directories, and comparing the
// device and inode numbers catches a file swapped in between.
func (w *Writer) open(line string, uid uint32) (*os.File, error) {
	before, err := lstatDevice(w.cfg.DevDir, line)
	if err != nil {
		return nil, err
	}
	p := filepath.Join(w.cfg.DevDir, line)
	// O_NONBLOCK makes the descriptor pollable, so the write deadline
	// works; O_NOCTTY keeps the node from acquiring it as its terminal.
	f, err := os.OpenFile(p, os.O_WRONLY|syscall.O_NOCTTY|syscall.O_NONBLOCK|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, syscall.ELOOP) {
			return nil, fmt.Errorf("%w: %s is a symbolic link", ErrNotTerminal, p)
		}
		return nil, fmt.Errorf("terminal: open %s: %w", p, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("terminal: fstat %s: %w", p, err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	switch {
	case !ok || st.Mode&syscall.S_IFMT != syscall.S_IFCHR || st.Dev != before.Dev || st.Ino != before.Ino || st.Rdev != before.Rdev:
		err = fmt.Errorf("%w: %s changed or is not a character device", ErrNotTerminal, p)
	case st.Uid != uid:
		err = fmt.Errorf("%w: %s belongs to uid %d, not %d", ErrWrongOwner, p, st.Uid, uid)
	case st.Mode&modeGroupWrite == 0:
		err = ErrMesgN
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// modeGroupWrite is the group write bit of a file mode (S_IWGRP): set by
// "mesg y", cleared by "mesg n".
const modeGroupWrite = 0o020
