package bench

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/msprelay/msprelay/msp"
)

// TestMain lets the test binary serve as the harness's child process, as
// cmd/mspbench does: the sessions and allocs scenarios re-execute it.
func TestMain(m *testing.M) {
	if mode := os.Getenv(ChildEnv); mode != "" {
		if err := RunChild(mode, os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// Rule: the harness works end to end. Quick mode of the local and
// sessions scenarios in every workload (the client workload's receiver a
// real `msp listen` process, built by the harness), made shorter still; no
// speed is asserted, only that every arm ran (the minimal relay's too, so
// its client process acknowledged), the node delivered what it
// acknowledged (to the one hot session and to msp listen too), the child
// counted the sessions, and the report renders.
func TestQuickRunLocalAndSessions(t *testing.T) {
	t.Parallel()
	cfg := QuickConfig()
	cfg.Scenarios = []string{ScenarioLocal, ScenarioSessions}
	cfg.Duration = 150 * time.Millisecond
	cfg.Warmup = 0
	cfg.Concurrency, cfg.Conns, cfg.Receivers = 4, 2, 2
	cfg.Sessions = 40
	cfg.ManySessions = 40
	cfg.Command = "test"
	// A bound, not a speed: it includes building cmd/msp, and the
	// many-sessions node waits for its heap to settle (8 s at least).
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rep, err := Run(ctx, cfg)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	var want []string
	for _, wl := range Workloads() {
		for _, mode := range localModes() {
			want = append(want, scenarioName("local", wl, mode))
		}
	}
	if got := len(rep.Comparisons); got != len(want) {
		t.Fatalf("comparisons = %d, want %d (tcp1, tcpseq, tcppipe, udp; spread, hot and client)", got, len(want))
	}
	for i, c := range rep.Comparisons {
		wantWL := Workloads()[i/len(localModes())]
		if c.Workload != wantWL {
			t.Errorf("comparison %d (%s): workload %q, want %q", i, c.Scenario, c.Workload, wantWL)
		}
		if c.Scenario != want[i] || len(c.Arms) != 3 || len(c.Ratios) != 2 {
			t.Fatalf("comparison %d = %s with %d arms, %d ratios; want %s, 3, 2", i, c.Scenario, len(c.Arms), len(c.Ratios), want[i])
		}
		if c.Ratios[0].To != armRelay || c.Ratios[0].Of != "node" {
			t.Errorf("%s: first ratio %s / %s, want node / %s (the targets' ratio)", c.Scenario, c.Ratios[0].Of, c.Ratios[0].To, armRelay)
		}
		for _, a := range c.Arms {
			if len(a.Rounds) != 1 || a.Rounds[0].OK == 0 || a.Rate <= 0 || a.Reply.N == 0 {
				t.Errorf("%s %s: rounds %+v, rate %v, %d reply samples: want one round with '+' replies", c.Scenario, a.Name, a.Rounds, a.Rate, a.Reply.N)
			}
		}
		node := c.arm("node")
		if node == nil || node.Rounds[0].Delivered != node.Rounds[0].OK || node.Delivery.N == 0 {
			t.Errorf("%s: node arm delivered %+v: want every acknowledged message delivered", c.Scenario, node)
		}
	}
	s := rep.Sessions
	if s == nil || s.Opened != 40 || s.RSSAfterKiB <= 0 {
		t.Fatalf("sessions = %+v, want 40 opened and an RSS reading", s)
	}
	// The whole-node figures: 40 distinct users, then 40 terminals of one.
	for _, q := range []struct {
		r     *NodeSessionsResult
		users int
	}{{s.Users, 40}, {s.Terminals, 1}} {
		if q.r == nil || q.r.Opened != 40 || q.r.Users != q.users || q.r.RSSAfterKiB <= 0 {
			t.Fatalf("node sessions = %+v, want 40 opened by %d users and an RSS reading", q.r, q.users)
		}
	}
	// Many sessions at once: half over the Unix socket, half over TCP,
	// then delivery to one more and the node's shutdown.
	if m := s.Many; m == nil || m.Opened != 40 || m.Unix != 20 || m.TCP != 20 || m.RSSAfterKiB <= 0 ||
		m.Delivery.N == 0 || m.Delivery.N+m.Undelivered != manyDelivered {
		t.Fatalf("many sessions = %+v, want 40 opened (20 Unix, 20 TCP), an RSS reading and timed deliveries", m)
	}
	// Per workload: 4 local, 3 cross, 2 allocation targets; then sign-in,
	// idle session and idle signed-in user.
	if want := 9*len(Workloads()) + 3; len(rep.Targets) != want {
		t.Errorf("targets = %d, want %d", len(rep.Targets), want)
	}
	for _, tg := range rep.Targets {
		measured := !strings.HasPrefix(tg.Name, "cross") && !strings.HasPrefix(tg.Name, "sign-in") &&
			!strings.HasPrefix(tg.Name, "allocations") && !strings.HasPrefix(tg.Name, "no live-heap")
		if (tg.Status != StatusNotMeasured) != measured {
			t.Errorf("target %q status %q; measured should be %v", tg.Name, tg.Status, measured)
		}
	}
	var table bytes.Buffer
	if err := rep.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"| local/tcp1 | minimal |", "| local/tcp1 | minimal-relay |", "| local/udp | node |",
		"| local-hot/tcppipe | node |", "| local-client/tcpseq | node |", "| local-client/udp | minimal-relay |",
		"| UDP, rate (hot) | >= 0.7x minimal-relay |", "| TCP one connection per sender, one at a time, rate (client) | >= 0.7x minimal-relay |",
		"| client | TCP, one connection per sender, one at a time | ", "| hot | UDP | ",
		"per session", "| idle session memory | <= 8 KiB |",
		"per distinct user", "Many sessions on one node", "per terminal of one user", "| idle signed-in user on a node, distinct users | <= 8 KiB |"} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, table.String())
		}
	}
	var img bytes.Buffer
	if err := rep.WriteChart(&img); err != nil {
		t.Fatal(err)
	}
	checkChart(t, img.Bytes(), rep)
}

