//go:build linux

package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/msprelay/msprelay/internal/ptytest"
	"github.com/msprelay/msprelay/terminal"
)

// TestTTYLoginVisibleAcrossHosts checks issue 9 across real processes and
// hosts: "a login on host B visible from host A", and a message sent to
// host A's MSP server written to that login's terminal on host B.
func TestTTYLoginVisibleAcrossHosts(t *testing.T) {
	t.Parallel()
	l := newLab(t, "w")
	hs := l.addHosts("rw", "ha", "hb")
	relays := []string{l.startRelay(hs[0]).url()}
	utmp := filepath.Join(t.TempDir(), "utmp")
	if err := terminal.WriteUtmp(utmp, nil); err != nil {
		t.Fatal(err)
	}
	seeds := gossipSeeds(hs[1:]...)
	a := l.startNode(hs[1], relays, seeds)
	l.startNode(hs[2], relays, seeds, "--terminals=on", "--utmp", utmp)

	pt := ptytest.Open(t, os.Getuid(), 0o620)
	if err := terminal.WriteUtmp(utmp, []terminal.Record{{Type: terminal.UserProcess, PID: 1, Line: pt.Line, User: "root", Time: time.Now()}}); err != nil {
		t.Fatal(err)
	}
	d := l.waitWho(a, "root", "root@hb/"+pt.Line+"/online")
	t.Logf("root's login on hb visible on ha after %v", d.Round(time.Millisecond))

	l.mustSend(a.host, a, "delivered to root at "+pt.Line+" on hb (terminal)", "root", "hello from ha")
	got := pt.ReadUntil(t, "EOF\r\n", 10*time.Second)
	// Unauthenticated MSP from another host: the banner says so and where
	// it came from (issue 18).
	if !strings.Contains(got, `Message from UNVERIFIED "carol" (via ha from `) || !strings.Contains(got, ") on pts/9 at ") ||
		!strings.HasSuffix(got, " ...\r\nhello from ha\r\nEOF\r\n") {
		t.Fatalf("terminal on hb shows %q", got)
	}
}
