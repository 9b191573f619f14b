package bench

import (
	"context"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/msprelay/msprelay/msp"
	"github.com/msprelay/msprelay/switchboard"
)

// AllocResult is the node's allocation cost per message in one load mode,
// measured in a child process that runs only the node (the load generator
// and the receiving sessions are in the parent).
type AllocResult struct {
	Workload string `json:"workload,omitempty"` // empty in reports from before the hot workload: spread
	Mode     string `json:"mode"`
	Messages int    `json:"messages"` // per measured batch
	Batches  int    `json:"batches"`
	Warmup   int    `json:"warmup"`
	// Before is how many messages the node had been sent before the first
	// measured batch (every earlier mode and workload and this warm-up).
	// WindowsFull: that is more than the node's recent-id window, and for
	// UDP this warm-up alone is more than the UDP duplicate filter, so the
	// live heap is measured with the windows full.
	Before      int64 `json:"messages_before,omitempty"`
	WindowsFull bool  `json:"windows_full,omitempty"`
	Failed      int64 `json:"failed"`
	// AllocsPerMsg is runtime.MemStats Mallocs over each batch divided by
	// its messages; BytesPerMsg is TotalAlloc over all batches per message.
	AllocsPerMsg []float64 `json:"allocs_per_msg"`
	BytesPerMsg  float64   `json:"bytes_per_msg"`
	// HeapKiB is the live heap after a full GC, after the warm-up and after
	// each batch; HeapSlope is its least-squares slope against messages
	// sent. RetainedPerMsg is its growth over the last two batches per
	// message: what each message leaves behind once the node is in steady
	// state. A leak of one small object per message shows as 16 or more.
	// The node's duplicate caches (65,536 recent message ids, 16,384 UDP
	// cookies, five minutes) are full after the warm-up, but the maps
	// holding them keep resizing as entries are replaced for a few hundred
	// thousand messages, which HeapSlope includes and the tail mostly not.
	HeapKiB        []int64 `json:"heap_kib"`
	HeapSlope      float64 `json:"heap_slope_bytes_per_msg"`
	RetainedPerMsg float64 `json:"retained_bytes_per_msg"`
	// NoGrowth: no batch allocated more per message than the first (within
	// 2% + 0.5) and RetainedPerMsg is under 8 bytes.
	NoGrowth bool `json:"no_growth"`
}

// The node's duplicate windows: switchboard keeps the ids of the last
// switchboard.MaxRecentIDs messages, the MSP server the
// identities of the last msp.DefaultDedupEntries UDP messages (both for
// five minutes). Live-heap growth means something only once they are full.
const (
	recentIDWindow = switchboard.MaxRecentIDs
	udpDedupWindow = msp.DefaultDedupEntries
)

// windowsFull reports whether the node's duplicate windows are full for
// mode after before messages in all, warm of them in mode just now.
func windowsFull(mode string, before int64, warm int) bool {
	if mode == ModeUDP && warm <= udpDedupWindow {
		return false
	}
	return before > recentIDWindow
}

// allocBatches is how many equal batches follow the warm-up.
const allocBatches = 4

// warmupFactor scales Config.AllocWarmup per mode. The node's duplicate
// caches fill within the warm-up (65,536 recent message ids, 16,384 UDP
// cookies), but the maps holding them keep resizing as entries are replaced
// until several times their size has gone through; only then is the live
// heap flat (measured: the MSP server alone settles after about 160,000 UDP
// datagrams, the node's recent-id map after some 800,000 messages). The
// pipelined mode runs first and is the fastest, so its long warm-up settles
// the recent-id map for all modes; UDP needs its own for the cookie map.
func warmupFactor(mode string) float64 {
	switch mode {
	case ModeTCPPipe:
		return 12
	case ModeUDP:
		return 2.5
	}
	return 1
}

// allocs measures the node's MSP hot path in each workload and load mode:
// a warm-up (long enough to fill the node's bounded caches), then equal
// batches with the child's allocation counters read before and after each
// (every reading follows a full GC). The child writes the profiles of
// profs.
func (h *harness) allocs(ctx context.Context, profs *childProfiles) ([]AllocResult, error) {
	c, err := startChild(ChildNode, profs.env()...)
	if err != nil {
		return nil, err
	}
	defer c.close()
	var out []AllocResult
	var sent int64 // messages the child has been sent so far
	for _, wl := range h.cfg.Workloads {
		rs, err := h.allocsWorkload(ctx, c, wl, &sent, profs)
		out = append(out, rs...)
		if err != nil {
			return out, err
		}
	}
	// The child writes its profiles when it stops: stop it now, so that
	// they are complete when Run reads them.
	if err := c.close(); err != nil {
		return out, fmt.Errorf("bench: node child: %w: %s", err, c.stderr.Bytes())
	}
	return out, nil
}

