package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/msprelay/msprelay/opsapi"
	pr "github.com/msprelay/msprelay/principal"
	"github.com/msprelay/msprelay/sessionclient"
)

// ScaleResult is one cluster of real node processes: how fast a sign-in
// reaches every node, and, on the cluster sized ScaleLoadNodes, how fast
// state changes reach every node while principals churn, and what the
// principals cost each node.
type ScaleResult struct {
	Profile string `json:"profile"` // gossip profile (--gossip-profile)
	Nodes   int    `json:"nodes"`
	// FormSecs: from the first process start until every node's
	// /api/v1/nodes listed all Nodes as synced members.
	FormSecs float64 `json:"form_seconds"`
	// RSSIdleMiB is the nodes' summed RSS once formed, nothing signed in.
	RSSIdleMiB float64 `json:"rss_idle_mib"`
	// Sign-in visibility: a session signs in on one node (origins in
	// turn); the time until every node's watcher session got the NLN push.
	// Sign-ins that never reached every node within 30 s count as 30 s in
	// the percentiles (which are then lower bounds; the table marks them).
	SignIns        int     `json:"signins"`
	SignInSamples  int     `json:"signin_samples"` // sign-ins timed (0: none was)
	SignInP50ms    float64 `json:"signin_p50_ms"`
	SignInP99ms    float64 `json:"signin_p99_ms"`
	SignInMaxms    float64 `json:"signin_max_ms"`
	SignInTimedOut int     `json:"signins_timed_out"`
	// Principals signed in as sessions spread over the nodes (0: none).
	Principals int `json:"principals,omitempty"`
	Loaded     int `json:"loaded,omitempty"` // of them, signed in
	// Held is what the nodes hold once converged: the sum of each node's
	// count of its own principals. Below Loaded when sessions signed in
	// were closed before the count (a holder that gave up on a slow answer
	// closes its connection after the node signed it in).
	Held       int     `json:"held,omitempty"`
	LoadFailed int     `json:"load_failed,omitempty"`  // sign-ins refused or not answered within 10 s
	LoadSecs   float64 `json:"load_seconds,omitempty"` // until every node showed all, synced
	Converged  bool    `json:"converged,omitempty"`
	// RSSLoadedMiB is the nodes' summed RSS with the principals loaded;
	// BytesPerPrincipal is the mean per-node RSS growth divided by the
	// principals: a directory replica of each, plus the node's own share
	// (1/Nodes) of the sessions.
	RSSLoadedMiB      float64      `json:"rss_loaded_mib,omitempty"`
	BytesPerPrincipal float64      `json:"rss_bytes_per_principal_per_node,omitempty"`
	Churn             []ScaleChurn `json:"churn,omitempty"`
	// Soak: after the churn phases, the holders churned at SoakRate per
	// second for SoakSecs (--scale-soak; 0: not run).
	SoakRate   int     `json:"soak_rate,omitempty"`
	SoakSecs   float64 `json:"soak_seconds,omitempty"`
	SoakOps    int     `json:"soak_ops,omitempty"`
	SoakFailed int     `json:"soak_failed,omitempty"`
	// Crash detection, the cluster's last phase: a user signs in on node
	// K (never s1), every other node's watcher watches her, K gets
	// SIGKILL; a sample is the time from the kill until every other
	// node's watcher got her offline push (FLN). Nodes killed stay dead,
	// one at a time, each K a different node. Samples not pushed
	// everywhere within 30 s count as 30 s (CrashTimedOut of them).
	Crashes       int      `json:"crashes,omitempty"`
	CrashNodes    []string `json:"crash_nodes,omitempty"`
	CrashP50ms    float64  `json:"crash_p50_ms,omitempty"`
	CrashMaxms    float64  `json:"crash_max_ms,omitempty"`
	CrashTimedOut int      `json:"crashes_timed_out,omitempty"`
	// FalseDeaths counts the nodes' log lines (message starting "node
	// gone") that declared a node gone which the harness had not killed
	// or stopped, over FalseDeathSecs: from the cluster formed until its
	// shutdown began (lines about a node after the harness killed it are
	// not counted). FalseDeathPeers names the nodes so declared (at most
	// 10, each once).
	FalseDeaths     int      `json:"false_deaths"`
	FalseDeathSecs  float64  `json:"false_death_window_seconds"`
	FalseDeathPeers []string `json:"false_death_peers,omitempty"`
	// FalseDeathsByPhase splits FalseDeaths by the phase the harness was
	// in when it read the line: sign-ins, load, churn R/s, soak, crash.
	FalseDeathsByPhase map[string]int `json:"false_deaths_by_phase,omitempty"`
	// Killed counts processes that did not stop within 15 s of SIGTERM.
	Killed int `json:"killed"`
	// Error is why this cluster's measurement stopped early, if it did.
	Error string `json:"error,omitempty"`

	pids      []int // of every process started for this cluster, for tests
	crashGone int   // "node gone" lines about killed nodes, for tests
}

