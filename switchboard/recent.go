package switchboard

import (
	"context"
	"sync"
	"time"
)

// recentIDs remembers, per user, the ids of messages this node has recently
// delivered to (or is delivering to) her lines, so that one message arriving
// several times — a UDP retransmission, the same datagram sent to two
// ingress nodes, a mailbox redelivery after a crash — reaches her once. The
// repeat is answered with the first attempt's result.
//
// It is bounded in time (window) and size (max entries, oldest evicted
// first). mu guards byKey and order.
type recentIDs struct {
	window time.Duration
	max    int
	now    func() time.Time

	mu    sync.Mutex
	byKey map[recentKey]*attempt
	order []*attempt // insertion order from head on, for expiry and eviction; may hold stale pointers
	head  int
}

type recentKey struct{ user, id string } // canonical user

// attempt is one delivery of one message id to one user's lines on this
// node. Its fields below key are guarded by r.mu. done is made only when a
// repeat waits (most attempts never have one, and a channel per message
// is garbage) and closed by finish.
type attempt struct {
	key      recentKey
	at       time.Time
	r        *recentIDs
	finished bool
	status   Status
	done     chan struct{}
}

func newRecentIDs(window time.Duration, max int, now func() time.Time) *recentIDs {
	return &recentIDs{window: window, max: max, now: now, byKey: map[recentKey]*attempt{}}
}

// claim returns the attempt for (user, id) and whether the caller owns it
// (and must call finish). A caller that does not own it waits for the
// owner's result with wait. An attempt whose message ended up Queued is
// final for direct deliveries (the repeat is answered "queued"), but not
// for the mailbox drainer (retake): delivering the queued copy is its job.
func (r *recentIDs) claim(user, id string, retake bool) (*attempt, bool) {
	a := &attempt{key: recentKey{user, id}, at: r.now(), r: r}
	if id == "" {
		return a, true // no identity: nothing to compare with
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.pruneLocked(a.at)
	if prev, ok := r.byKey[a.key]; ok {
		if !(retake && prev.finished && prev.status == Queued) {
			return prev, false
		}
	}
	r.byKey[a.key] = a
	r.order = append(r.order, a)
	return a, true
}

// finish records the owner's result. Only accepted results are remembered:
// after a failure the next attempt must try again.
func (r *recentIDs) finish(a *attempt, st Status) {
	r.mu.Lock()
	a.status, a.finished = st, true
	if st != Delivered && st != Queued && r.byKey[a.key] == a {
		delete(r.byKey, a.key)
	}
	done := a.done
	r.mu.Unlock()
	if done != nil {
		close(done)
	}
}

// wait waits for a's result, at most d or until ctx ends; ok is false when
// it did not come.
func (a *attempt) wait(ctx context.Context, d time.Duration) (st Status, ok bool) {
	r := a.r
	r.mu.Lock()
	if a.finished {
		r.mu.Unlock()
		return a.status, true
	}
	if a.done == nil {
		a.done = make(chan struct{})
	}
	done := a.done
	r.mu.Unlock()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
		r.mu.Lock()
		defer r.mu.Unlock()
		return a.status, true
	case <-ctx.Done():
	case <-t.C:
	}
	return 0, false
}

// pruneLocked drops expired attempts and, beyond max, the oldest ones.
func (r *recentIDs) pruneLocked(now time.Time) {
	for r.head < len(r.order) {
		a := r.order[r.head]
		if now.Sub(a.at) < r.window && len(r.order)-r.head <= r.max {
			break
		}
		if r.byKey[a.key] == a {
			delete(r.byKey, a.key)
		}
		r.order[r.head] = nil
		r.head++
	}
	// Compact once the dead prefix is the larger half: amortised O(1).
	if r.head > 0 && r.head >= len(r.order)/2 {
		r.order = append(r.order[:0], r.order[r.head:]...)
		r.head = 0
	}
}
