package presence

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/nats-io/nats.go"

	"github.com/msprelay/msprelay/internal/waitfor"
	"github.com/msprelay/msprelay/principal"
)

// TestMeasureConvergence reports how fast a 10-node cluster converges. It
// is a measurement, not a timed assertion, and runs only when
// PRESENCE_MEASURE is set (it takes a minute with the lan profile):
//
//	PRESENCE_MEASURE=1 go test -run MeasureConvergence -v ./presence/
//
// For each profile it times 20 sign-ins until every node has delivered the
// Upsert event, then a graceful leave and a crash until every remaining
// node has delivered the Remove.
func TestMeasureConvergence(t *testing.T) {
	if os.Getenv("PRESENCE_MEASURE") == "" {
		t.Skip("set PRESENCE_MEASURE=1 to measure convergence")
	}
	profiles := []struct {
		name string
		tune func(*memberlist.Config)
	}{
		{"local", nil},
		{"lan", nil},
		{"local+test-timers", fastTune},
	}
	for _, p := range profiles {
		t.Run(p.name, func(t *testing.T) {
			profile, _, _ := strings.Cut(p.name, "+")
			measureProfile(t, p.name, profile, p.tune)
		})
	}
}

// eventClock records when each node first delivered each event.
type eventClock struct {
	mu   sync.Mutex
	seen map[string]map[string]time.Time // "+user" or "-user" -> node -> time
}

func (c *eventClock) watch(t *testing.T, n testNode) {
	sub := n.Subscribe()
	t.Cleanup(sub.Cancel)
	go func() {
		for ev := range sub.C {
			k := "+" + ev.Entry.User
			if ev.Type == EventRemove {
				k = "-" + ev.Entry.User
			}
			now := time.Now()
			c.mu.Lock()
			if c.seen[k] == nil {
				c.seen[k] = map[string]time.Time{}
			}
			if _, ok := c.seen[k][n.Name()]; !ok {
				c.seen[k][n.Name()] = now
			}
			c.mu.Unlock()
		}
	}()
}

// wait returns how long after start the last of nodes delivered event k.
func (c *eventClock) wait(t *testing.T, k string, nodes []testNode, start time.Time) time.Duration {
	t.Helper()
	var last time.Time
	waitfor.True(t, 60*time.Second, k+" on every node", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		last = time.Time{}
		for _, n := range nodes {
			at, ok := c.seen[k][n.Name()]
			if !ok {
				return false
			}
			if at.After(last) {
				last = at
			}
		}
		return true
	})
	return last.Sub(start)
}

func measureProfile(t *testing.T, label, profile string, tune func(*memberlist.Config)) {
	nodes := startCluster(t, 10, func(c *Config) {
		c.Gossip.Profile = profile
		c.Gossip.Tune = tune
	})
	clock := &eventClock{seen: map[string]map[string]time.Time{}}
	for _, n := range nodes {
		clock.watch(t, n)
	}
	var lat []time.Duration
	for i := range 20 {
		user := fmt.Sprintf("m%d", i)
		start := time.Now()
		if err := nodes[i%10].Upsert(principal.Entry{User: user, Term: "tty", State: principal.Online}); err != nil {
			t.Fatal(err)
		}
		lat = append(lat, clock.wait(t, "+"+user, nodes, start))
	}
	slices.Sort(lat)
	p50, p99 := lat[len(lat)/2], lat[len(lat)*99/100]
	t.Logf("%s: sign-in visible on all 10 nodes: p50 %v p99 %v max %v (n=%d)", label, p50.Round(time.Millisecond),
		p99.Round(time.Millisecond), lat[len(lat)-1].Round(time.Millisecond), len(lat))

	start := time.Now()
	if err := nodes[9].Close(); err != nil {
		t.Fatal(err)
	}
	t.Logf("%s: graceful leave, principals removed on all 9 others after %v", label,
		clock.wait(t, "-m9", nodes[:9], start).Round(time.Millisecond))

	start = time.Now()
	nodes[8].crash(t)
	t.Logf("%s: crash, principals removed on all 8 others after %v", label,
		clock.wait(t, "-m8", nodes[:8], start).Round(time.Millisecond))
}

