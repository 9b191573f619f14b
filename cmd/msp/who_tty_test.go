//go:build linux

package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/msprelay/msprelay/internal/ptytest"
	"github.com/msprelay/msprelay/internal/testcluster"
	"github.com/msprelay/msprelay/node"
	"github.com/msprelay/msprelay/terminal"
)

// Rule (issue 9): "`msp who` shows tty terminals with their idle time
// (`--json`: `kind: "tty"`, `idle`)".
func TestWhoShowsTTYTerminals(t *testing.T) {
	t.Parallel()
	pt := ptytest.Open(t, os.Getuid(), 0o620)
	pt.SetIdle(t, 42*time.Minute)
	utmp := filepath.Join(t.TempDir(), "utmp")
	if err := terminal.WriteUtmp(utmp, []terminal.Record{{Type: terminal.UserProcess, PID: 7, Line: pt.Line, User: "root"}}); err != nil {
		t.Fatal(err)
	}
	c := testcluster.Start(t, 1, testcluster.Options{Configure: func(_ int, cfg *node.Config) {
		cfg.Terminals, cfg.Utmp, cfg.TTYPoll = true, utmp, 20*time.Millisecond
	}})
	c.WaitPresent("root", pt.Line, "n1", true)
	sess := c.Node(0).Addrs().Session

	r := runCLI(t, "", "who", "--session", sess, "--user", "carol", "--json", "root")
	var es []map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &es); r.code != 0 || err != nil {
		t.Fatalf("who --json: exit %d, %v\n%s%s", r.code, err, r.stdout, r.stderr)
	}
	if len(es) != 1 {
		t.Fatalf("who --json root = %v, want one entry", es)
	}
	idle, _ := es[0]["idle"].(float64)
	if es[0]["kind"] != "tty" || es[0]["term"] != pt.Line || es[0]["state"] != "idle" || idle < 41*60 || idle > 44*60 {
		t.Fatalf("who --json root = %v, want a tty idle about 42 minutes", es)
	}
	r = runCLI(t, "", "who", "--session", sess, "--user", "carol", "root")
	if r.code != 0 || !strings.Contains(r.stdout, "KIND") || !strings.Contains(r.stdout, " 42m") || !strings.Contains(r.stdout, "tty") {
		t.Fatalf("who root: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}
