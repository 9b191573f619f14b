package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The scale scenario's principals are real signed-in sessions: one TCP
// connection each, signed in with USR and left idle. A process may hold
// fewer descriptors than 100,000 connections need (RLIMIT_NOFILE), so the
// connections are held by "holder" children (this binary again, ChildEnv
// set to ChildHolder), each with at most holderMax of them. A holder
// signs its share in, reports, and on command churns it: closes a random
// signed-in connection of its share (the session drops, as a closed
// terminal does) or signs a signed-out one in again.

// ChildHolder is the child mode that holds scale-scenario sessions.
const ChildHolder = "holder"

// holderEnv carries a holder's holderSpec (JSON).
const holderEnv = "MSPBENCH_HOLDER"

// holderMax is the most sessions one holder holds, below the usual
// descriptor limit of 20,000 with room for the rest.
const holderMax = 15_000

// holderWorkers is the number of connections one holder signs in (or
// churns) at once. A sign-in is a round trip to a busy node, so the rates
// asked for (1,000/s) need many in flight; a node accepts 64 pending
// sign-ins per listener, and the connections go to the nodes in turn.
const holderWorkers = 32

// holderSpec is one holder's share: principals First..First+Count-1,
// principal k being user "p<k>" at terminal "t" on node Addrs[k%len(Addrs)].
// A holder stops signing in after SignInMillis (0: no bound) and reports
// what it has.
type holderSpec struct {
	Addrs        []string `json:"addrs"`
	First        int      `json:"first"`
	Count        int      `json:"count"`
	SignInMillis int64    `json:"signin_millis,omitempty"`
}

func holderUser(k int) string { return "p" + strconv.Itoa(k) }

// holderReport is a holder's answer to its start and to each churn;
// Error is the first failure's, when Failed is above zero.
type holderReport struct {
	Opened int     `json:"opened,omitempty"`
	Ops    int     `json:"ops,omitempty"`
	Failed int     `json:"failed,omitempty"`
	Secs   float64 `json:"secs,omitempty"`
	Error  string  `json:"error,omitempty"`
}

// runHolder is the holder child: it signs its share in, prints one
// holderReport, then answers "churn RATE MILLIS" lines with one
// holderReport each, until "quit" or the end of stdin; then it closes
// every connection. It stops by itself after childLifetime.
func runHolder(stdin io.Reader, stdout io.Writer) error {
	var spec holderSpec
	if err := json.Unmarshal([]byte(os.Getenv(holderEnv)), &spec); err != nil {
		return fmt.Errorf("bench holder: %s: %w", holderEnv, err)
	}
	if len(spec.Addrs) == 0 || spec.Count < 1 || spec.Count > holderMax {
		return fmt.Errorf("bench holder: spec %+v: want nodes and 1..%d principals", spec, holderMax)
	}
	ctx, cancel := context.WithTimeout(context.Background(), childLifetime)
	defer cancel()
	// stdin is read from the start, so that "quit" or its end (the parent
	// gone or giving up) also stops a sign-in or churn under way.
	lines := make(chan string)
	go func() { // ends at EOF on stdin, which the parent closes
		defer close(lines)
		defer cancel()
		sc := bufio.NewScanner(stdin)
		for sc.Scan() {
			if sc.Text() == "quit" {
				return
			}
			select {
			case lines <- sc.Text():
			case <-ctx.Done():
				return
			}
		}
	}()
	conns := make([]net.Conn, spec.Count)
	defer closeAll(conns)
	open := func(i int) (net.Conn, error) {
		k := spec.First + i
		return signInAt(spec.Addrs[k%len(spec.Addrs)], holderUser(k), "t")
	}
	enc := json.NewEncoder(stdout)
	// A sign-in that fails (a node too busy to answer in 10 s) is counted
	// and the others go on: how many got in is part of the result.
	// Past its bound the sign-in stops and the holder reports a partial
	// share rather than being cancelled with nothing to say.
	sctx, scancel := ctx, context.CancelFunc(func() {})
	if spec.SignInMillis > 0 {
		sctx, scancel = context.WithTimeout(ctx, time.Duration(spec.SignInMillis)*time.Millisecond)
	}
	failed, err := openAllN(sctx, conns, holderWorkers, open)
	scancel()
	rep := holderReport{Opened: opened(conns), Failed: failed}
	if err != nil {
		rep.Error = err.Error()
	}
	if ctx.Err() != nil {
		return nil
	}
	if n := rep.Opened + rep.Failed; n < spec.Count && rep.Error == "" {
		rep.Error = fmt.Sprintf("sign-in bound %v reached with %d of %d tried", time.Duration(spec.SignInMillis)*time.Millisecond, n, spec.Count)
	}
	if err := enc.Encode(rep); err != nil {
		return fmt.Errorf("bench holder: %w", err)
	}
	for {
		select {
		case <-ctx.Done():
			return nil // lifetime exceeded, or stdin ended
		case l, ok := <-lines:
			if !ok {
				return nil
			}
			var rate, millis int
			if _, err := fmt.Sscanf(l, "churn %d %d", &rate, &millis); err != nil || rate < 1 || millis < 1 {
				rep = holderReport{Error: fmt.Sprintf("bench holder: unknown command %q", l)}
			} else {
				rep = holderChurn(ctx, conns, open, rate, time.Duration(millis)*time.Millisecond)
			}
			if err := enc.Encode(rep); err != nil {
				return fmt.Errorf("bench holder: %w", err)
			}
		}
	}
}

