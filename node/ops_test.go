package node_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/msprelay/msprelay/broker"
	"github.com/msprelay/msprelay/internal/testcluster"
	"github.com/msprelay/msprelay/msp"
	"github.com/msprelay/msprelay/node"
	"github.com/msprelay/msprelay/ops"
	"github.com/msprelay/msprelay/opsapi"
	"github.com/msprelay/msprelay/principal"
)

// withHTTP gives every node of a test cluster an HTTP endpoint on loopback.
func withHTTP(_ int, cfg *node.Config) {
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.Version = "test-1"
}

// metric returns the value of the counter, gauge or histogram count with
// exactly these labels in reg (0 when absent).
func metric(t *testing.T, reg prometheus.Gatherer, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if !sameLabels(m.GetLabel(), labels) {
				continue
			}
			switch {
			case m.Counter != nil:
				return m.GetCounter().GetValue()
			case m.Gauge != nil:
				return m.GetGauge().GetValue()
			case m.Histogram != nil:
				return float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return 0
}

func sameLabels(got []*dto.LabelPair, want map[string]string) bool {
	if len(got) != len(want) {
		return false
	}
	for _, l := range got {
		if v, ok := want[l.GetName()]; !ok || v != l.GetValue() {
			return false
		}
	}
	return true
}

func msgLabels(transport, rev, outcome, reason string) map[string]string {
	return map[string]string{"transport": transport, "revision": rev, "outcome": outcome, "reason": reason}
}

// Issue 10, done when: "metrics change as expected after real sends
// (delivered, refused, queued, cross-node)".
func TestMetricsFollowRealSends(t *testing.T) {
	t.Parallel()
	c := testcluster.Start(t, 2, testcluster.Options{Configure: withHTTP})
	reg0, reg1 := c.Node(0).Registry(), c.Node(1).Registry()
	alice := c.SignIn(0, "alice", "pts/1", principal.Online)
	c.WaitPresent("alice", "pts/1", c.Name(0), true)

	send := func(i int, network string, m *msp.Message) msp.Reply {
		t.Helper()
		r, err := c.Send(i, network, m)
		if err != nil {
			t.Fatalf("send via %s/%s: %v", c.Name(i), network, err)
		}
		return r
	}
	steps := []struct {
		name    string
		node    int
		network string
		msg     msp.Message
		wantOK  bool
		reg     prometheus.Gatherer
		labels  map[string]string
		path    string
	}{
		{"delivered locally over TCP, revision B", 0, "tcp", msp.Message{Version: msp.Version2, Recipient: "alice", Sender: "bob", Text: "one", Cookie: "c1"},
			true, reg0, msgLabels("tcp", "B", "delivered", ""), "local"},
		{"delivered across nodes over UDP", 1, "udp", msp.Message{Version: msp.Version2, Recipient: "alice", Sender: "bob", Text: "two", Cookie: "c2"},
			true, reg1, msgLabels("udp", "B", "delivered", ""), "cross_node"},
		{"revision A over TCP", 0, "tcp", msp.Message{Version: msp.Version1, Recipient: "alice", Text: "three"},
			true, reg0, msgLabels("tcp", "A", "delivered", ""), "local"},
		{"refused: a user the cluster never saw", 1, "tcp", msp.Message{Version: msp.Version2, Recipient: "nobody", Sender: "bob", Text: "four", Cookie: "c4"},
			false, reg1, msgLabels("tcp", "B", "refused", "unknown_user"), ""},
	}
	for _, s := range steps {
		before := metric(t, s.reg, "msprelay_messages_total", s.labels)
		var lat float64
		if s.path != "" {
			lat = metric(t, s.reg, "msprelay_delivery_duration_seconds", map[string]string{"path": s.path})
		}
		// Revision A over TCP gets no reply at all (RFC 1159).
		if r := send(s.node, s.network, &s.msg); r.OK != s.wantOK && !(s.msg.Version == msp.Version1 && r.None) {
			t.Fatalf("%s: reply %+v", s.name, r)
		}
		// Revision A gets no reply, so the count may lag the send a little.
		testcluster.WaitFor(t, 5*time.Second, s.name+": msprelay_messages_total+1", func() bool {
			return metric(t, s.reg, "msprelay_messages_total", s.labels) == before+1
		})
		if s.path != "" {
			if got := metric(t, s.reg, "msprelay_delivery_duration_seconds", map[string]string{"path": s.path}); got != lat+1 {
				t.Errorf("%s: latency count{path=%s} = %v, want %v", s.name, s.path, got, lat+1)
			}
		}
		if s.wantOK {
			testcluster.NextMessage(t, alice, 5*time.Second)
		}
	}

	// Queued: alice signs out; once the cluster has recorded her, a message
	// for her goes to her mailbox and the mailbox gauge counts it.
	alice.SignOut(context.Background())
	c.WaitPresent("alice", "pts/1", c.Name(0), false)
	testcluster.WaitFor(t, 10*time.Second, "alice's sign-out recorded", func() bool {
		s, err := c.Node(1).Switchboard().LastSeen(context.Background(), "alice")
		return err == nil && s.State == "offline"
	})
	queued := msgLabels("tcp", "B", "queued", "")
	mbox := metric(t, reg1, "msprelay_mailbox_messages", nil)
	if r := send(1, "tcp", &msp.Message{Version: msp.Version2, Recipient: "alice", Sender: "bob", Text: "five", Cookie: "c5"}); !r.OK || !strings.HasPrefix(r.Text, "queued") {
		t.Fatalf("queued send: %+v", r)
	}
	if got := metric(t, reg1, "msprelay_messages_total", queued); got != 1 {
		t.Errorf("queued count = %v, want 1", got)
	}
	if got := metric(t, reg1, "msprelay_delivery_duration_seconds", map[string]string{"path": "mailbox"}); got != 1 {
		t.Errorf("mailbox latency count = %v, want 1", got)
	}
	if got := metric(t, reg1, "msprelay_mailbox_messages", nil); got != mbox+1 {
		t.Errorf("msprelay_mailbox_messages = %v, want %v", got, mbox+1)
	}

	// Scrape-time state and the trust sign-ins the cluster helper made.
	if got := metric(t, reg0, "msprelay_session_signins_total", map[string]string{"method": "trust", "result": "ok"}); got < 1 {
		t.Errorf("trust sign-ins = %v, want >= 1", got)
	}
	if got := metric(t, reg0, "msprelay_gossip_members", map[string]string{"state": "synced"}); got != 2 {
		t.Errorf("synced gossip members = %v, want 2", got)
	}
	if got := metric(t, reg0, "msprelay_nats_connected", nil); got != 1 {
		t.Errorf("nats connected = %v", got)
	}
	// And the same over HTTP, in the Prometheus text format, with the Go
	// runtime collectors on the node's own registry.
	body := get(t, "http://"+c.Node(1).HTTPAddr()+"/metrics", http.StatusOK)
	for _, want := range []string{`msprelay_messages_total{outcome="refused",reason="unknown_user",revision="B",transport="tcp"} 1`,
		"go_goroutines ", "process_resident_memory_bytes ", `msprelay_build_info{node="n2",version="test-1"} 1`} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

func get(t *testing.T, url string, wantCode int) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != wantCode {
		t.Fatalf("GET %s: HTTP %d, want %d: %s", url, resp.StatusCode, wantCode, b)
	}
	return string(b)
}

// Issue 10: the API is "read-only, and not exposing hidden users"; nodes
// show "their health and versions, from any node".
func TestAPIHidesHiddenUsersAndListsNodes(t *testing.T) {
	t.Parallel()
	c := testcluster.Start(t, 2, testcluster.Options{Configure: withHTTP})
	c.SignIn(0, "alice", "pts/1", principal.Online)
	// carol was seen once: a hidden sign-in alone records no time.
	waitSignedOut(t, c, c.SignIn(1, "carol", "pts/2", principal.Online), "carol")
	c.SignIn(1, "carol", "pts/2", principal.Hidden)
	c.WaitPresent("alice", "pts/1", c.Name(0), true)
	c.WaitPresent("carol", "pts/2", c.Name(1), true)
	base := "http://" + c.Node(0).HTTPAddr()

	var who []opsapi.WhoEntry
	if err := json.Unmarshal([]byte(get(t, base+"/api/v1/who", 200)), &who); err != nil {
		t.Fatal(err)
	}
	if len(who) != 1 || who[0].User != "alice" || who[0].Node != "n1" || who[0].State != "online" {
		t.Fatalf("who = %+v, want alice on n1 only", who)
	}
	// Issue 12: a hidden user looks offline: her last record, as offline,
	// and no terminal.
	var hu opsapi.UserInfo
	testcluster.WaitFor(t, 10*time.Second, "carol's sign-in recorded", func() bool {
		resp, err := http.Get(base + "/api/v1/users/carol")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		return resp.StatusCode == 200 && json.NewDecoder(resp.Body).Decode(&hu) == nil && hu.LastSeen != nil
	})
	if len(hu.Terminals) != 0 || hu.LastSeen.State != "offline" {
		t.Fatalf("users/carol (hidden) = %+v, want no terminals and an offline last_seen", hu)
	}
	get(t, base+"/api/v1/users/nobody", http.StatusNotFound)
	var u opsapi.UserInfo
	if err := json.Unmarshal([]byte(get(t, base+"/api/v1/users/ALICE", 200)), &u); err != nil {
		t.Fatal(err)
	}
	if u.User != "alice" || len(u.Terminals) != 1 || u.Terminals[0].Term != "pts/1" || u.MailboxDepth == nil || *u.MailboxDepth != 0 {
		t.Fatalf("users/alice = %+v", u)
	}
	for _, path := range []string{"/", "/api/v1/who", "/api/v1/nodes"} {
		if body := get(t, base+path, 200); strings.Contains(body, "carol") {
			t.Errorf("%s shows hidden carol", path)
		}
	}
	resp, err := http.Post(base+"/api/v1/who", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /api/v1/who: HTTP %d, want 405", resp.StatusCode)
	}

	var nodes []opsapi.NodeStatus
	if err := json.Unmarshal([]byte(get(t, base+"/api/v1/nodes", 200)), &nodes); err != nil {
		t.Fatal(err)
	}
	names := []string{}
	for _, n := range nodes {
		names = append(names, n.Name)
		if n.Status != "ready" || n.Version != "test-1" || !n.Reachable {
			t.Errorf("node %+v: want ready, version test-1, reachable", n)
		}
	}
	// Hidden carol on n2 counts as absent (issue 18 item 7).
	if !slices.Equal(names, []string{"n1", "n2"}) || !nodes[0].Self || nodes[1].Principals != 0 {
		t.Fatalf("nodes = %+v", nodes)
	}
}

// Issue 10, done when: "/readyz goes 503 when the relay is killed and 200
// when it is back".
func TestReadyzFollowsTheRelay(t *testing.T) {
	t.Parallel()
	store := t.TempDir()
	startRelay := func(listen string) *broker.Broker {
		b, err := broker.New(broker.Config{Name: "relay1", JetStream: true, DataDir: store, Listen: listen, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		if err := b.Start(); err != nil {
			t.Fatal(err)
		}
		return b
	}
	b := startRelay("127.0.0.1:0")
	addr := b.Addrs().Client
	t.Cleanup(func() { b.Close() })
	cfg := node.DefaultConfig()
	cfg.Name, cfg.MSPAddr, cfg.SessionSocket, cfg.DataDir = "r1", "127.0.0.1:0", "", t.TempDir()
	cfg.NATSURLs = []string{"nats://" + addr}
	cfg.HTTPAddr = "127.0.0.1:0"
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
	t.Cleanup(func() { n.Close() })
	url := "http://" + n.HTTPAddr() + "/readyz"
	readyz := func() (int, ops.Readiness) {
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var r ops.Readiness
		if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, r
	}
	waitCode := func(want int, failing string) ops.Readiness {
		var r ops.Readiness
		testcluster.WaitFor(t, 30*time.Second, "/readyz "+http.StatusText(want)+" "+failing, func() bool {
			var code int
			code, r = readyz()
			return code == want && (failing == "" || slices.Contains(r.Failing, failing))
		})
		return r
	}
	if r := waitCode(200, ""); r.Checks["msp"] != "ok" || r.Checks["nats"] != "ok" || r.Checks["jetstream"] != "ok" {
		t.Fatalf("ready body %+v", r)
	}
	get(t, "http://"+n.HTTPAddr()+"/healthz", 200)
	b.Close()
	r := waitCode(http.StatusServiceUnavailable, "nats")
	if !strings.HasPrefix(r.Checks["nats"], "not connected") || r.Status != "unavailable" {
		t.Fatalf("503 body %+v, want nats failing", r)
	}
	get(t, "http://"+n.HTTPAddr()+"/healthz", 200) // alive all the same
	if _, _, err := net.SplitHostPort(addr); err != nil {
		t.Fatal(err)
	}
	b2 := startRelay(addr)
	t.Cleanup(func() { b2.Close() })
	waitCode(200, "")
}

// Issue 10: SIGHUP reloads "the gossip keys ring". A rolling key change:
// the surviving node moves from K1 to K1+K2 to K2 alone by reloads, and a
// node that starts with only K2 then joins it; had the reloads not changed
// the ring, the two could not talk.
func TestReloadRotatesTheGossipKeyring(t *testing.T) {
	t.Parallel()
	keyFile := filepath.Join(t.TempDir(), "gossip.key")
	k1 := base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))
	k2 := base64.StdEncoding.EncodeToString([]byte("fedcba9876543210fedcba9876543210"))
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(keyFile, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(k1 + "\n")
	c := testcluster.Start(t, 2, testcluster.Options{Configure: func(_ int, cfg *node.Config) { cfg.GossipKeyFile = keyFile }})
	c.Stop(1)
	write(k2 + "\n" + k1 + "\n") // K2 encrypts, K1 still decrypts
	if err := c.Node(0).Reload(); err != nil {
		t.Fatal(err)
	}
	write(k2 + "\n")
	if err := c.Node(0).Reload(); err != nil {
		t.Fatal(err)
	}
	c.Restart(1) // knows K2 only
	c.WaitConverged()
	// A file that does not parse keeps the ring and says so.
	write("not a key\n")
	if err := c.Node(0).Reload(); err == nil {
		t.Fatal("a bad key file reloaded without error")
	}
}
