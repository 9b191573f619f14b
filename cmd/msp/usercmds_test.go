package main

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/msprelay/msprelay/internal/testcluster"
	"github.com/msprelay/msprelay/internal/waitfor"
	"github.com/msprelay/msprelay/msp"
	"github.com/msprelay/msprelay/node"
	"github.com/msprelay/msprelay/principal"
)

// startTwoWithSockets starts two nodes, each with a session socket, and
// returns the sockets' addresses.
func startTwoWithSockets(t *testing.T) (*testcluster.Cluster, []string) {
	dir := t.TempDir()
	socks := []string{filepath.Join(dir, "1.sock"), filepath.Join(dir, "2.sock")}
	c := testcluster.Start(t, 2, testcluster.Options{Configure: func(i int, cfg *node.Config) { cfg.SessionSocket = socks[i] }})
	return c, []string{"unix:" + socks[0], "unix:" + socks[1]}
}

// me is the name the CLI signs in as on the socket: the user running the
// test.
func me(t *testing.T) string {
	u, err := toLatin1("user", loginName(env{getenv: func(string) string { return "" }}))
	if err != nil {
		t.Fatal(err)
	}
	return principal.CanonicalUser(u)
}

// Issue 20 item 4: "`msp wall` sends to every signed-in session and every
// mesg-y tty in the cluster (or one node), for root and an operator group
// only, rate limited, each recipient seeing who broadcast it; the reply
// says how many terminals on how many nodes."
func TestWall(t *testing.T) {
	t.Parallel()
	if me(t) != "root" {
		t.Skip("broadcasting through the socket needs root or the operator group; the group case is TestMayWall")
	}
	c, socks := startTwoWithSockets(t)
	alice := c.SignIn(0, "alice", "pts/1", principal.Online)
	bob := c.SignIn(1, "bob", "pts/2", principal.Online)
	c.SignIn(0, "carol", "pts/3", principal.Busy) // mesg n: not reached
	c.WaitPresent("bob", "pts/2", "n2", true)
	c.WaitPresent("carol", "pts/3", "n1", true)

	r := runCLI(t, "", "wall", "--session", socks[0], "the node restarts at five")
	if r.code != 0 || !strings.Contains(r.stdout, "broadcast to 2 terminals on 2 nodes") {
		t.Fatalf("wall: exit %d\nstdout %s\nstderr %s", r.code, r.stdout, r.stderr)
	}
	for _, cl := range []struct {
		name string
		m    func() string
	}{{"alice", func() string {
		m := recv(t, alice)
		if !m.Verified {
			t.Errorf("alice's broadcast is not verified: %+v", m)
		}
		return m.Text
	}}, {"bob", func() string { return recv(t, bob).Text }}} {
		if got := cl.m(); !strings.HasPrefix(got, "Broadcast from root@n1:\r\n") || !strings.Contains(got, "the node restarts at five") {
			t.Errorf("%s got %q, want it headed 'Broadcast from root@n1'", cl.name, got)
		}
	}
	r = runCLI(t, "", "wall", "--session", socks[0], "--node", "n2", "only n2")
	if r.code != 0 || !strings.Contains(r.stdout, "broadcast to 1 terminal on 1 node") {
		t.Fatalf("wall --node n2: exit %d\nstdout %s\nstderr %s", r.code, r.stdout, r.stderr)
	}
	if m := recv(t, bob); !strings.Contains(m.Text, "Broadcast from root@n1:\r\nonly n2") {
		t.Errorf("bob got %+v, want the broadcast", m)
	}
	// A burst of three, then one every 10 s: the fourth is refused.
	if r = runCLI(t, "", "wall", "--session", socks[0], "third"); r.code != 0 {
		t.Fatalf("third wall: exit %d %s", r.code, r.stderr)
	}
	r = runCLI(t, "", "wall", "--session", socks[0], "fourth")
	if r.code != 1 || !strings.Contains(r.stderr, "try again later") || strings.Contains(r.stderr, "291") {
		t.Errorf("fourth wall: exit %d, stderr %q; want 1, 'try again later' and no code", r.code, r.stderr)
	}
	// Over TCP the node cannot tell who is there: refused.
	r = runCLI(t, "", "wall", "--session", c.Node(0).Addrs().Session, "over tcp")
	if r.code != 1 || !strings.Contains(r.stderr, "local session socket") {
		t.Errorf("wall over TCP: exit %d, stderr %q; want 1 and 'local session socket'", r.code, r.stderr)
	}
	if r = runCLI(t, "", "wall", "--session", socks[0], "  "); r.code != 2 {
		t.Errorf("empty wall: exit %d, want 2", r.code)
	}
}

