package mailbox

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// Issue 19: "--mailbox-max -1 is refused although README/SECURITY.md say
// negative turns a limit off": the docs now say which limits a negative
// value turns off (the per-sender share, the stream's bytes); the others
// are refused, never rewritten to their default.
func TestConfigNegativeRefusedUnlessOff(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		field  string
		modify func(*Config)
		ok     bool
	}{
		{"MaxPerUser", func(c *Config) { c.MaxPerUser = -1 }, false},
		{"MaxAge", func(c *Config) { c.MaxAge = -time.Hour }, false},
		{"AckWait", func(c *Config) { c.AckWait = -time.Second }, false},
		{"DuplicateWindow", func(c *Config) { c.DuplicateWindow = -time.Second }, false},
		{"MaxPerSender", func(c *Config) { c.MaxPerSender = -1 }, true},
		{"MaxBytes", func(c *Config) { c.MaxBytes = -1 }, true},
		{"SweepEvery", func(c *Config) { c.SweepEvery = -1 }, true},
		{"defaults", func(*Config) {}, true},
	} {
		c := DefaultConfig()
		tc.modify(&c)
		err := c.checkNumbers()
		switch {
		case tc.ok && err != nil:
			t.Errorf("%s: %v", tc.field, err)
		case !tc.ok && (!errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tc.field)):
			t.Errorf("%s: err = %v, want ErrConfig naming the field", tc.field, err)
		}
	}
}