// holderChurn closes or reopens random connections of conns at rate per
// second for d (and at most rate×d operations). Worker w owns the indices
// i with i%holderWorkers == w, so no two touch one connection.
func holderChurn(ctx context.Context, conns []net.Conn, open func(int) (net.Conn, error), rate int, d time.Duration) holderReport {
	maxOps := int(d.Seconds()*float64(rate)) + 1
	interval := time.Second / time.Duration(rate)
	var work [holderWorkers]chan int
	var ops, failed atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for w := range work {
		work[w] = make(chan int, 64)
		wg.Go(func() {
			for i := range work[w] {
				if time.Since(start) > d || ctx.Err() != nil {
					continue // past the phase: queued operations are dropped, not made late
				}
				if conns[i] != nil {
					conns[i].Close()
					conns[i] = nil
				} else if nc, err := open(i); err == nil {
					conns[i] = nc
				} else {
					failed.Add(1)
					continue
				}
				ops.Add(1)
			}
		})
	}
	rng := rand.New(rand.NewPCG(uint64(len(conns)), uint64(time.Now().UnixNano())))
	for n := 0; n < maxOps && time.Since(start) < d && ctx.Err() == nil; n++ {
		if wait := time.Until(start.Add(time.Duration(n) * interval)); wait > 0 {
			time.Sleep(wait)
		}
		i := rng.IntN(len(conns))
		select {
		case work[i%holderWorkers] <- i:
		default: // that worker is behind: the op is not made, and not counted
		}
	}
	for w := range work {
		close(work[w])
	}
	wg.Wait()
	return holderReport{Ops: int(ops.Load()), Failed: int(failed.Load()), Secs: round1(min(time.Since(start), d).Seconds())}
}

// openAllN fills conns with open(i) for every index, workers at once,
// until ctx ends; a failed open leaves its slot nil and the others go on.
// It returns the number of failures and the first one's error.
func openAllN(ctx context.Context, conns []net.Conn, workers int, open func(i int) (net.Conn, error)) (int, error) {
	var next, failed atomic.Int64
	var firstErr error
	var errOnce sync.Once
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < len(conns) && ctx.Err() == nil; i = int(next.Add(1) - 1) {
				nc, err := open(i)
				if err != nil {
					failed.Add(1)
					errOnce.Do(func() { firstErr = err })
					continue
				}
				conns[i] = nc
			}
		})
	}
	wg.Wait()
	return int(failed.Load()), firstErr
}

// holder is the parent's handle on a holder child.
//
// Ownership: as child (the process, its pipes, one stdout reader).
type holder struct {
	c    *child
	spec holderSpec
}

// startHolder starts a holder for spec and waits (up to wait) until it
// has signed its share in.
func startHolder(ctx context.Context, spec holderSpec, wait time.Duration) (*holder, holderReport, error) {
	b, err := json.Marshal(spec)
	if err != nil {
		return nil, holderReport{}, fmt.Errorf("bench: holder: %w", err)
	}
	c, err := startChildWait(ctx, ChildHolder, wait, holderEnv+"="+string(b))
	if err != nil {
		return nil, holderReport{}, err
	}
	h := &holder{c: c, spec: spec}
	// startChildWait decoded the first line into c.ready; it is the
	// holder's report.
	var rep holderReport
	if err := json.Unmarshal(c.readyLine, &rep); err != nil {
		c.close()
		return nil, rep, fmt.Errorf("bench: holder said %q: %w", c.readyLine, err)
	}
	return h, rep, nil
}

// churn asks the holder to churn at rate for d and waits for its report.
func (h *holder) churn(ctx context.Context, rate int, d time.Duration) (holderReport, error) {
	var rep holderReport
	if _, err := io.WriteString(h.c.stdin, fmt.Sprintf("churn %d %d\n", rate, d.Milliseconds())); err != nil {
		return rep, fmt.Errorf("bench: holder: %w", err)
	}
	if err := h.c.readCtx(ctx, &rep, d+2*time.Minute); err != nil {
		return rep, err
	}
	if rep.Error != "" {
		return rep, errors.New(strings.TrimSpace(rep.Error))
	}
	return rep, nil
}