// TestMeasureCrashUnderLoad reports crash detection on a 30-node lan
// cluster under churn, and counts false suspicions and false deaths. A
// measurement, not a timed assertion; it runs only when PRESENCE_MEASURE
// is set, for PRESENCE_MEASURE_LOAD (default 60s) of churn at
// PRESENCE_MEASURE_RATE changes per second (default 200):
//
//	PRESENCE_MEASURE=1 go test -run MeasureCrashUnderLoad -v ./presence/
//
// The churn runs on every node the whole time; after the load period three
// nodes crash one after another (gossip stopped without a leave, and with
// the NATS signal their NATS connections closed) and each is timed until
// every other node dropped its principal. Any other node reported gone is
// a false positive. PRESENCE_MEASURE_NODES (default 30) sizes the cluster;
// PRESENCE_MEASURE_SIGNAL is "off" (memberlist alone), "nats" (the second
// failure signal, confirm.go, on a real nats-server) or "both" (default:
// off, then nats, in one run, so that the two are measured alike).
func TestMeasureCrashUnderLoad(t *testing.T) {
	if os.Getenv("PRESENCE_MEASURE") == "" {
		t.Skip("set PRESENCE_MEASURE=1 to measure crash detection under load")
	}
	signals := []string{"off", "nats"}
	if v := os.Getenv("PRESENCE_MEASURE_SIGNAL"); v != "" && v != "both" {
		signals = []string{v}
	}
	for _, s := range signals {
		t.Run("signal="+s, func(t *testing.T) { measureCrashUnderLoad(t, s == "nats") })
	}
}

func measureCrashUnderLoad(t *testing.T, natsOn bool) {
	loadFor, rate := 60*time.Second, 200
	if v := os.Getenv("PRESENCE_MEASURE_LOAD"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatal(err)
		}
		loadFor = d
	}
	if v := os.Getenv("PRESENCE_MEASURE_RATE"); v != "" {
		fmt.Sscan(v, &rate)
	}
	// PRESENCE_MEASURE_PRESET=memberlist restores memberlist's own LAN
	// failure detection, the baseline of the same run.
	var tune func(*memberlist.Config)
	preset := "lan"
	if os.Getenv("PRESENCE_MEASURE_PRESET") == "memberlist" {
		preset = "memberlist's LAN preset"
		tune = func(c *memberlist.Config) {
			lan := memberlist.DefaultLANConfig()
			c.ProbeInterval, c.ProbeTimeout, c.SuspicionMult = lan.ProbeInterval, lan.ProbeTimeout, lan.SuspicionMult
		}
	}
	n, crashes := 30, 3
	if v := os.Getenv("PRESENCE_MEASURE_NODES"); v != "" {
		fmt.Sscan(v, &n)
	}
	if natsOn {
		preset += " + NATS signal"
	}
	var sig *natsSignal
	conns := make([]*nats.Conn, n)
	if natsOn {
		sig = newNATSSignal(t)
	}
	logs := &recordLog{}
	mod := func(i int, c *Config) {
		c.Logger = slog.New(logs)
		c.Gossip.Profile = "lan"
		c.Gossip.Tune = tune
		if natsOn {
			conns[i] = sig.answer(t, fmt.Sprintf("n%d", i))
			c.Gossip.Confirm = sig.confirm(t)
		}
	}
	// Formed here rather than by startCluster: 30 lan nodes on a loaded
	// machine may take longer than its bound.
	nodes := []testNode{startNode(t, "n0", func(c *Config) { mod(0, c) })}
	for i := 1; i < n; i++ {
		nodes = append(nodes, startNode(t, fmt.Sprintf("n%d", i), func(c *Config) {
			mod(i, c)
			c.Gossip.Join = []string{nodes[0].GossipAddr()}
		}))
	}
	waitfor.True(t, 2*time.Minute, "every node lists every member", func() bool {
		for _, nd := range nodes {
			if len(nd.Members()) != n {
				return false
			}
		}
		return true
	})
	clock := &eventClock{seen: map[string]map[string]time.Time{}}
	for i, nd := range nodes {
		clock.watch(t, nd)
		if err := nd.Upsert(principal.Entry{User: fmt.Sprintf("sentinel%d", i), Term: "tty", State: principal.Online}); err != nil {
			t.Fatal(err)
		}
	}
	// Churn: bounded by count and time, stopped before the test returns.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var opsDone atomic.Int64
	target := int64(loadFor.Seconds() * float64(rate))
	wg.Go(func() {
		tick := time.NewTicker(time.Second / time.Duration(rate))
		defer tick.Stop()
		for ops := 0; ops < int(2*target); ops++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			nd := nodes[ops%(n-crashes)] // the nodes that will crash stay quiet
			user := fmt.Sprintf("c%d", ops%1000)
			if ops%3 == 2 {
				nd.Remove(user, "tty")
			} else {
				_ = nd.Upsert(principal.Entry{User: user, Term: "tty", State: []principal.State{principal.Online, principal.Busy}[ops%2]})
			}
			opsDone.Add(1)
		}
	})
	defer func() { close(stop); wg.Wait() }()
	// The loaded period: target changes or loadFor, whichever comes first
	// (a starved machine runs fewer); the churn goes on during the crashes.
	loadStart := time.Now()
	waitfor.True(t, 2*loadFor, "the churn's first period", func() bool {
		return opsDone.Load() >= target || time.Since(loadStart) >= loadFor
	})
	loaded := time.Since(loadStart)
	loadOps := opsDone.Load()
	falseBefore := logs.gone(nil)
	live := nodes[:n-crashes]
	for i := range crashes {
		victim := nodes[n-1-i]
		start := time.Now()
		victim.crash(t)
		if natsOn {
			conns[n-1-i].Close()
		}
		d := clock.wait(t, fmt.Sprintf("-sentinel%d", n-1-i), live, start)
		t.Logf("%s, %d nodes under churn: crash of %s seen on all %d live nodes after %v", preset, n, victim.Name(), len(live), d.Round(time.Millisecond))
	}
	crashed := map[string]bool{}
	for i := range crashes {
		crashed[nodes[n-1-i].Name()] = true
	}
	t.Logf("%s, %d nodes: %d churn changes in the %v before the crashes (%.0f/s, asked %d/s), %d in all; false deaths during the load: %d; after the crashes, deaths of live nodes: %d; suspicions of live nodes in all: %d; live nodes taken back: %d",
		preset, n, loadOps, loaded.Round(time.Second), float64(loadOps)/loaded.Seconds(), rate, opsDone.Load(), falseBefore, logs.gone(crashed), logs.suspects(crashed), logs.count("back", crashed))
}

