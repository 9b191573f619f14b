package main

import (
	"context"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/msprelay/msprelay/node"
	"github.com/msprelay/msprelay/principal"
	"github.com/msprelay/msprelay/sessionclient"
)

// Issue 20: "a raw-protocol example that works without nc -q1". The
// README's example, exactly as printed but for the node's address, runs in
// bash against a real node and delivers.
func TestREADMERawProtocolExample(t *testing.T) {
	t.Parallel()
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skipf("no bash: %v", err)
	}
	readme, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)```bash\n(exec 3<>/dev/tcp/localhost/18 .*?)```").FindSubmatch(readme)
	if m == nil {
		t.Fatal("README has no bash block opening /dev/tcp/localhost/18")
	}
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	cfg := node.DefaultConfig()
	cfg.Name, cfg.MSPAddr, cfg.DataDir = "readme", "127.0.0.1:0", t.TempDir()
	cfg.SessionSocket, cfg.SessionAddr, cfg.SessionAuth = "", "127.0.0.1:0", node.AuthTrust
	cfg.Terminals = false
	cfg.Logger = slog.New(slog.DiscardHandler)
	n, err := node.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := n.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	cl, err := sessionclient.Dial(ctx, n.Addrs().Session)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if _, err := cl.SignIn(ctx, me.Username, "pts/9", principal.Online); err != nil {
		t.Fatal(err)
	}
	host, port, _ := net.SplitHostPort(n.Addrs().MSP)
	script := strings.ReplaceAll(string(m[1]), "/dev/tcp/localhost/18", "/dev/tcp/"+host+"/"+port)
	cmd := exec.CommandContext(ctx, bash, "--norc", "-c", script)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the README's example: %v\n%s", err, out)
	}
	if !strings.HasPrefix(string(out), "+") {
		t.Fatalf("the README's example printed %q, want a positive reply", out)
	}
	select {
	case msg := <-cl.Messages():
		if msg == nil || msg.Text != "hello" || msg.Sender != "bob" {
			t.Fatalf("delivered %+v, want hello from bob", msg)
		}
	case <-ctx.Done():
		t.Fatal("the README's message was not delivered")
	}
}
