package node

import (
	"errors"
	"fmt"

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
	return nil
}