// recordLog is a slog handler that keeps the records the failure
// detectors leave: suspicions (memberlist's text names the node), deaths
// (our "node gone" records, memberlist's or the NATS signal's, attribute
// peer) and members taken back after a drop (confirm.go).
type recordLog struct {
	mu    sync.Mutex
	recs  []string // "suspect NAME" or "gone NAME"
	attrs []slog.Attr
}

func (h *recordLog) Enabled(context.Context, slog.Level) bool { return true }
func (h *recordLog) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *recordLog) WithGroup(string) slog.Handler            { return h }
func (h *recordLog) Handle(_ context.Context, r slog.Record) error {
	var rec string
	switch {
	case strings.HasPrefix(r.Message, "Suspect "):
		name, _, _ := strings.Cut(strings.TrimPrefix(r.Message, "Suspect "), " ")
		rec = "suspect " + name
	case strings.HasPrefix(r.Message, "node gone"), strings.HasPrefix(r.Message, "node answers again"):
		kind := "gone "
		if strings.HasPrefix(r.Message, "node answers again") {
			kind = "back "
		}
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "peer" {
				rec = kind + a.Value.String()
			}
			return true
		})
	}
	if rec != "" {
		h.mu.Lock()
		if len(h.recs) < 100000 {
			h.recs = append(h.recs, rec)
		}
		h.mu.Unlock()
	}
	return nil
}

func (h *recordLog) count(kind string, except map[string]bool) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, r := range h.recs {
		k, name, _ := strings.Cut(r, " ")
		if k == kind && !except[name] {
			n++
		}
	}
	return n
}

func (h *recordLog) gone(except map[string]bool) int     { return h.count("gone", except) }
func (h *recordLog) suspects(except map[string]bool) int { return h.count("suspect", except) }