// checkChart fails the test unless svg is a well-formed SVG document of
// chartW units wide, with a bar per arm and ratio in each panel and every
// scenario named.
func checkChart(t *testing.T, svg []byte, rep *Report) {
	t.Helper()
	var doc struct {
		XMLName xml.Name `xml:"http://www.w3.org/2000/svg svg"`
		Width   int      `xml:"width,attr"`
		Rects   []struct {
			Fill string `xml:"fill,attr"`
		} `xml:"rect"`
		Texts []string `xml:"text"`
	}
	if err := xml.Unmarshal(svg, &doc); err != nil {
		t.Fatalf("chart is not well-formed SVG: %v\n%s", err, svg)
	}
	if doc.Width != chartW {
		t.Errorf("chart width %d, want %d", doc.Width, chartW)
	}
	arms, ratios := 0, 0
	for _, c := range rep.Comparisons {
		arms += len(c.Arms)
		ratios += len(c.Ratios)
	}
	bars := 0
	for _, r := range doc.Rects {
		if r.Fill == colSubject || r.Fill == colBaseline {
			bars++
		}
	}
	// Throughput and latency draw a dark bar per arm, the ratio panel one per
	// ratio (arms with a zero value draw none, so count at most).
	if bars > 2*arms+ratios || bars < arms {
		t.Errorf("%d bars for %d arms and %d ratios", bars, arms, ratios)
	}
	all := strings.Join(doc.Texts, "\n")
	for _, c := range rep.Comparisons {
		if !strings.Contains(all, c.Scenario) {
			t.Errorf("chart does not name scenario %q", c.Scenario)
		}
	}
}

// Rule: the load generator's messages are valid RFC 1312 messages, and the
// receiver reads back exactly the round and send time they carry.
func TestMessageCarriesStamp(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		round int
		seq   uint64
		sent  time.Duration
	}{
		{"zero", 0, 0, 0},
		{"typical", 17, 4242, 1234567890},
		{"large", 1 << 30, 1<<40 - 1, time.Duration(1<<62 + 5)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := appendMessage(nil, "bench3", "", "w12", tc.round, tc.seq, tc.sent)
			m, err := msp.Parse(b)
			if err != nil {
				t.Fatalf("msp.Parse(%q): %v", b, err)
			}
			want := msp.Message{Version: 'B', Recipient: "bench3", Text: fmt.Sprintf("mspbench r=%d t=%d", tc.round, int64(tc.sent)),
				Sender: "mspbench", SenderTerm: "w12", Cookie: fmt.Sprintf("%d.w12.%d", tc.round, tc.seq)}
			if *m != want {
				t.Fatalf("parsed %+v, want %+v", *m, want)
			}
			round, sent, ok := parseStamp(m.Text + "\r\n")
			if !ok || round != tc.round || sent != tc.sent {
				t.Fatalf("parseStamp = %d, %v, %v; want %d, %v, true", round, sent, ok, tc.round, tc.sent)
			}
		})
	}
}

