package main

import (
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// TestCLILinksNoServer checks issue 19's rule for the client: "`go list
// -deps ./cmd/msp` lists no nats-server, memberlist, JetStream or
// Prometheus package". The CLI reaches the server through the session
// protocol and the ops API only, so it links their leaf packages
// (sessionclient, sessionproto, sessionsock, principal, opsapi), never the
// server's.
func TestCLILinksNoServer(t *testing.T) {
	t.Parallel()
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	out, err := exec.Command(goTool, "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	deps := strings.Fields(string(out))
	if len(deps) == 0 {
		t.Fatal("go list -deps listed nothing")
	}
	forbidden := []struct{ rule, part string }{
		{"no nats-server", "github.com/nats-io/nats-server"},
		{"no NATS client", "github.com/nats-io/nats.go"},
		{"no JetStream", "jetstream"},
		{"no memberlist", "github.com/hashicorp/memberlist"},
		{"no Prometheus", "github.com/prometheus/"},
		{"not the session server", "github.com/msprelay/msprelay/session"},
		{"not the presence directory", "github.com/msprelay/msprelay/presence"},
		{"not the ops server", "github.com/msprelay/msprelay/ops"},
		{"not the node", "github.com/msprelay/msprelay/node"},
		{"not the switchboard", "github.com/msprelay/msprelay/switchboard"},
		{"not the conversation store", "github.com/msprelay/msprelay/conversation"},
		{"not the mailbox", "github.com/msprelay/msprelay/mailbox"},
	}
	for _, f := range forbidden {
		for _, d := range deps {
			// A forbidden msprelay package is matched whole, so that
			// sessionclient does not count as session.
			if d == f.part || strings.HasPrefix(d, f.part+"/") ||
				(!strings.HasPrefix(f.part, "github.com/msprelay/") && strings.Contains(d, f.part)) {
				t.Errorf("%s: msp links %s", f.rule, d)
			}
		}
	}
}