// ScaleChurn is one churn phase: holders close and reopen principals'
// sessions at Rate per second while sampled sessions change state (CHG
// busy/online), each timed until every node's watcher got the push.
type ScaleChurn struct {
	Rate         int     `json:"rate"`
	Ops          int     `json:"ops"`
	Failed       int     `json:"failed"`
	Secs         float64 `json:"seconds"`
	AchievedRate float64 `json:"achieved_rate"`
	Samples      int     `json:"samples"` // TimedOut included, counted as the 30 s they were waited for
	P50ms        float64 `json:"p50_ms"`
	P99ms        float64 `json:"p99_ms"`
	Maxms        float64 `json:"max_ms"`
	TimedOut     int     `json:"timed_out"`
}

// scaleMethod describes the scenario for the report.
const scaleMethod = "real node processes (cmd/node, default flags but: trust-mode TCP session listener, no Unix socket, " +
	"--max-sessions raised to fit the principals, --terminals off) on 127.0.0.1; node s1 runs the embedded nats-server " +
	"and exposes it with --nats-listen, the others use it with --nats; all join s1's gossip. Visibility is observed from " +
	"outside: one watcher session per node (USR at terminal *, ADD FL) timestamps the NLN push; principals are real " +
	"TCP sessions held by child processes; RSS from /proc/PID/status of each node"

// scaleSampleWait bounds the wait for one sample to reach every node.
const scaleSampleWait = 30 * time.Second

// scale runs the scale scenario: every profile, every cluster size.
func (h *harness) scale(ctx context.Context) ([]ScaleResult, error) {
	bin := h.cfg.ScaleNodeBinary
	if bin == "" {
		dir, err := os.MkdirTemp("", "mspbench-bin-")
		if err != nil {
			return nil, fmt.Errorf("bench: %w", err)
		}
		defer os.RemoveAll(dir)
		h.prog.printf("   building cmd/node")
		if bin, err = buildNodeBinary(ctx, dir); err != nil {
			return nil, err
		}
	}
	// A cluster that fails (one that does not form, say) is recorded with
	// its error and the next one still runs: the sizes a machine does not
	// hold are a result too.
	var out []ScaleResult
	var errs []error
	for _, profile := range h.cfg.ScaleProfiles {
		for _, n := range h.cfg.ScaleNodes {
			if ctx.Err() != nil {
				return out, errors.Join(append(errs, ctx.Err())...)
			}
			r, err := h.scaleOne(ctx, bin, profile, n)
			if err != nil {
				err = fmt.Errorf("%d nodes, %s: %w", n, profile, err)
				errs = append(errs, err)
				r.Error = err.Error()
				h.prog.printf("   %v", err)
			}
			out = append(out, *r)
		}
	}
	return out, errors.Join(errs...)
}

