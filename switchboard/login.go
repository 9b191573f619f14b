package switchboard

import (
	"errors"
	"fmt"
	"time"

	"github.com/msprelay/msprelay/principal"
)

// LoginTerminal is a Terminal that is a host login's terminal device
// rather than a session (package terminal implements it). The switchboard
// publishes its entries with its Kind and words its results its way, so
// that replies say "delivered to bob at pts/0 on hosta (terminal)" and a
// refusal names the reason the tty gives ("mesg n").
type LoginTerminal interface {
	Terminal
	// Kind is the presence kind of the terminal's entry (principal.KindTTY).
	Kind() principal.Kind
	// DeliveredNote is the note a Delivered result carries ("terminal").
	DeliveredNote() string
	// BusyReason is the refusal reason while the line's state is Busy.
	BusyReason() string
}

func kindOf(t Terminal) principal.Kind {
	if lt, ok := t.(LoginTerminal); ok {
		return lt.Kind()
	}
	return principal.KindSession
}

// deliveredNote is the note a Delivered result carries for t, as its Err
// (see Result): nil for a session.
func deliveredNote(t Terminal) error {
	if lt, ok := t.(LoginTerminal); ok {
		if n := lt.DeliveredNote(); n != "" {
			return errors.New(n)
		}
	}
	return nil
}

// busyErr is the refusal of a Busy line: ErrBusy, worded the terminal's way
// ("not accepting messages (mesg n)") when it has one.
func busyErr(t Terminal) error {
	if lt, ok := t.(LoginTerminal); ok {
		if r := lt.BusyReason(); r != "" {
			return &reasonError{reason: r, err: ErrBusy}
		}
	}
	return ErrBusy
}

// reasonError is a sentinel error with the wording a terminal chose.
type reasonError struct {
	reason string
	err    error
}

func (e *reasonError) Error() string { return e.reason }
func (e *reasonError) Unwrap() error { return e.err }

// SetActivity sets the line's state and last-active time as observed from
// outside the switchboard: a login's tty reports its idle time from the
// device's access time. Unlike SetState it does not count the change itself
// as activity, so a terminal turning idle does not become the most recent.
func (l *Line) SetActivity(st principal.State, lastActive time.Time) error {
	if st == principal.Offline {
		return fmt.Errorf("switchboard: set activity: %w", principal.ErrBadState)
	}
	err := l.update(func(e *principal.Entry) error {
		e.State = st
		e.LastActive = lastActive
		return nil
	})
	if err == nil && st != principal.Busy {
		l.sb.mbox.Wake(l.user) // she may take her queued messages now
	}
	return err
}
