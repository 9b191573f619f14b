package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"runtime/debug"
	"slices"
	"sync"
	"time"

	"github.com/msprelay/msprelay/presence"
	"github.com/msprelay/msprelay/principal"
)

// DirectoryResult is a large directory: memory and update propagation.
type DirectoryResult struct {
	Nodes      int `json:"nodes"`
	Principals int `json:"principals"`
	// LoadSecs: from the first Upsert until every node holds every
	// principal (each origin's last principal visible, every member synced).
	LoadSecs float64 `json:"load_seconds"`
	// Complete: after loading, every node's All() held exactly Principals.
	Complete bool `json:"complete"`
	// Memory of the loaded directories (heap after GC, and process RSS),
	// less the same cluster empty. Every node holds every principal, so
	// there are Nodes x Principals entry replicas.
	HeapMiB         float64 `json:"heap_mib"`
	RSSMiB          float64 `json:"rss_mib"`
	HeapPerNodeMiB  float64 `json:"heap_per_node_mib"`
	BytesPerReplica float64 `json:"bytes_per_entry_replica"`
	// LookupUs is the median time of one Lookup on a loaded node.
	LookupUs float64 `json:"lookup_us"`
	// Churn: sign-outs and sign-ins at ChurnRate per second for ChurnSecs,
	// while sampled state changes are timed until every node shows them.
	ChurnOps        int     `json:"churn_ops"`
	ChurnSecs       float64 `json:"churn_seconds"`
	ChurnRate       float64 `json:"churn_rate"`
	UpdateSamples   int     `json:"update_samples"`
	UpdateP50ms     float64 `json:"update_p50_ms"`
	UpdateP99ms     float64 `json:"update_p99_ms"`
	UpdateMaxms     float64 `json:"update_max_ms"`
	UpdatesTimedOut int     `json:"updates_timed_out"`
}

// memNow is the heap after a full collection and the process RSS, in bytes.
func memNow() (heap, rss uint64) {
	runtime.GC()
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc, uint64(procKiB("/proc/self/status", "VmRSS")) * 1024
}

func principalName(node, k int) string { return fmt.Sprintf("u%dx%d", node, k) }

// nodeIndex is i for the directory scenario's node "d-<i+1>".
func nodeIndex(name string) int {
	var i int
	fmt.Sscanf(name, "d-%d", &i)
	return i - 1
}

const lookupSamples = 51

// timeLookups is the median time of one Directory.Lookup of user, the call
// the switchboard makes to resolve every message's recipient.
func timeLookups(d *presence.Directory, user string) float64 {
	var lat []time.Duration
	for range lookupSamples {
		t0 := time.Now()
		d.Lookup(user)
		lat = append(lat, time.Since(t0))
	}
	return summarize(lat).P50us
}

