package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/msprelay/msprelay/internal/flagtable"
	"github.com/msprelay/msprelay/node"
)

// Issue 19: "--max-conns -1 silently becomes 10000, --max-sessions -1
// 1024, negative timeouts their defaults": a negative value where the
// flag's doc does not say off is refused, naming the flag and the range.
func TestNegativeFlagRefusedNamingFlagAndRange(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ flag, value string }{
		{"max-conns", "-1"},
		{"max-sessions", "-1"},
		{"max-pending-sessions", "-1"},
		{"idle-timeout", "-1s"},
		{"msp-read-timeout", "-1s"},
		{"session-idle", "-1s"},
		{"deliver-timeout", "-1s"},
		{"ack-timeout", "-1s"},
		{"dedup-window", "-1s"},
		{"mailbox-max", "-1"},
		{"mailbox-age", "-1h"},
		{"mailbox-replicas", "-1"},
		{"mailbox-replicas", "6"},
		{"mailbox-ack-wait", "-1s"},
		{"msp-rate-burst", "-1"},
		{"session-fail-burst", "-1"},
		{"session-inbound-burst", "-1"},
		{"session-ack-window", "-1"},
		{"conversation-history", "-1"},
		{"conversation-idle", "-1m"},
		{"tty-idle", "-1m"},
	} {
		t.Run(tc.flag+"="+tc.value, func(t *testing.T) {
			t.Parallel()
			var stderr bytes.Buffer
			if code := run([]string{"--data", t.TempDir(), "--msp", "127.0.0.1:0", "--session-socket", "", "--" + tc.flag, tc.value}, &stderr); code != 2 {
				t.Fatalf("exit %d, want 2 (stderr %q)", code, stderr.String())
			}
			out := stderr.String()
			if !strings.Contains(out, "--"+tc.flag+":") || !strings.Contains(out, "want ") || !strings.Contains(out, "0 for the default") {
				t.Errorf("stderr %q does not name --%s and its valid range", out, tc.flag)
			}
		})
	}
}

// Every setting node.New may refuse by its field name has a flag, so that
// the user is told which flag to change (the hand-kept switch this
// replaced missed most numbers).
func TestEveryRangedFieldHasAFlag(t *testing.T) {
	t.Parallel()
	// Settings for tests and embedders, not for the command line.
	libraryOnly := map[string]bool{"TTYPoll": true}
	for field := range node.Ranges() {
		if flagtable.Node.FlagFor(field) == "" && !libraryOnly[field] {
			t.Errorf("node.Config.%s has a range but no flag", field)
		}
	}
}
