package bench

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/msprelay/msprelay/principal"
	"github.com/msprelay/msprelay/sessionclient"
)

// receivers are the signed-in sessions messages are sent to. Each drains its
// session's push channel in its own goroutine and turns the send time in the
// text into a delivery latency.
//
// Ownership: receivers owns the session clients and the drain goroutines;
// close ends both and waits.
type receivers struct {
	clock clock
	rs    []*receiver
	wg    sync.WaitGroup
}

type receiver struct {
	cl   *sessionclient.Client // nil for a listen process
	lp   *listenProc           // nil for an in-process session
	user string
	got  atomic.Int64 // messages of the current round

	// mu guards round and lat.
	mu    sync.Mutex
	round int
	lat   []time.Duration
}

// signInReceivers opens n sessions to the session listener at addr and
// signs users prefix0..prefix(n-1) in at terminal term.
func signInReceivers(ctx context.Context, addr string, n int, prefix, term string, clk clock) (*receivers, error) {
	rs := &receivers{clock: clk}
	for i := range n {
		user := prefix + strconv.Itoa(i)
		cl, err := sessionclient.Dial(ctx, addr)
		if err != nil {
			rs.close()
			return nil, fmt.Errorf("bench: receiver %s: %w", user, err)
		}
		if _, err := cl.SignIn(ctx, user, term, principal.Online); err != nil {
			cl.Close()
			rs.close()
			return nil, fmt.Errorf("bench: receiver %s: sign in: %w", user, err)
		}
		r := &receiver{cl: cl, user: user}
		rs.rs = append(rs.rs, r)
		rs.wg.Go(func() { r.drain(clk) })
	}
	return rs, nil
}

func (r *receiver) drain(clk clock) {
	for m := range r.cl.Messages() {
		r.record(m.Text, clk.now())
	}
}

// record counts the message whose text is text, arrived at now, if it
// belongs to the current round.
func (r *receiver) record(text string, now time.Duration) {
	round, sent, ok := parseStamp(text)
	if !ok {
		return
	}
	r.mu.Lock()
	if round == r.round {
		r.lat = append(r.lat, now-sent)
		r.got.Add(1)
	}
	r.mu.Unlock()
}

func (rs *receivers) users() []string {
	out := make([]string, len(rs.rs))
	for i, r := range rs.rs {
		out[i] = r.user
	}
	return out
}

// begin starts counting messages of round; stragglers of earlier rounds are
// ignored from now on.
func (rs *receivers) begin(round int) {
	for _, r := range rs.rs {
		r.mu.Lock()
		r.round, r.lat = round, r.lat[:0]
		r.got.Store(0)
		r.mu.Unlock()
	}
}

// collect waits (at most wait) until want messages of the current round
// have arrived and returns their delivery latencies.
func (rs *receivers) collect(want int64, wait time.Duration) []time.Duration {
	deadline := time.Now().Add(wait)
	for rs.count() < want && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	var out []time.Duration
	for _, r := range rs.rs {
		r.mu.Lock()
		out = append(out, r.lat...)
		r.mu.Unlock()
	}
	return out
}

func (rs *receivers) count() int64 {
	var n int64
	for _, r := range rs.rs {
		n += r.got.Load()
	}
	return n
}

// close signs every session out (stops every listen process) and waits
// for the drain goroutines.
func (rs *receivers) close() {
	for _, r := range rs.rs {
		if r.cl != nil {
			r.cl.Close()
		}
		if r.lp != nil {
			r.lp.stop()
		}
	}
	rs.wg.Wait()
}