// scaleOne measures one cluster; every process it starts is stopped
// before it returns.
func (h *harness) scaleOne(ctx context.Context, bin, profile string, n int) (res *ScaleResult, err error) {
	res = &ScaleResult{Profile: profile, Nodes: n, SignIns: h.cfg.ScaleSignIns}
	load := n == h.cfg.ScaleLoadNodes && h.cfg.ScalePrincipals > 0
	maxSessions := 1024
	if load {
		maxSessions = max(maxSessions, h.cfg.ScalePrincipals/n+256)
	}
	h.prog.printf("-- %d node processes, gossip profile %s", n, profile)
	start := time.Now()
	c, err := startScaleCluster(ctx, h.prog, bin, profile, n, maxSessions)
	if c != nil {
		for _, p := range c.nodes {
			res.pids = append(res.pids, p.pid())
		}
	}
	if err != nil {
		return res, err
	}
	defer func() {
		res.Killed = c.close()
		if !c.allExited() {
			err = errors.Join(err, errors.New("bench: a node process did not exit"))
		}
	}()
	if _, err := c.awaitFormed(ctx, false, 3*time.Minute); err != nil {
		return res, err
	}
	res.FormSecs = round1(time.Since(start).Seconds())
	res.RSSIdleMiB = round1(float64(c.rssKiB()) / 1024)
	h.prog.printf("   formed in %.1fs; RSS %.0f MiB for %d nodes", res.FormSecs, res.RSSIdleMiB, n)

	// False deaths are counted from here until the cluster is shut down.
	formedAt := time.Now()
	c.phase("sign-ins")
	defer func() {
		c.countFalseDeaths(res, formedAt, time.Now())
		h.prog.printf("   false deaths: %d in %.0f s (a live node declared gone)%s%s", res.FalseDeaths, res.FalseDeathSecs,
			strings.TrimSuffix(" ("+strings.Join(res.FalseDeathPeers, ", ")+")", " ()"), byPhase(res.FalseDeathsByPhase))
	}()

	w, err := newWatchers(ctx, c)
	if err != nil {
		return res, err
	}
	defer w.close()
	if err := h.scaleSignIns(ctx, c, w, res); err != nil {
		return res, err
	}
	// A later phase that ends early (a bound reached, a sample lost) is
	// recorded, and the phases after it still run on what there is: the
	// crash phase needs no principals. Only a cancelled run stops here.
	var early []error
	if load {
		c.phase("load")
		holders, err := h.scaleLoad(ctx, c, res)
		for _, hd := range holders {
			res.pids = append(res.pids, hd.c.cmd.Process.Pid)
		}
		defer func() {
			for _, hd := range holders {
				hd.c.close()
			}
		}()
		if err != nil {
			if ctx.Err() != nil {
				return res, err
			}
			early = append(early, err)
		}
		for _, rate := range h.cfg.ScaleChurnRates {
			if h.cfg.ScaleChurnFor == 0 || res.Loaded == 0 || len(holders) == 0 {
				break
			}
			c.phase(fmt.Sprintf("churn %d/s", rate))
			ch, err := h.scaleChurn(ctx, c, w, holders, rate)
			res.Churn = append(res.Churn, ch)
			if err != nil {
				if ctx.Err() != nil {
					return res, err
				}
				early = append(early, err)
				break
			}
		}
		if h.cfg.ScaleSoak > 0 && res.Loaded > 0 && len(holders) > 0 {
			c.phase("soak")
			if err := h.scaleSoak(ctx, holders, res); err != nil {
				if ctx.Err() != nil {
					return res, err
				}
				early = append(early, err)
			}
		}
	}
	// The crash phase is the last: the nodes it kills stay dead.
	c.phase("crash")
	if err := h.scaleCrash(ctx, c, w, res); err != nil {
		if ctx.Err() != nil {
			return res, err
		}
		early = append(early, err)
	}
	return res, errors.Join(early...)
}

// apiNodes asks node p's HTTP API for /api/v1/nodes.
func (c *scaleCluster) apiNodes(ctx context.Context, p *nodeProc) ([]opsapi.NodeStatus, error) {
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodGet, "http://"+p.ready.HTTP+"/api/v1/nodes", nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("bench: %s /api/v1/nodes: %w", p.name, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("bench: %s /api/v1/nodes: %s", p.name, resp.Status)
	}
	var out []opsapi.NodeStatus
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return nil, fmt.Errorf("bench: %s /api/v1/nodes: %w", p.name, err)
	}
	return out, nil
}

