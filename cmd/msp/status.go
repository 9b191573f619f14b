package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/msprelay/msprelay/opsapi"
)

// defaultStatusURL is where `msp status` looks for a node's HTTP endpoint
// when neither --url nor MSPRELAY_HTTP_URL says otherwise: the port the
// README suggests for --http.
const defaultStatusURL = "http://127.0.0.1:9180"

// maxStatusBody bounds the API answer msp status reads.
const maxStatusBody = 4 << 20

// cmdStatus asks one node's HTTP API (/api/v1/nodes) for the status of
// every node in the cluster. It uses the HTTP API rather than the session
// protocol: the API is what operators and monitoring already reach, it
// needs no sign-in as a user, and the node gathers the other nodes'
// answers over NATS. Exit status: 0 when every node is ready, 1 when one
// is not (or is unreachable), 2 on usage errors or when the API cannot be
// asked.
func cmdStatus(ctx context.Context, args []string, e env) int {
	fs := newFlags("status", "[flags]\n\nShows the cluster's nodes, their readiness and versions, as one node's HTTP endpoint (node --http) sees them.", e)
	def := e.getenv("MSPRELAY_HTTP_URL")
	if def == "" {
		def = defaultStatusURL
	}
	url := fs.String("url", def, "base URL of a node's HTTP endpoint (env MSPRELAY_HTTP_URL)")
	tokenFile := fs.String("token-file", e.getenv("MSPRELAY_HTTP_TOKEN_FILE"), "file holding the endpoint's token, when the node has --http-token-file (env MSPRELAY_HTTP_TOKEN_FILE)")
	timeout := fs.Duration("timeout", 10*time.Second, "bound on the request")
	asJSON := fs.Bool("json", false, "print the nodes as a JSON array")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if fs.NArg() > 0 {
		return fail(e, exitUsage, "status takes no arguments")
	}
	base := strings.TrimRight(*url, "/")
	if !strings.HasPrefix(base, "http://") && !strings.HasPrefix(base, "https://") {
		return fail(e, exitUsage, "--url %q: want http://HOST:PORT or https://HOST:PORT", *url)
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/api/v1/nodes", nil)
	if err != nil {
		return fail(e, exitUsage, "--url %q: %v", *url, err)
	}
	if *tokenFile != "" {
		b, err := os.ReadFile(*tokenFile)
		if err != nil {
			return fail(e, exitUsage, "token: %v", err)
		}
		tok, _, _ := strings.Cut(string(b), "\n")
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(tok))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fail(e, exitUsage, "status: %v (is the node running with --http?)", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxStatusBody))
	if err != nil {
		return fail(e, exitUsage, "status: reading the answer: %v", err)
	}
	if resp.StatusCode != http.StatusOK {
		var ae struct {
			Error string `json:"error"`
		}
		_ = json.Unmarshal(body, &ae)
		return fail(e, exitUsage, "status: %s: HTTP %d %s", base, resp.StatusCode, ae.Error)
	}
	var nodes []opsapi.NodeStatus
	if err := json.Unmarshal(body, &nodes); err != nil {
		return fail(e, exitUsage, "status: %s did not answer with a node list: %v", base, err)
	}
	code := exitOK
	for _, n := range nodes {
		if n.Status != "ready" {
			code = exitNack
		}
	}
	if *asJSON {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(nodes); err != nil {
			return fail(e, exitUsage, "writing output: %v", err)
		}
		return code
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tSTATUS\tVERSION\tMSP\tTERMINALS\tGOSSIP\tUP\tPROBLEMS")
	for _, n := range nodes {
		name := n.Name
		if n.Self {
			name += "*"
		}
		up := ""
		if n.StartedAt != nil {
			up = time.Since(*n.StartedAt).Truncate(time.Second).String()
		}
		var problems []string
		if n.Error != "" {
			problems = append(problems, n.Error)
		}
		for check, v := range n.Checks {
			if v != "ok" {
				problems = append(problems, check+": "+v)
			}
		}
		problems = append(problems, n.Warnings...)
		// A node that does not gossip has no presence to sync (issue 20:
		// a single node with gossip off was listed with a problem).
		gossip := "not applicable"
		switch {
		case n.Gossip != "" && n.Synced:
			gossip = "synced"
		case n.Gossip != "":
			gossip = "syncing"
			if n.Reachable {
				problems = append(problems, "presence not synced")
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\n", name, n.Status, orDash(n.Version), orDash(n.MSP), n.Principals, gossip, orDash(up), orDash(strings.Join(problems, "; ")))
	}
	tw.Flush()
	return code
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