func (h *harness) allocsWorkload(ctx context.Context, c *child, wl string, sent *int64, profs *childProfiles) ([]AllocResult, error) {
	rcv, rterm, err := h.signInWorkload(ctx, c.ready.Session, wl)
	if err != nil {
		return nil, err
	}
	defer rcv.close()
	users := rcv.users()
	var out []AllocResult
	for _, mode := range h.cfg.AllocModes {
		l := h.newLoad(mode, c.ready.MSP, users, rterm)
		batch := func(n int) (Round, error) {
			h.rounds++
			r := &run{round: h.rounds, clock: h.clock, deadline: time.Now().Add(2 * time.Minute), max: int64(n)}
			rcv.begin(r.round)
			stop := h.prog.track(fmt.Sprintf("allocs %s %s %d messages", wl, mode, n), &r.done)
			res, _ := l.exec(ctx, r)
			stop()
			*sent += res.Sent
			// Deliveries are pushed after the '+': wait for them so that
			// their cost lands in this batch.
			res.Delivered = int64(len(rcv.collect(res.OK, 5*time.Second)))
			return res, ctx.Err()
		}
		warm := int(float64(h.cfg.AllocWarmup) * warmupFactor(mode))
		if warm > 0 {
			if _, err := batch(warm); err != nil {
				return out, err
			}
		}
		res := AllocResult{Workload: wl, Mode: mode, Messages: h.cfg.AllocMessages, Batches: allocBatches, Warmup: warm,
			Before: *sent, WindowsFull: windowsFull(mode, *sent, warm)}
		if err := profs.beginPath(c, wl, mode); err != nil {
			return out, err
		}
		mem := make([]childMem, allocBatches+1)
		for i := range mem {
			if i > 0 {
				r, err := batch(h.cfg.AllocMessages)
				if err != nil {
					return out, err
				}
				res.Failed += r.Failed
			}
			if mem[i], err = c.mem(); err != nil {
				return out, err
			}
		}
		if err := profs.endPath(c); err != nil {
			return out, err
		}
		n := float64(h.cfg.AllocMessages)
		xs, ys := make([]float64, len(mem)), make([]float64, len(mem))
		for i, m := range mem {
			if i > 0 {
				res.AllocsPerMsg = append(res.AllocsPerMsg, round1(float64(m.Mallocs-mem[i-1].Mallocs)/n))
			}
			res.HeapKiB = append(res.HeapKiB, int64(m.HeapAlloc/1024))
			xs[i], ys[i] = float64(i)*n, float64(m.HeapAlloc)
		}
		res.BytesPerMsg = math.Round(float64(mem[len(mem)-1].TotalAlloc-mem[0].TotalAlloc) / (n * allocBatches))
		res.HeapSlope = round1(slope(xs, ys))
		tail := int64(mem[len(mem)-1].HeapAlloc) - int64(mem[len(mem)-3].HeapAlloc)
		res.RetainedPerMsg = round1(float64(tail) / (2 * n))
		res.NoGrowth = slices.Max(res.AllocsPerMsg) <= res.AllocsPerMsg[0]*1.02+0.5 && res.RetainedPerMsg < 8
		h.prog.printf("   %-6s %-8s allocs/msg %v, %4.0f B/msg, live heap %v KiB: slope %+.1f, last two batches %+.1f B/msg, %d failed",
			wl, mode, res.AllocsPerMsg, res.BytesPerMsg, res.HeapKiB, res.HeapSlope, res.RetainedPerMsg, res.Failed)
		out = append(out, res)
	}
	return out, nil
}

// slope is the least-squares slope of ys against xs.
func slope(xs, ys []float64) float64 {
	var mx, my float64
	for i := range xs {
		mx += xs[i]
		my += ys[i]
	}
	mx /= float64(len(xs))
	my /= float64(len(ys))
	var num, den float64
	for i := range xs {
		num += (xs[i] - mx) * (ys[i] - my)
		den += (xs[i] - mx) * (xs[i] - mx)
	}
	if den == 0 {
		return 0
	}
	return num / den
}