// awaitFormed polls every node's /api/v1/nodes (every 2 s, at most for
// timeout) until each lists every node as a synced gossip member and,
// when count is set, every node shows the principals all the nodes hold
// (the sum of each node's count of its own). It returns that sum: the
// principals signed in and still held, which a session closed after its
// sign-in (one its holder gave up on, say) leaves out.
func (c *scaleCluster) awaitFormed(ctx context.Context, count bool, timeout time.Duration) (int, error) {
	deadline := time.Now().Add(timeout)
	var last string
	for {
		var mu sync.Mutex
		ok := true
		held := 0
		sums := make([]int, len(c.nodes))
		var wg sync.WaitGroup
		sem := make(chan struct{}, 8)
		for i, p := range c.nodes {
			wg.Go(func() {
				sem <- struct{}{}
				defer func() { <-sem }()
				st, err := c.apiNodes(ctx, p)
				why := ""
				if err != nil {
					why = err.Error()
				} else {
					members := 0
					for _, s := range st {
						if s.Gossip != "" && s.Synced {
							members++
						}
						sums[i] += s.Principals
						if s.Self {
							mu.Lock()
							held += s.Principals
							mu.Unlock()
						}
					}
					if members != len(c.nodes) {
						why = fmt.Sprintf("%s sees %d of %d synced members", p.name, members, len(c.nodes))
					}
				}
				if why != "" {
					mu.Lock()
					ok, last = false, why
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		if ok && count {
			for i, sum := range sums {
				if sum != held {
					ok, last = false, fmt.Sprintf("%s shows %d of the %d principals the nodes hold", c.nodes[i].name, sum, held)
					break
				}
			}
		}
		if ok {
			return held, nil
		}
		if time.Now().After(deadline) {
			return held, fmt.Errorf("bench: %d-node cluster not formed after %v: %s", len(c.nodes), timeout, last)
		}
		select {
		case <-ctx.Done():
			return held, ctx.Err()
		case <-time.After(2 * time.Second):
		}
	}
}

// watchers are one session per node, signed in without a terminal, that
// watch the sampled users and timestamp the NLN pushes.
//
// Ownership: newWatchers starts one goroutine per session draining its
// Events; close closes the sessions and waits for those goroutines.
type watchers struct {
	clients []*sessionclient.Client
	wg      sync.WaitGroup

	// mu guards seen.
	mu   sync.Mutex
	seen map[string]map[int]time.Time // "user state" -> node index -> first push
}

func newWatchers(ctx context.Context, c *scaleCluster) (*watchers, error) {
	w := &watchers{seen: map[string]map[int]time.Time{}}
	for i, p := range c.nodes {
		cl, err := sessionclient.Dial(ctx, p.ready.Session)
		if err != nil {
			w.close()
			return nil, fmt.Errorf("bench: watcher on %s: %w", p.name, err)
		}
		w.clients = append(w.clients, cl)
		w.wg.Go(func() {
			for ev := range cl.Events() {
				if ev.Initial {
					continue
				}
				now := time.Now()
				k := ev.User + " " + ev.State.String()
				w.mu.Lock()
				if m := w.seen[k]; m != nil {
					if _, ok := m[i]; !ok {
						m[i] = now
					}
				}
				w.mu.Unlock()
			}
		})
		if _, err := cl.SignIn(ctx, fmt.Sprintf("scalewatch%d", i+1), "*", pr.Online); err != nil {
			w.close()
			return nil, fmt.Errorf("bench: watcher on %s: %w", p.name, err)
		}
	}
	return w, nil
}

func (w *watchers) close() {
	for _, cl := range w.clients {
		cl.Close()
	}
	w.wg.Wait()
}

// each runs f on every watcher at once and returns the first error.
func (w *watchers) each(f func(*sessionclient.Client) error) error {
	errs := make([]error, len(w.clients))
	var wg sync.WaitGroup
	for i, cl := range w.clients {
		wg.Go(func() { errs[i] = f(cl) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// eachOf runs f on the watchers of the nodes idx at once and returns the
// first error.
func (w *watchers) eachOf(idx []int, f func(*sessionclient.Client) error) error {
	errs := make([]error, len(idx))
	var wg sync.WaitGroup
	for j, i := range idx {
		wg.Go(func() { errs[j] = f(w.clients[i]) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// lastOf is when the last of the watchers of the nodes idx got the push
// of user in state st, once every one of them has.
func (w *watchers) lastOf(user string, st pr.State, idx []int) (time.Time, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	m := w.seen[user+" "+st.String()]
	var last time.Time
	for _, i := range idx {
		t, ok := m[i]
		if !ok {
			return time.Time{}, false
		}
		if t.After(last) {
			last = t
		}
	}
	return last, true
}

// expect starts recording pushes of user in state st, forgetting any.
func (w *watchers) expect(user string, st pr.State) {
	w.mu.Lock()
	w.seen[user+" "+st.String()] = map[int]time.Time{}
	w.mu.Unlock()
}

// forget stops recording pushes of user in state st.
func (w *watchers) forget(user string, st pr.State) {
	w.mu.Lock()
	delete(w.seen, user+" "+st.String())
	w.mu.Unlock()
}

// last is when the last watcher got the push of user in state st, once
// every one has.
func (w *watchers) last(user string, st pr.State) (time.Time, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	m := w.seen[user+" "+st.String()]
	if len(m) < len(w.clients) {
		return time.Time{}, false
	}
	var last time.Time
	for _, t := range m {
		if t.After(last) {
			last = t
		}
	}
	return last, true
}

// scaleSignIns times ScaleSignIns sign-ins, one at a time, on the nodes in
// turn, until every node's watcher got the NLN push.
func (h *harness) scaleSignIns(ctx context.Context, c *scaleCluster, w *watchers, res *ScaleResult) error {
	var lat []time.Duration
	for s := range h.cfg.ScaleSignIns {
		user := fmt.Sprintf("vis%d", s)
		if err := w.each(func(cl *sessionclient.Client) error { _, err := cl.Watch(ctx, user); return err }); err != nil {
			return fmt.Errorf("bench: watch %s: %w", user, err)
		}
		w.expect(user, pr.Online)
		origin := c.nodes[s%len(c.nodes)]
		t0 := time.Now()
		cl, err := sessionclient.Dial(ctx, origin.ready.Session)
		if err != nil {
			return fmt.Errorf("bench: sign-in on %s: %w", origin.name, err)
		}
		if _, err = cl.SignIn(ctx, user, "t", pr.Online); err != nil {
			cl.Close()
			return fmt.Errorf("bench: sign-in on %s: %w", origin.name, err)
		}
		var last time.Time
		werr := waitFor(ctx, scaleSampleWait, func() bool {
			var ok bool
			last, ok = w.last(user, pr.Online)
			return ok
		})
		cl.Close()
		w.forget(user, pr.Online)
		if werr != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			res.SignInTimedOut++
			lat = append(lat, scaleSampleWait) // a lower bound
		} else {
			lat = append(lat, last.Sub(t0))
		}
		if err := w.each(func(cl *sessionclient.Client) error { return cl.Unwatch(ctx, user) }); err != nil {
			return fmt.Errorf("bench: unwatch %s: %w", user, err)
		}
	}
	l := summarize(lat)
	res.SignInSamples = l.N
	res.SignInP50ms, res.SignInP99ms, res.SignInMaxms = round1(l.P50us/1000), round1(l.P99us/1000), round1(l.MaxUs/1000)
	h.prog.printf("   sign-in visible on all %d nodes: p50 %.0f ms, p99 %.0f ms, max %.0f ms (n=%d, %d timed out)",
		len(c.nodes), res.SignInP50ms, res.SignInP99ms, res.SignInMaxms, l.N, res.SignInTimedOut)
	if res.SignInTimedOut == l.N {
		return fmt.Errorf("bench: no sign-in became visible on all %d nodes", len(c.nodes))
	}
	return nil
}

// scaleLoad signs ScalePrincipals sessions in, spread over the nodes, in
// holder children, waits until every node shows them all, and measures
// the nodes' RSS growth. The caller closes the holders it returns.
func (h *harness) scaleLoad(ctx context.Context, c *scaleCluster, res *ScaleResult) ([]*holder, error) {
	total := h.cfg.ScalePrincipals
	res.Principals = total
	addrs := make([]string, len(c.nodes))
	for i, p := range c.nodes {
		addrs[i] = p.ready.Session
	}
	before := make([]int64, len(c.nodes))
	for i, p := range c.nodes {
		before[i] = p.rssKiB()
	}
	nh := (total + holderMax - 1) / holderMax
	start := time.Now()
	holders := make([]*holder, nh)
	reps := make([]holderReport, nh)
	errs := make([]error, nh)
	var wg sync.WaitGroup
	for j := range nh {
		lo, hi := j*total/nh, (j+1)*total/nh
		wg.Go(func() {
			spec := holderSpec{Addrs: addrs, First: lo, Count: hi - lo, SignInMillis: h.cfg.ScaleLoadFor.Milliseconds()}
			holders[j], reps[j], errs[j] = startHolder(ctx, spec, h.cfg.ScaleLoadFor+2*time.Minute)
		})
	}
	wg.Wait()
	holders = slices.DeleteFunc(holders, func(hd *holder) bool { return hd == nil })
	var firstFail string
	for _, r := range reps {
		res.Loaded += r.Opened
		res.LoadFailed += r.Failed
		if firstFail == "" {
			firstFail = r.Error
		}
	}
	if err := errors.Join(errs...); err != nil {
		return holders, fmt.Errorf("bench: %d of %d principals signed in: %w", res.Loaded, total, err)
	}
	h.prog.printf("   %d principals signed in over %d nodes by %d holders in %.1fs (%d sign-ins failed%s); waiting for every node to show them",
		res.Loaded, len(c.nodes), nh, time.Since(start).Seconds(), res.LoadFailed, strings.TrimSuffix(", first: "+firstFail, ", first: "))
	if res.Loaded == 0 {
		return holders, fmt.Errorf("bench: no principal signed in within the %v bound (--scale-load-for): %s", h.cfg.ScaleLoadFor, firstFail)
	}
	// Fewer in than asked (the sign-in bound reached, or sign-ins
	// failed) is recorded; the later phases run with those that are.
	var short error
	switch {
	case res.Loaded+res.LoadFailed < total:
		short = fmt.Errorf("bench: %d of %d principals signed in: the %v bound (--scale-load-for) reached, %d sign-ins failed", res.Loaded, total, h.cfg.ScaleLoadFor, res.LoadFailed)
	case res.Loaded < total:
		short = fmt.Errorf("bench: %d of %d principals signed in: %d sign-ins failed (first: %s)", res.Loaded, total, res.LoadFailed, firstFail)
	}
	held, err := c.awaitFormed(ctx, true, 10*time.Minute)
	res.Held = held
	if err != nil {
		return holders, errors.Join(short, err)
	}
	res.LoadSecs = round1(time.Since(start).Seconds())
	res.Converged = true
	// Let the sign-ins' garbage be collected and the known-users writes
	// settle before the memory is read.
	select {
	case <-ctx.Done():
		return holders, ctx.Err()
	case <-time.After(5 * time.Second):
	}
	var delta int64
	for i, p := range c.nodes {
		delta += p.rssKiB() - before[i]
	}
	res.RSSLoadedMiB = round1(float64(c.rssKiB()) / 1024)
	res.BytesPerPrincipal = round1(float64(delta) * 1024 / float64(len(c.nodes)) / float64(max(res.Held, 1)))
	h.prog.printf("   every node shows the %d principals the nodes hold (%d signed in) after %.1fs; RSS %.0f MiB, +%.0f B per principal per node",
		res.Held, res.Loaded, res.LoadSecs, res.RSSLoadedMiB, res.BytesPerPrincipal)
	return holders, short
}

// scaleChurn churns the holders' principals at rate per second for
// ScaleChurnFor while sampled sessions (up to 16, one per node in turn)
// change state every 250 ms; each change is timed until every watcher got
// its push.
func (h *harness) scaleChurn(ctx context.Context, c *scaleCluster, w *watchers, holders []*holder, rate int) (ScaleChurn, error) {
	res := ScaleChurn{Rate: rate}
	type sampler struct {
		user    string
		cl      *sessionclient.Client
		state   pr.State
		at      time.Time // of the pending change; zero when none
		retired bool      // a change timed out: its push may still come
	}
	var samplers []*sampler
	defer func() {
		for _, s := range samplers {
			s.cl.Close()
		}
	}()
	for j := range min(len(c.nodes), 16) {
		s := &sampler{user: fmt.Sprintf("smp%dx%d", rate, j), state: pr.Online}
		cl, err := sessionclient.Dial(ctx, c.nodes[j].ready.Session)
		if err != nil {
			return res, fmt.Errorf("bench: sampler: %w", err)
		}
		s.cl = cl
		samplers = append(samplers, s)
		if err := w.each(func(wc *sessionclient.Client) error { _, err := wc.Watch(ctx, s.user); return err }); err != nil {
			return res, fmt.Errorf("bench: watch %s: %w", s.user, err)
		}
		w.expect(s.user, pr.Online)
		if _, err := cl.SignIn(ctx, s.user, "t", pr.Online); err != nil {
			return res, fmt.Errorf("bench: sampler: %w", err)
		}
	}
	// Every sampler's sign-in reached every node before the churn starts.
	for _, s := range samplers {
		if err := waitFor(ctx, scaleSampleWait, func() bool { _, ok := w.last(s.user, s.state); return ok }); err != nil {
			return res, fmt.Errorf("bench: sampler %s not visible everywhere: %w", s.user, err)
		}
		w.forget(s.user, s.state)
	}

	d := h.cfg.ScaleChurnFor
	reps := make([]holderReport, len(holders))
	errs := make([]error, len(holders))
	done := make(chan struct{})
	go func() { // owned by scaleChurn, which waits on done
		defer close(done)
		var wg sync.WaitGroup
		for j, hd := range holders {
			r := max(1, rate*hd.spec.Count/h.cfg.ScalePrincipals)
			wg.Go(func() { reps[j], errs[j] = hd.churn(ctx, r, d) })
		}
		wg.Wait()
	}()
	var lat []time.Duration
	issue := time.NewTicker(250 * time.Millisecond)
	defer issue.Stop()
	poll := time.NewTicker(10 * time.Millisecond)
	defer poll.Stop()
	var drainEnd <-chan time.Time
	next := 0
	pending := func() int {
		n := 0
		for _, s := range samplers {
			if !s.at.IsZero() {
				n++
			}
		}
		return n
	}
loop:
	for {
		select {
		case <-done:
			done = nil
			issue.Stop()
			drainEnd = time.After(scaleSampleWait)
		case <-drainEnd:
			break loop
		case <-ctx.Done():
			break loop
		case <-issue.C:
			for range samplers {
				s := samplers[next%len(samplers)]
				next++
				if !s.at.IsZero() || s.retired {
					continue
				}
				st := pr.Busy
				if s.state == pr.Busy {
					st = pr.Online
				}
				w.expect(s.user, st)
				s.at = time.Now()
				if err := s.cl.SetState(ctx, st); err != nil {
					return res, fmt.Errorf("bench: %s CHG: %w", s.user, err)
				}
				s.state = st
				break
			}
		case <-poll.C:
			for _, s := range samplers {
				if s.at.IsZero() {
					continue
				}
				if last, ok := w.last(s.user, s.state); ok {
					lat = append(lat, last.Sub(s.at))
					w.forget(s.user, s.state)
					s.at = time.Time{}
				} else if time.Since(s.at) > scaleSampleWait {
					res.TimedOut++
					lat = append(lat, scaleSampleWait) // a lower bound
					s.at, s.retired = time.Time{}, true
				}
			}
		}
		if done == nil && pending() == 0 {
			break
		}
	}
	if done != nil {
		<-done // the holders' churn is bounded by d
	}
	for _, s := range samplers {
		if !s.at.IsZero() {
			res.TimedOut++
			lat = append(lat, max(scaleSampleWait, time.Since(s.at))) // a lower bound
		}
	}
	for _, r := range reps {
		res.Ops += r.Ops
		res.Failed += r.Failed
		res.Secs = max(res.Secs, r.Secs)
	}
	if res.Secs > 0 {
		res.AchievedRate = round1(float64(res.Ops) / res.Secs)
	}
	l := summarize(lat)
	res.Samples = l.N // timed-out ones included, as lower bounds
	res.P50ms, res.P99ms, res.Maxms = round1(l.P50us/1000), round1(l.P99us/1000), round1(l.MaxUs/1000)
	h.prog.printf("   churn at %d/s: %d ops in %.1fs (%.0f/s, %d failed); state change visible everywhere p50 %.0f ms, p99 %.0f ms, max %.0f ms (n=%d, %d timed out)",
		rate, res.Ops, res.Secs, res.AchievedRate, res.Failed, res.P50ms, res.P99ms, res.Maxms, l.N, res.TimedOut)
	if err := errors.Join(errs...); err != nil {
		return res, err
	}
	if ctx.Err() != nil {
		return res, ctx.Err()
	}
	return res, nil
}

// scaleSoak churns the holders' principals at ScaleSoakRate for
// ScaleSoak: a long loaded stretch in which the false deaths are counted
// (issue 22: "no false positive in a 10-minute loaded run").
func (h *harness) scaleSoak(ctx context.Context, holders []*holder, res *ScaleResult) error {
	rate, d := h.cfg.ScaleSoakRate, h.cfg.ScaleSoak
	res.SoakRate = rate
	h.prog.printf("   soak: churn at %d/s for %v", rate, d)
	reps := make([]holderReport, len(holders))
	errs := make([]error, len(holders))
	var wg sync.WaitGroup
	for j, hd := range holders {
		r := max(1, rate*hd.spec.Count/h.cfg.ScalePrincipals)
		wg.Go(func() { reps[j], errs[j] = hd.churn(ctx, r, d) })
	}
	wg.Wait()
	for _, r := range reps {
		res.SoakOps += r.Ops
		res.SoakFailed += r.Failed
		res.SoakSecs = max(res.SoakSecs, r.Secs)
	}
	h.prog.printf("   soak: %d ops in %.1fs (%d failed)", res.SoakOps, res.SoakSecs, res.SoakFailed)
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("bench: soak: %w", err)
	}
	return nil
}

// crashVictims are the indices of the nodes the crash phase kills, in
// order: n of them (at most all but s1), spread over s2..sN from the last.
func crashVictims(nodes, n int) []int {
	n = min(n, nodes-1)
	var out []int
	for j := range max(n, 0) {
		out = append(out, nodes-1-j*(nodes-1)/n)
	}
	return out
}

// scaleCrash is a cluster's last phase: for each victim K in turn, a user
// signs in on K, every other live node's watcher watches her, and K gets
// SIGKILL; the sample is the time from the kill until every other live
// node's watcher got her offline push. Killed nodes stay dead.
func (h *harness) scaleCrash(ctx context.Context, c *scaleCluster, w *watchers, res *ScaleResult) error {
	victims := crashVictims(len(c.nodes), h.cfg.ScaleCrashes)
	if len(victims) == 0 {
		return nil
	}
	dead := map[int]bool{}
	var lat []time.Duration
	defer func() {
		if len(lat) == 0 {
			return
		}
		l := summarize(lat)
		res.CrashP50ms, res.CrashMaxms = round1(l.P50us/1000), round1(l.MaxUs/1000)
		h.prog.printf("   crash detected on all other nodes: p50 %.0f ms, max %.0f ms (n=%d, %d not within 30 s)",
			res.CrashP50ms, res.CrashMaxms, l.N, res.CrashTimedOut)
	}()
	for j, k := range victims {
		var others []int
		for i := range c.nodes {
			if i != k && !dead[i] {
				others = append(others, i)
			}
		}
		user := fmt.Sprintf("crash%d", j)
		victim := c.nodes[k]
		if err := w.eachOf(others, func(cl *sessionclient.Client) error { _, err := cl.Watch(ctx, user); return err }); err != nil {
			return fmt.Errorf("bench: crash: watch %s: %w", user, err)
		}
		w.expect(user, pr.Online)
		cl, err := sessionclient.Dial(ctx, victim.ready.Session)
		if err != nil {
			return fmt.Errorf("bench: crash: sign-in on %s: %w", victim.name, err)
		}
		if _, err := cl.SignIn(ctx, user, "t", pr.Online); err != nil {
			cl.Close()
			return fmt.Errorf("bench: crash: sign-in on %s: %w", victim.name, err)
		}
		// Her sign-in must be known everywhere first, or an offline
		// push could not follow.
		if err := waitFor(ctx, scaleSampleWait, func() bool { _, ok := w.lastOf(user, pr.Online, others); return ok }); err != nil {
			cl.Close()
			return fmt.Errorf("bench: crash: %s's sign-in on %s not visible on every other node: %w", user, victim.name, err)
		}
		w.forget(user, pr.Online)
		w.expect(user, pr.Offline)
		t0 := c.crashNode(k)
		dead[k] = true
		res.Crashes++
		res.CrashNodes = append(res.CrashNodes, victim.name)
		cl.Close()
		var last time.Time
		werr := waitFor(ctx, scaleSampleWait, func() bool {
			var ok bool
			last, ok = w.lastOf(user, pr.Offline, others)
			return ok
		})
		w.forget(user, pr.Offline)
		if werr != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			res.CrashTimedOut++
			lat = append(lat, scaleSampleWait) // a lower bound
			h.prog.printf("   %s killed (SIGKILL): %s not offline on all %d other nodes within %v", victim.name, user, len(others), scaleSampleWait)
		} else {
			lat = append(lat, last.Sub(t0))
			h.prog.printf("   %s killed (SIGKILL): %s offline on all %d other nodes after %.0f ms", victim.name, user, len(others),
				float64(last.Sub(t0).Microseconds())/1000)
		}
		if err := w.eachOf(others, func(cl *sessionclient.Client) error { return cl.Unwatch(ctx, user) }); err != nil {
			return fmt.Errorf("bench: crash: unwatch %s: %w", user, err)
		}
	}
	return nil
}

// byPhase formats false deaths by phase, "" when there are none.
func byPhase(m map[string]int) string {
	if len(m) == 0 {
		return ""
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	return "; by phase: " + strings.Join(parts, ", ")
}

// scaleSummary is one line per cluster for the report.
func scaleSummary(r ScaleResult) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d nodes %s: sign-in p99 %.0f ms", r.Nodes, r.Profile, r.SignInP99ms)
	for _, c := range r.Churn {
		fmt.Fprintf(&b, ", churn %d/s p99 %.0f ms", c.Rate, c.P99ms)
	}
	if r.Crashes > 0 {
		fmt.Fprintf(&b, ", crash detected p50 %.0f ms max %.0f ms", r.CrashP50ms, r.CrashMaxms)
	}
	fmt.Fprintf(&b, ", %d false deaths in %.0f s", r.FalseDeaths, r.FalseDeathSecs)
	return b.String()
}

// validateScale checks the scale scenario's sizes.
func (c *Config) validateScale() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrConfig, fmt.Sprintf(format, a...))
	}
	for _, n := range c.ScaleNodes {
		if n < 2 || n > 300 {
			return bad("scale cluster size %d: want 2..300", n)
		}
	}
	for _, p := range c.ScaleProfiles {
		switch p {
		case "lan", "wan", "local":
		default:
			return bad("scale gossip profile %q: want lan, wan or local", p)
		}
	}
	switch {
	case c.ScaleSignIns < 1 || c.ScaleSignIns > 10_000:
		return bad("scale sign-ins %d: want 1..10000", c.ScaleSignIns)
	case c.ScalePrincipals < 0 || c.ScalePrincipals > 1_000_000:
		return bad("scale principals %d: want 0..1000000", c.ScalePrincipals)
	case c.ScaleLoadNodes < 0:
		return bad("scale load nodes %d: want >= 0 (0: no load)", c.ScaleLoadNodes)
	case c.ScaleChurnFor < 0 || c.ScaleChurnFor > time.Hour:
		return bad("scale churn %v: want 0..1h", c.ScaleChurnFor)
	case c.ScaleLoadFor < 0 || c.ScaleLoadFor > 24*time.Hour:
		return bad("scale load bound %v: want 0..24h (0: the default, %v)", c.ScaleLoadFor, DefaultConfig().ScaleLoadFor)
	case c.ScaleSoak < 0 || c.ScaleSoak > 24*time.Hour:
		return bad("scale soak %v: want 0..24h (0: none)", c.ScaleSoak)
	case c.ScaleSoakRate < 0 || c.ScaleSoakRate > 100_000:
		return bad("scale soak rate %d: want 0..100000 (0: the default, %d)", c.ScaleSoakRate, DefaultConfig().ScaleSoakRate)
	case c.ScaleCrashes < 0 || c.ScaleCrashes > 100:
		return bad("scale crashes %d: want 0..100 (0: no crash phase)", c.ScaleCrashes)
	}
	if c.ScaleLoadFor == 0 {
		c.ScaleLoadFor = DefaultConfig().ScaleLoadFor
	}
	if c.ScaleSoakRate == 0 {
		c.ScaleSoakRate = DefaultConfig().ScaleSoakRate
	}
	for _, r := range c.ScaleChurnRates {
		if r < 1 || r > 100_000 {
			return bad("scale churn rate %d: want 1..100000", r)
		}
	}
	return nil
}