// Rule: texts that did not come from the load generator carry no stamp.
func TestParseStampRejectsForeignText(t *testing.T) {
	t.Parallel()
	for _, text := range []string{"", "hello", "mspbench r=", "mspbench r=1", "mspbench r=x t=5", "mspbench r=1 t=y", "MSPBENCH r=1 t=2"} {
		if r, s, ok := parseStamp(text); ok {
			t.Errorf("parseStamp(%q) = %d, %v, true; want not ok", text, r, s)
		}
	}
}

// Rule: percentiles are nearest-rank, so p99 of 20 samples is the largest
// and p50 of 4 samples is the second.
func TestPercentileNearestRank(t *testing.T) {
	t.Parallel()
	ms := func(xs ...int) []time.Duration {
		out := make([]time.Duration, len(xs))
		for i, x := range xs {
			out[i] = time.Duration(x) * time.Millisecond
		}
		return out
	}
	tests := []struct {
		name    string
		samples []time.Duration
		want    Latency
	}{
		{"none", nil, Latency{}},
		{"one", ms(7), Latency{N: 1, P50us: 7000, P90us: 7000, P99us: 7000, MaxUs: 7000}},
		{"four unsorted", ms(4, 1, 3, 2), Latency{N: 4, P50us: 2000, P90us: 4000, P99us: 4000, MaxUs: 4000}},
		{"twenty", ms(20, 19, 18, 17, 16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1),
			Latency{N: 20, P50us: 10000, P90us: 18000, P99us: 20000, MaxUs: 20000}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := summarize(tc.samples); got != tc.want {
				t.Fatalf("summarize = %+v, want %+v", got, tc.want)
			}
		})
	}
}

// Rule: a rate ratio is the median of per-round ratios, so one disturbed
// round does not decide it; latency ratios compare pooled percentiles.
func TestRatioIsMedianOfRounds(t *testing.T) {
	t.Parallel()
	base := &Arm{Name: "minimal", Rounds: []Round{{Rate: 100}, {Rate: 100}, {Rate: 50}}, Reply: Latency{P50us: 10, P99us: 100}}
	node := &Arm{Name: "node", Rounds: []Round{{Rate: 80}, {Rate: 90}, {Rate: 50}}, Reply: Latency{P50us: 20, P99us: 150}}
	got := ratio(node, base)
	want := Ratio{Of: "node", To: "minimal", Rate: 0.9, RateMin: 0.8, RateMax: 1, P50: 2, P99: 1.5}
	if got != want {
		t.Fatalf("ratio = %+v, want %+v", got, want)
	}
}

// Rule (RFC 1312): "the server replies one byte + or -, an optional
// explanation, and a NUL" for each of several messages on one connection;
// the minimal server answers '+' to valid messages and '-' then closes on
// an undecodable one. Over UDP it answers '+' and never '-'.
func TestMinimalServerReplies(t *testing.T) {
	t.Parallel()
	s, err := startMinimal()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	c, err := net.Dial("tcp", s.tcpAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	two := append(appendMessage(nil, "a", "", "w", 1, 1, 1), appendMessage(nil, "b", "t1", "w", 1, 2, 2)...)
	bad := []byte("Bx\x00\x00\x1b[2J\x00s\x00\x00c\x00\x00") // ESC in MESSAGE
	if _, err := c.Write(append(two, bad...)); err != nil {
		t.Fatal(err)
	}
	var rr replyReader
	rr.reset(c)
	for i, want := range []bool{true, true, false} {
		ok, queued, err := rr.next()
		if err != nil || ok != want || queued {
			t.Fatalf("reply %d = %v, queued %v, %v; want %v, not queued", i, ok, queued, err, want)
		}
	}
	if _, _, err := rr.next(); err == nil {
		t.Fatal("connection still open after a '-' reply")
	}

	u, err := net.Dial("udp", s.udpAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	u.Write(appendMessage(nil, "a", "", "w", 1, 3, 3))
	u.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 600)
	n, err := u.Read(buf)
	if err != nil || string(buf[:n]) != "+\x00" {
		t.Fatalf("UDP reply %q, %v; want \"+\\x00\"", buf[:n], err)
	}
}

// Rule: Config refuses what would make a run unbounded or meaningless.
func TestConfigValidation(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		modify func(*Config)
		ok     bool
	}{
		{"defaults", func(*Config) {}, true},
		{"unknown scenario", func(c *Config) { c.Scenarios = []string{"local", "nope"} }, false},
		{"no rounds", func(c *Config) { c.Rounds = 0 }, false},
		{"no duration", func(c *Config) { c.Duration = 0 }, false},
		{"no message bound", func(c *Config) { c.MaxMessages = 0 }, false},
		{"more conns than in flight", func(c *Config) { c.Conns = c.Concurrency + 1 }, false},
		{"bad cross mode", func(c *Config) { c.CrossModes = []string{ModeTCP1, "nats"} }, false},
		{"bad alloc mode", func(c *Config) { c.AllocModes = []string{"smtp"} }, false},
		{"one alloc mode", func(c *Config) { c.AllocModes = []string{ModeUDP} }, true},
		{"tiny presence cluster", func(c *Config) { c.PresenceNodes = []int{2} }, false},
		{"too many sessions", func(c *Config) { c.Sessions = 50_001 }, false},
		{"many sessions skipped", func(c *Config) { c.ManySessions = -1 }, true},
		{"too many many sessions", func(c *Config) { c.ManySessions = 1_000_001 }, false},
		{"fewer principals than nodes", func(c *Config) { c.DirectoryPrincipals = c.DirectoryNodes - 1 }, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
			tc.modify(&c)
			err := c.validate()
			if (err == nil) != tc.ok || (err != nil && !errors.Is(err, ErrConfig)) {
				t.Fatalf("validate = %v, want ok=%v (errors wrap ErrConfig)", err, tc.ok)
			}
		})
	}
}

