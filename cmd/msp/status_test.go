package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/msprelay/msprelay/internal/syncbuf"

	"github.com/msprelay/msprelay/internal/testcluster"
	"github.com/msprelay/msprelay/node"
	"github.com/msprelay/msprelay/opsapi"
	"github.com/msprelay/msprelay/principal"
)

func httpCluster(t *testing.T, n int, tokenFile string) *testcluster.Cluster {
	return testcluster.Start(t, n, testcluster.Options{Configure: func(_ int, cfg *node.Config) {
		cfg.HTTPAddr = "127.0.0.1:0"
		cfg.HTTPTokenFile = tokenFile
		cfg.Version = "v-test"
	}})
}

// Issue 10: "msp status: the cluster's nodes, their health and versions,
// from any node, with --json".
func TestStatusListsEveryNodeFromAnyNode(t *testing.T) {
	t.Parallel()
	tok := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tok, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := httpCluster(t, 2, tok)
	for i := range 2 {
		url := "http://" + c.Node(i).HTTPAddr()
		r := runCLI(t, "", "status", "--url", url, "--token-file", tok, "--json")
		if r.code != exitOK {
			t.Fatalf("status via %s: exit %d: %s", c.Name(i), r.code, r.stderr)
		}
		var nodes []opsapi.NodeStatus
		if err := json.Unmarshal([]byte(r.stdout), &nodes); err != nil {
			t.Fatal(err)
		}
		if len(nodes) != 2 || nodes[0].Name != "n1" || nodes[1].Name != "n2" || !nodes[i].Self {
			t.Fatalf("status via %s: %+v", c.Name(i), nodes)
		}
		for _, n := range nodes {
			if n.Status != "ready" || n.Version != "v-test" {
				t.Fatalf("node %+v: want ready v-test", n)
			}
		}
		r = runCLI(t, "", "status", "--url", url, "--token-file", tok)
		if r.code != exitOK || !strings.Contains(r.stdout, "NODE") || !strings.Contains(r.stdout, "v-test") {
			t.Fatalf("table: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
	}
	// Without the token the API refuses, and msp says so with exit 2.
	r := runCLI(t, "", "status", "--url", "http://"+c.Node(0).HTTPAddr())
	if r.code != exitUsage || !strings.Contains(r.stderr, "401") {
		t.Fatalf("no token: exit %d, stderr %q", r.code, r.stderr)
	}
	// A node that leaves gracefully drops out of the list.
	c.Stop(1)
	testcluster.WaitFor(t, 20*time.Second, "n2 gone from msp status", func() bool {
		r := runCLI(t, "", "status", "--url", "http://"+c.Node(0).HTTPAddr(), "--token-file", tok, "--json")
		var nodes []opsapi.NodeStatus
		return r.code == exitOK && json.Unmarshal([]byte(r.stdout), &nodes) == nil && len(nodes) == 1 && nodes[0].Name == "n1"
	})
}

// Issue 10, done when: "the API returns the same as `msp who --json`"
// (and neither shows hidden users).
func TestAPIWhoIsMspWhoJSON(t *testing.T) {
	t.Parallel()
	c := httpCluster(t, 2, "")
	c.SignIn(0, "alice", "pts/1", principal.Online)
	c.SignIn(1, "alice", "pts/2", principal.Busy)
	c.SignIn(1, "root", "console", principal.Away)
	c.SignIn(0, "carol", "pts/3", principal.Hidden)
	for _, p := range [][3]string{{"alice", "pts/1", "n1"}, {"alice", "pts/2", "n2"}, {"root", "console", "n2"}, {"carol", "pts/3", "n1"}} {
		c.WaitPresent(p[0], p[1], p[2], true)
	}
	cli := runCLI(t, "", "who", "--json", "--session", c.Node(1).Addrs().Session, "--user", "viewer")
	if cli.code != exitOK {
		t.Fatalf("msp who: exit %d: %s", cli.code, cli.stderr)
	}
	resp, err := http.Get("http://" + c.Node(0).HTTPAddr() + "/api/v1/who")
	if err != nil {
		t.Fatal(err)
	}
	api, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(api) != cli.stdout {
		t.Fatalf("API and msp who --json differ:\nAPI:\n%s\nmsp who --json:\n%s", api, cli.stdout)
	}
	if strings.Contains(string(api), "carol") {
		t.Fatalf("hidden carol in the API:\n%s", api)
	}
	var who []opsapi.WhoEntry
	if err := json.Unmarshal(api, &who); err != nil || len(who) != 3 {
		t.Fatalf("who = %+v (%v), want 3 terminals", who, err)
	}
}

// Issue 20: "a single node with gossip off reports 'presence not synced'
// as a problem", "a missing utmp file is ignored without a word", and `msp
// status` shows each node's address.
func TestStatusSaysGossipOffAndUtmpMissing(t *testing.T) {
	t.Parallel()
	utmp := filepath.Join(t.TempDir(), "no-such-utmp")
	cfg := node.DefaultConfig()
	cfg.Name, cfg.MSPAddr, cfg.SessionSocket, cfg.DataDir = "solo", "127.0.0.1:0", "", t.TempDir()
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.Terminals, cfg.Utmp, cfg.TTYDevDir = true, utmp, t.TempDir()
	var logs syncbuf.Buffer
	cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	nd, err := node.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := nd.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer nd.Close()
	if !strings.Contains(logs.String(), "level=WARN msg=\"utmp file missing") || !strings.Contains(logs.String(), utmp) {
		t.Errorf("no warning about the missing utmp file at start:\n%s", logs.String())
	}
	url := "http://" + nd.HTTPAddr()
	r := runCLI(t, "", "status", "--url", url, "--json")
	var nodes []opsapi.NodeStatus
	if err := json.Unmarshal([]byte(r.stdout), &nodes); err != nil || len(nodes) != 1 {
		t.Fatalf("status --json: %v\n%s%s", err, r.stdout, r.stderr)
	}
	if nodes[0].MSP == "" || nodes[0].MSP != nd.Addrs().MSP {
		t.Errorf("msp address %q, want %q", nodes[0].MSP, nd.Addrs().MSP)
	}
	if len(nodes[0].Warnings) != 1 || !strings.Contains(nodes[0].Warnings[0], utmp) {
		t.Errorf("warnings %q, want one naming %s", nodes[0].Warnings, utmp)
	}
	r = runCLI(t, "", "status", "--url", url)
	if r.code != exitOK {
		t.Fatalf("status: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	for _, want := range []string{nd.Addrs().MSP, "not applicable", "utmp file " + utmp + " missing"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("table does not show %q:\n%s", want, r.stdout)
		}
	}
	if strings.Contains(r.stdout, "not synced") {
		t.Errorf("gossip off shown as a problem:\n%s", r.stdout)
	}
	// The status page says the same.
	resp, err := http.Get(url + "/")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"not applicable", "utmp file " + utmp + " missing", nd.Addrs().MSP} {
		if !strings.Contains(string(page), want) {
			t.Errorf("status page does not show %q", want)
		}
	}
}