// Issue 20 item 4: "`msp mesg y|n` and `msp state online|busy|away|hidden`
// change the user's own terminals on her node while they run".
func TestMesgAndStateChangeRunningSessions(t *testing.T) {
	t.Parallel()
	c, sock := startWithSocket(t)
	user := me(t)
	c.SignIn(0, user, "pts/11", principal.Online)
	c.SignIn(0, user, "pts/12", principal.Away)
	c.SignIn(0, "other", "pts/13", principal.Online)
	c.WaitPresent(user, "pts/12", "n1", true)
	c.WaitPresent("other", "pts/13", "n1", true)
	states := func(u string) map[string]string {
		out := map[string]string{}
		r := runCLI(t, "", "who", "--session", sock, "--json", u)
		var es []map[string]any
		if err := json.Unmarshal([]byte(r.stdout), &es); err != nil {
			t.Fatalf("who: %v %s %s", err, r.stdout, r.stderr)
		}
		for _, e := range es {
			out[e["term"].(string)] = e["state"].(string)
		}
		return out
	}
	cases := []struct {
		args []string
		want string
		out  string
	}{
		{[]string{"mesg", "n"}, "busy", "mesg n: 2 sessions"},
		{[]string{"mesg", "y"}, "online", "mesg y: 2 sessions"},
		{[]string{"state", "away"}, "away", "state away: 2 sessions"},
		{[]string{"state", "online"}, "online", "state online: 2 sessions"},
	}
	for _, tc := range cases {
		r := runCLI(t, "", append([]string{tc.args[0], "--session", sock}, tc.args[1:]...)...)
		if r.code != 0 || !strings.Contains(r.stdout, tc.out) {
			t.Fatalf("%v: exit %d\nstdout %s\nstderr %s", tc.args, r.code, r.stdout, r.stderr)
		}
		waitfor.True(t, 5*time.Second, "states "+tc.want, func() bool {
			s := states(user)
			return s["pts/11"] == tc.want && s["pts/12"] == tc.want
		})
		if s := states("other"); s["pts/13"] != "online" {
			t.Fatalf("%v changed another user's session: %v", tc.args, s)
		}
	}
	if r := runCLI(t, "", "state", "--session", sock, "offline"); r.code != 2 {
		t.Errorf("state offline: exit %d, want 2", r.code)
	}
	// Over TCP in trust mode the name is a claim: refused.
	if r := runCLI(t, "", "state", "--session", c.Node(0).Addrs().Session, "busy"); r.code != 1 || strings.Contains(r.stderr, "292") {
		t.Errorf("state over trust TCP: exit %d, stderr %q; want 1 without a code", r.code, r.stderr)
	}
}