// directory loads Principals over Nodes, measures memory and the time until
// all nodes agree, then churns while timing sampled updates.
func (h *harness) directory(ctx context.Context) (*DirectoryResult, error) {
	n, total := h.cfg.DirectoryNodes, h.cfg.DirectoryPrincipals
	res := &DirectoryResult{Nodes: n, Principals: total}
	c, err := startGossipCluster(ctx, n, "d")
	if err != nil {
		return nil, err
	}
	defer c.close()
	heap0, rss0 := memNow()

	// Node i owns principals k = 0..per[i]-1.
	per := make([]int, n)
	for i := range per {
		per[i] = total / n
		if i < total%n {
			per[i]++
		}
	}
	start := time.Now()
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i, g := range c.nodes {
		wg.Go(func() {
			for k := range per[i] {
				if err := g.dir.Upsert(principal.Entry{User: principalName(i, k), Term: "t", State: principal.Online}); err != nil {
					errs[i] = err
					return
				}
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, fmt.Errorf("bench: load directory: %w", err)
		}
	}
	h.prog.printf("   %d principals upserted on %d nodes in %.1fs; waiting for every node to hold all", total, n, time.Since(start).Seconds())
	// Converged when every node has every member synced with its full
	// count (from the digests: cheap to poll), confirmed below by counting.
	err = waitFor(ctx, 180*time.Second, func() bool {
		for _, g := range c.nodes {
			for _, m := range g.dir.Members() {
				if !m.Synced || m.Principals != per[nodeIndex(m.Name)] {
					return false
				}
			}
		}
		return true
	})
	if err != nil {
		return nil, fmt.Errorf("bench: directory did not converge: %w", err)
	}
	res.LoadSecs = round1(time.Since(start).Seconds())
	res.Complete = true
	for _, g := range c.nodes {
		if got := len(g.dir.All()); got != total {
			res.Complete = false
			h.prog.printf("   %s holds %d of %d principals", g.dir.Name(), got, total)
		}
	}
	heap1, rss1 := memNow()
	res.HeapMiB = round1(float64(int64(heap1)-int64(heap0)) / (1 << 20))
	res.RSSMiB = round1(float64(int64(rss1)-int64(rss0)) / (1 << 20))
	res.HeapPerNodeMiB = round1(res.HeapMiB / float64(n))
	res.BytesPerReplica = round1(float64(int64(heap1)-int64(heap0)) / float64(total*n))
	h.prog.printf("   converged in %.1fs; heap +%.0f MiB (%.0f B per entry replica), RSS +%.0f MiB",
		res.LoadSecs, res.HeapMiB, res.BytesPerReplica, res.RSSMiB)
	res.LookupUs = timeLookups(c.nodes[0].dir, principalName(n-1, 0))
	h.prog.printf("   one Lookup on a loaded node: %.0f µs (median of %d)", res.LookupUs, lookupSamples)

	if h.cfg.ChurnFor > 0 {
		h.churn(ctx, c, per, res)
	}
	return res, ctx.Err()
}

// churn signs principals out and in again at ChurnRate per second for
// ChurnFor (bounded by count too) on random nodes, and meanwhile times
// sampled state changes until every node shows them. Principals k with
// k%10 == 0 are reserved for samples, the others churn.
func (h *harness) churn(ctx context.Context, c *gossipCluster, per []int, res *DirectoryResult) {
	n := len(c.nodes)
	clock := newEventClock()
	for _, g := range c.nodes {
		clock.watch(g.dir)
	}
	defer clock.unwatch()
	maxOps := int(h.cfg.ChurnFor.Seconds()*float64(h.cfg.ChurnRate)) + 1
	interval := time.Second / time.Duration(h.cfg.ChurnRate)
	done := make(chan struct{})
	churned := done // done is set to nil once it has fired
	ops := 0
	start := time.Now()
	var churnSecs float64
	go func() { // owned by churn, which waits on done
		defer close(done)
		rng := rand.New(rand.NewPCG(1, 2))
		out := map[[2]int]bool{}
		for ops < maxOps && time.Since(start) < h.cfg.ChurnFor && ctx.Err() == nil {
			if d := time.Until(start.Add(time.Duration(ops) * interval)); d > 0 {
				time.Sleep(d)
			}
			i := rng.IntN(n)
			if per[i] < 2 {
				continue
			}
			k := 1 + rng.IntN(per[i]-1)
			if k%10 == 0 {
				k++
			}
			if k >= per[i] {
				continue
			}
			key := [2]int{i, k}
			if out[key] {
				c.nodes[i].dir.Upsert(principal.Entry{User: principalName(i, k), Term: "t", State: principal.Online})
			} else {
				c.nodes[i].dir.Remove(principalName(i, k), "t")
			}
			out[key] = !out[key]
			ops++
		}
		churnSecs = time.Since(start).Seconds()
	}()

	// Samples are issued every 250 ms whatever the earlier ones are
	// doing, and each is timed until every node's directory delivered its
	// event (bounded by sampleWait after the churn ends). Sampled principals
	// never churn, so their first event after subscribing is the sample.
	type sample struct {
		user string
		at   time.Time
	}
	const sampleWait = 30 * time.Second
	var lat []time.Duration
	var pending []sample
	issue := time.NewTicker(250 * time.Millisecond)
	defer issue.Stop()
	poll := time.NewTicker(10 * time.Millisecond)
	defer poll.Stop()
	var churnEnd <-chan time.Time
	for s := 0; ; {
		select {
		case <-done:
			done = nil // churn over: stop issuing, drain what is pending
			churnEnd = time.After(sampleWait)
			issue.Stop()
		case <-churnEnd:
			res.UpdatesTimedOut = len(pending)
			pending = nil
		case <-issue.C:
			i, k := s%n, 10*(s/n)
			s++
			if k >= per[i] {
				continue
			}
			user := principalName(i, k)
			if err := c.nodes[i].dir.Upsert(principal.Entry{User: user, Term: "t", State: principal.Busy}); err == nil {
				pending = append(pending, sample{user, time.Now()})
			}
		case <-poll.C:
			pending = slices.DeleteFunc(pending, func(sm sample) bool {
				last, ok := clock.last("+"+sm.user, c.nodes)
				if ok {
					lat = append(lat, last.Sub(sm.at))
				}
				return ok
			})
		case <-ctx.Done():
			<-churned // the churn goroutine watches ctx too
			done, pending = nil, nil
		}
		if done == nil && len(pending) == 0 {
			break
		}
	}
	<-churned
	res.ChurnOps, res.ChurnSecs = ops, round1(churnSecs)
	if churnSecs > 0 {
		res.ChurnRate = round1(float64(ops) / churnSecs)
	}
	l := summarize(lat)
	res.UpdateSamples = l.N
	res.UpdateP50ms, res.UpdateP99ms, res.UpdateMaxms = round1(l.P50us/1000), round1(l.P99us/1000), round1(l.MaxUs/1000)
	h.prog.printf("   churn %d ops in %.1fs; state change visible everywhere p50 %.0fms p99 %.0fms (n=%d, %d timed out)",
		ops, churnSecs, res.UpdateP50ms, res.UpdateP99ms, l.N, res.UpdatesTimedOut)
}
