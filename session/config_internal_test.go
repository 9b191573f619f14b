package session

import (
	"strings"
	"testing"
	"time"
)

// Issue 19: "negative means off only where the field's doc says so ...
// never silently rewritten" (--max-sessions -1 used to become 1024).
func TestConfigNegativeRefusedUnlessOff(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		field  string
		modify func(*Config)
		ok     bool
	}{
		{"IdleTimeout", func(c *Config) { c.IdleTimeout = -time.Second }, false},
		{"MaxSessions", func(c *Config) { c.MaxSessions = -1 }, false},
		{"MaxPending", func(c *Config) { c.MaxPending = -1 }, false},
		{"FailedSignInBurst", func(c *Config) { c.FailedSignInBurst = -1 }, false},
		{"OutQueue", func(c *Config) { c.OutQueue = -1 }, false},
		{"FailedSignInRate", func(c *Config) { c.FailedSignInRate = -1 }, true}, // doc: no limit
		{"QueueWait", func(c *Config) { c.QueueWait = -1 }, true},               // doc: refuse at once
		{"defaults", func(*Config) {}, true},
	} {
		c := DefaultConfig()
		tc.modify(&c)
		err := c.checkNumbers()
		switch {
		case tc.ok && err != nil:
			t.Errorf("%s: %v", tc.field, err)
		case !tc.ok && (err == nil || !strings.Contains(err.Error(), tc.field)):
			t.Errorf("%s: err = %v, want one naming the field", tc.field, err)
		}
	}
}