// Issue 20 item 4: "`msp block|unblock|blocks USER`, kept cluster-wide
// across sign-ins".
func TestBlockKeptAcrossSignInsAndNodes(t *testing.T) {
	t.Parallel()
	c, socks := startTwoWithSockets(t)
	user := me(t)
	running := c.SignIn(0, user, "pts/21", principal.Online)
	c.SignIn(0, "mallory", "pts/22", principal.Online) // known to the cluster
	c.WaitPresent(user, "pts/21", "n1", true)
	send := func(node int, from string) msp.Reply {
		t.Helper()
		r, err := c.Send(node, "tcp", &msp.Message{Version: msp.Version2, Recipient: user, Text: "hi from " + from, Sender: from, Cookie: msp.NewCookie()})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	if r := runCLI(t, "", "block", "--session", socks[0], "mallory"); r.code != 0 || !strings.Contains(r.stdout, "blocked mallory") {
		t.Fatalf("block: exit %d %s %s", r.code, r.stdout, r.stderr)
	}
	if r := runCLI(t, "", "block", "--session", socks[0], "mallory"); r.code != 1 || !strings.Contains(r.stderr, "mallory is already in your list") {
		t.Errorf("block twice: exit %d, stderr %q", r.code, r.stderr)
	}
	// The session that was running takes the block at once.
	if r := send(0, "mallory"); r.OK {
		t.Errorf("mallory reached the running session after the block: %+v", r)
	}
	if r := send(0, "trent"); !r.OK {
		t.Errorf("trent was refused: %+v", r)
	}
	if m := recv(t, running); m.Sender != "trent" {
		t.Errorf("got %+v, want trent's message", m)
	}
	running.Close()
	c.WaitPresent(user, "pts/21", "n1", false)
	// A later sign-in on the other node holds the block as well.
	later := c.SignIn(1, user, "pts/23", principal.Online)
	c.WaitPresent(user, "pts/23", "n2", true)
	if r := send(1, "mallory"); r.OK {
		t.Errorf("mallory reached a later sign-in on n2: %+v", r)
	}
	if r := runCLI(t, "", "blocks", "--session", socks[1]); r.code != 0 || strings.TrimSpace(r.stdout) != "mallory" {
		t.Errorf("blocks on n2: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	if r := runCLI(t, "", "unblock", "--session", socks[1], "mallory"); r.code != 0 {
		t.Fatalf("unblock: exit %d %s", r.code, r.stderr)
	}
	if r := send(1, "mallory"); !r.OK {
		t.Errorf("mallory still refused after unblock: %+v", r)
	}
	if m := recv(t, later); m.Sender != "mallory" {
		t.Errorf("got %+v, want mallory's message", m)
	}
	if r := runCLI(t, "", "blocks", "--session", socks[0]); r.code != 0 || strings.TrimSpace(r.stdout) != "" {
		t.Errorf("blocks after unblock: %q", r.stdout)
	}
	if r := runCLI(t, "", "unblock", "--session", socks[0], "mallory"); r.code != 1 || !strings.Contains(r.stderr, "not in your list") {
		t.Errorf("unblock twice: exit %d, stderr %q", r.code, r.stderr)
	}
}

// Issue 20 item 4: "`msp alias add|del|list`".
func TestAliasOnRunningSessions(t *testing.T) {
	t.Parallel()
	c, sock := startWithSocket(t)
	user := me(t)
	if r := runCLI(t, "", "alias", "--session", sock, "add", "nobodyhere"); r.code != 1 || !strings.Contains(r.stderr, "start msp listen first") {
		t.Errorf("alias without a running session: exit %d, stderr %q", r.code, r.stderr)
	}
	running := c.SignIn(0, user, "pts/31", principal.Online)
	c.WaitPresent(user, "pts/31", "n1", true)
	if r := runCLI(t, "", "alias", "--session", sock, "add", "opsdesk"); r.code != 0 || !strings.Contains(r.stdout, "1 session") {
		t.Fatalf("alias add: exit %d %s %s", r.code, r.stdout, r.stderr)
	}
	if r := runCLI(t, "", "alias", "--session", sock, "list"); strings.TrimSpace(r.stdout) != "opsdesk" {
		t.Errorf("alias list: %q %s", r.stdout, r.stderr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := (&msp.Client{}).Send(ctx, c.MSPAddr(0), &msp.Message{Version: msp.Version2, Recipient: "opsdesk", Text: "to the alias", Sender: "bob", Cookie: msp.NewCookie()})
	if err != nil || !r.OK {
		t.Fatalf("send to the alias: %+v %v", r, err)
	}
	if m := recv(t, running); m.Text != "to the alias" {
		t.Errorf("got %+v", m)
	}
	if r := runCLI(t, "", "alias", "--session", sock, "add", "root"); user != "root" && (r.code != 1 || strings.Contains(r.stderr, "208")) {
		t.Errorf("alias add root: exit %d, stderr %q; want 1 without a code", r.code, r.stderr)
	}
	if r := runCLI(t, "", "alias", "--session", sock, "del", "opsdesk"); r.code != 0 {
		t.Fatalf("alias del: exit %d %s", r.code, r.stderr)
	}
	if r := runCLI(t, "", "alias", "--session", sock, "list"); strings.TrimSpace(r.stdout) != "" {
		t.Errorf("alias list after del: %q", r.stdout)
	}
}
