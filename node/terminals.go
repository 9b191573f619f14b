package node

import (
	"fmt"

	"github.com/msprelay/msprelay/terminal"
)

// validateTerminals checks the tty settings (--terminals, --utmp,
// --tty-idle, --tty-charset).
func (c *Config) validateTerminals() error {
	if !c.Terminals {
		return nil
	}
	if c.Utmp == "" {
		return fmt.Errorf("%w: --utmp is empty (use --terminals=off to disable tty terminals)", ErrConfig)
	}
	if c.TTYIdle < 0 || c.TTYPoll < 0 {
		return fmt.Errorf("%w: --tty-idle must not be negative", ErrConfig)
	}
	if _, err := terminal.ParseCharset(c.TTYCharset); err != nil {
		return fmt.Errorf("%w: --tty-charset: %v", ErrConfig, err)
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
