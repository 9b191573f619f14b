package node_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/msprelay/msprelay/internal/syncbuf"
	"github.com/msprelay/msprelay/internal/testcluster"
	"github.com/msprelay/msprelay/msp"
	"github.com/msprelay/msprelay/node"
	"github.com/msprelay/msprelay/principal"
)

// repeatedKeys walks one JSON log line token by token and returns every
// key that an object of it (the line itself or a group inside it) holds
// more than once. Decoding into a map would keep the last value and hide
// exactly what this looks for.
func repeatedKeys(line []byte) ([]string, error) {
	dec := json.NewDecoder(bytes.NewReader(line))
	var out []string
	var value func(path string) error
	object := func(path string) error {
		seen := map[string]bool{}
		for dec.More() {
			tok, err := dec.Token()
			if err != nil {
				return err
			}
			key, ok := tok.(string)
			if !ok {
				return fmt.Errorf("object key %v is not a string", tok)
			}
			if seen[key] {
				out = append(out, path+key)
			}
			seen[key] = true
			if err := value(path + key + "."); err != nil {
				return err
			}
		}
		_, err := dec.Token() // the closing '}'
		return err
	}
	value = func(path string) error {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		switch tok {
		case json.Delim('{'):
			return object(path)
		case json.Delim('['):
			for dec.More() {
				if err := value(path); err != nil {
					return err
				}
			}
			_, err := dec.Token() // the closing ']'
			return err
		}
		return nil
	}
	if err := value(""); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("more than one JSON value on the line (%v)", err)
	}
	return out, nil
}

// The checker itself: a repeated key is found at the top and in a group,
// distinct keys pass.
func TestRepeatedKeysFindsWhatAMapHides(t *testing.T) {
	t.Parallel()
	tests := []struct {
		line string
		want string
	}{
		{`{"time":"t","level":"INFO","msg":"m","node":"n1","component":"presence","part":"gossip","peer":"n2"}`, ""},
		{`{"msg":"m","node":"n1","node":"n2"}`, "node"},
		{`{"msg":"m","component":"presence","component":"gossip"}`, "component"},
		{`{"msg":"m","g":{"a":1,"a":[{"b":1,"b":2}]}}`, "g.a g.a.b"},
		{`{"msg":"m","l":[{"x":1},{"x":2}],"n":null,"o":{}}`, ""},
	}
	for _, tc := range tests {
		got, err := repeatedKeys([]byte(tc.line))
		if err != nil {
			t.Fatalf("%s: %v", tc.line, err)
		}
		if strings.Join(got, " ") != tc.want {
			t.Errorf("%s: repeated %q, want %q", tc.line, got, tc.want)
		}
	}
}

// Issue 19: "The slog de-dup handler goes once each logger names its
// component once." With a plain JSON handler (what --log-format json now
// is, with nothing between the loggers and it) every line a node writes
// while people sign in, send and get mail queued and drained, and
// while nodes gossip, federate and leave, carries each key once, and the
// node's name under "node" (docs/ARCHITECTURE.md, Logging).
func TestLogLinesNameEachKeyOnce(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		// nodes in the cluster; with embedded, the nodes run their own
		// nats-server instead of the shared relay (one node then: two
		// embedded servers do not federate).
		nodes    int
		embedded bool
	}{
		{"two nodes federating through a relay, gossiping and leaving", 2, false},
		{"one node with its embedded nats-server", 1, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var buf syncbuf.Buffer
			c := testcluster.Start(t, tc.nodes, testcluster.Options{Configure: func(_ int, cfg *node.Config) {
				// Debug: the gossip, mailbox and nats-server lines are
				// there; trace would add nats-server's protocol dumps.
				cfg.Logger = slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
				if tc.embedded {
					cfg.NATSURLs = nil
				}
			}})
			driveLogs(t, c, tc.nodes, func(msg string) bool {
				return bytes.Contains(buf.Bytes(), []byte(`"msg":"`+msg+`"`))
			})
			names := map[string]bool{}
			for i := range tc.nodes {
				names[c.Name(i)] = true
			}
			lines := bytes.Split(bytes.TrimSpace(buf.Bytes()), []byte("\n"))
			if len(lines) < 20 {
				t.Fatalf("only %d log lines: the test drove nothing", len(lines))
			}
			for _, line := range lines {
				rep, err := repeatedKeys(line)
				if err != nil {
					t.Fatalf("log line %s: %v", line, err)
				}
				if len(rep) > 0 {
					t.Errorf("key %q repeated in %s", rep, line)
				}
				var l struct {
					Node string `json:"node"`
				}
				if err := json.Unmarshal(line, &l); err != nil || !names[l.Node] {
					t.Errorf("line names no node of the cluster under \"node\" (%v): %s", err, line)
				}
			}
		})
	}
}

// driveLogs makes the cluster's nodes log what people and nodes do:
// sign-ins and sign-outs, MSP sends (delivered, refused, queued for an
// absent known user and drained at his return) and, with two nodes, federation to the other node and its
// graceful leave (the survivor logs the node gone).
// logged tells whether a line with message msg has been written.
func driveLogs(t *testing.T, c *testcluster.Cluster, nodes int, logged func(msg string) bool) {
	last := nodes - 1
	alice := c.SignIn(last, "alice", "pts/1", principal.Online)
	c.WaitPresent("alice", "pts/1", c.Name(last), true)
	send := func(to, text string) msp.Reply {
		t.Helper()
		r, err := c.Send(0, "tcp", &msp.Message{Version: msp.Version2, Recipient: to, Sender: "carol", SenderTerm: "pts/9",
			Text: text, Cookie: fmt.Sprintf("%s-%d", to, time.Now().UnixNano())})
		if err != nil {
			t.Fatalf("send to %s: %v", to, err)
		}
		return r
	}
	if r := send("alice", "hello"); !r.OK {
		t.Fatalf("send to alice: %+v", r)
	}
	nextIs(t, alice, "hello")
	if r := send("ghost", "anyone?"); r.OK {
		t.Fatalf("send to unknown ghost: %+v", r)
	}
	// Bob is known, then away: his message waits in the mailbox and is
	// drained when he signs in again.
	waitSignedOut(t, c, c.SignIn(0, "bob", "pts/2", principal.Online), "bob")
	if r := send("bob", "while you were out"); !r.OK {
		t.Fatalf("send to absent bob: %+v", r)
	}
	nextIs(t, c.SignIn(0, "bob", "pts/3", principal.Online), "while you were out")
	waitSignedOut(t, c, alice, "alice")
	if nodes > 1 {
		c.Stop(last)
		testcluster.WaitFor(t, 20*time.Second, c.Name(0)+" logs "+c.Name(last)+" gone", func() bool {
			return logged("node gone, dropping its principals")
		})
	}
}