func FuzzParseStamp(f *testing.F) {
	f.Add("mspbench r=3 t=123456")
	f.Add("mspbench r=-1 t=-5\r\n")
	f.Add("hello")
	f.Fuzz(func(t *testing.T, text string) {
		round, sent, ok := parseStamp(text)
		if !ok {
			return
		}
		again, _, ok2 := parseStamp(fmt.Sprintf("mspbench r=%d t=%d", round, int64(sent)))
		if !ok2 || again != round {
			t.Fatalf("stamp of %q does not round-trip", text)
		}
	})
}

// Rule: the issue's rate targets (issue 21: "Against the minimal relay: TCP
// pipelined (4 outstanding) >= 0.7x, persistent one at a time >= 0.7x, one
// per connection >= 0.8x, UDP >= 0.7x. Cross-node pipelined >= 0.5x local
// ... >= 0.3x raw NATS request-reply", every workload) have one source,
// shared by the targets table and the chart; the reply-only minimal server
// is shown without a target.
func TestRateFloors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		scenario string
		to       string
		want     float64
	}{
		{"local/" + ModeTCP1, armRelay, 0.8},
		{"local/" + ModeTCPSeq, armRelay, 0.7},
		{"local/" + ModeTCPPipe, armRelay, 0.7},
		{"local/" + ModeUDP, armRelay, 0.7},
		{"local/" + ModeTCP1, armMinimal, 0},
		{"local/" + ModeUDP, armUDPLoop, 0},
		{"cross/" + ModeTCP1, "local", 0.5},
		{"cross/" + ModeTCP1, "nats", 0.3},
		{"local-hot/" + ModeTCP1, armRelay, 0.8},
		{"local-client/" + ModeTCPSeq, armRelay, 0.7},
		{"cross-hot/" + ModeTCPPipe, "local", 0.5},
		{"cross-client/" + ModeTCPPipe, "nats", 0.3},
	}
	for _, tc := range tests {
		if got := rateFloor(tc.scenario, Ratio{To: tc.to}); got != tc.want {
			t.Errorf("rateFloor(%s, to %s) = %v, want %v", tc.scenario, tc.to, got, tc.want)
		}
	}
	rep := &Report{Comparisons: []*Comparison{{Scenario: "local/" + ModeTCP1, Ratios: []Ratio{
		{Of: "node", To: armRelay, Rate: 0.79}, {Of: "node", To: armMinimal, Rate: 0.5}}}}}
	for _, tg := range targets(rep) {
		if strings.HasPrefix(tg.Name, "TCP one message") &&
			(tg.Want != ">= 0.8x minimal-relay" || tg.Status != StatusNotMet || !strings.Contains(tg.Got, "0.50x minimal")) {
			t.Errorf("target %+v: want >= 0.8x minimal-relay, not met at 0.79, and the minimal server's 0.50x shown", tg)
		}
	}
}
