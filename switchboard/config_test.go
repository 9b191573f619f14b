package switchboard_test

import (
	"strings"
	"testing"
	"time"

	"github.com/msprelay/msprelay/presence"
	"github.com/msprelay/msprelay/switchboard"
)

// Issue 19: "zero means default, negative means off only where the
// field's doc says so, ... never silently rewritten": a negative timeout
// used to become its default.
func TestConfigNegativeRefusedUnlessOff(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		field  string
		modify func(*switchboard.Config)
		ok     bool
	}{
		{"ForwardTimeout", func(c *switchboard.Config) { c.ForwardTimeout = -time.Second }, false},
		{"AckTimeout", func(c *switchboard.Config) { c.AckTimeout = -time.Second }, false},
		{"DedupWindow", func(c *switchboard.Config) { c.DedupWindow = -time.Second }, false},
		{"MaxServing", func(c *switchboard.Config) { c.MaxServing = -1 }, false},
		{"InboundBurst", func(c *switchboard.Config) { c.InboundBurst = -1 }, false},
		{"InboundRate", func(c *switchboard.Config) { c.InboundRate = -1 }, true}, // doc: negative turns it off
		{"zero is the default", func(*switchboard.Config) {}, true},
	} {
		dir, err := presence.New(presence.Config{Name: "n1"})
		if err != nil {
			t.Fatal(err)
		}
		cfg := switchboard.Config{Directory: dir}
		tc.modify(&cfg)
		sb, err := switchboard.New(cfg)
		switch {
		case tc.ok && err != nil:
			t.Errorf("%s: %v", tc.field, err)
		case !tc.ok && (err == nil || !strings.Contains(err.Error(), tc.field)):
			t.Errorf("%s: err = %v, want one naming the field", tc.field, err)
		}
		if sb != nil {
			sb.Close()
		}
		dir.Close()
	}
}
