package node

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/msprelay/msprelay/terminal"
)

// validateTerminals checks the tty settings; their numbers are checked
// with the others (Config.numbers).
func (c *Config) validateTerminals() error {
	if !c.Terminals {
		return nil
	}
	if c.Utmp == "" {
		return &FieldError{Field: "Utmp", Err: errors.New("empty: tty terminals need a utmp file (or turn terminals off)"), Fix: []string{"Terminals"}, refused: true}
	}
	if _, err := terminal.ParseCharset(c.TTYCharset); err != nil {
		return &FieldError{Field: "TTYCharset", Err: err, refused: true}
	}
	return nil
}

// utmpMissing reports whether tty terminals are on but their utmp file is
// not there: then no login is ever published nor written to, which issue
// 20 found happening "without a word".
func (n *Node) utmpMissing() bool {
	if !n.cfg.Terminals {
		return false
	}
	_, err := os.Stat(n.cfg.Utmp)
	return errors.Is(err, fs.ErrNotExist)
}

// warnings are the settings that keep part of a running node from working,
// for the status page and `msp status`.
func (n *Node) warnings() []string {
	var w []string
	if n.utmpMissing() {
		w = append(w, fmt.Sprintf("utmp file %s missing: no tty terminals", n.cfg.Utmp))
	}
	return w
}

// startTerminals signs the host's logins in to the switchboard as tty
// terminals and keeps them current. The node owns the Service and closes it
// before the switchboard.
func (n *Node) startTerminals() error {
	if !n.cfg.Terminals {
		return nil
	}
	cs, err := terminal.ParseCharset(n.cfg.TTYCharset)
	if err != nil {
		return fmt.Errorf("node: terminals: %w", err)
	}
	svc, err := terminal.New(terminal.Config{
		Switchboard: n.sb,
		Utmp:        n.cfg.Utmp,
		DevDir:      n.cfg.TTYDevDir,
		Idle:        n.cfg.TTYIdle,
		Charset:     cs,
		Poll:        n.cfg.TTYPoll,
		// A write must end well within the ingress node's deadline.
		WriteTimeout: min(n.cfg.DeliverTimeout/4, terminal.DefaultWriteTimeout),
		Logger:       n.log.With("component", "terminals"),
	})
	if err != nil {
		return fmt.Errorf("node: terminals: %w", err)
	}
	if err := svc.Start(); err != nil {
		return fmt.Errorf("node: terminals: %w", err)
	}
	n.terms = svc
	if n.utmpMissing() {
		n.log.Warn("utmp file missing: no tty terminals are published or written to until it appears (--utmp names another file; --terminals off turns this off)",
			"utmp", n.cfg.Utmp)
	}
	return nil
}
