package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/msprelay/msprelay/principal"
	"github.com/msprelay/msprelay/sessionclient"
)

// ManySessionsResult is the node with many sessions signed in at once
// (issue 22: "100,000 sessions on one node (Unix socket and TCP) with the
// limits raised, measured: memory, sign-in rate, delivery latency to one of
// them while all are signed in, and shutdown time").
type ManySessionsResult struct {
	// Tried is Config.ManySessions; Sessions is what this process's and
	// the child's open-file limit (RLIMIT_NOFILE, FileLimit) let it try:
	// every session is one descriptor on each side.
	Tried     int    `json:"tried"`
	Sessions  int    `json:"sessions"`
	FileLimit uint64 `json:"file_limit"`
	Opened    int    `json:"opened"`
	Unix      int    `json:"unix"`        // of those, over the Unix socket (root, any user)
	TCP       int    `json:"tcp"`         // over TCP (trust mode), from Sources loopback addresses
	Sources   int    `json:"tcp_sources"` // 127.0.0.2, 127.0.0.3, ...
	Users     int    `json:"users"`       // distinct users: every session its own
	// Sign-in: all sessions, 32 at a time.
	SignInSecs float64 `json:"signin_seconds"`
	SignInRate float64 `json:"signins_per_second"`
	// Memory of the node's process, after a full GC (as the other
	// sessions figures), before any session and with all of them idle.
	RSSBeforeKiB         int64   `json:"rss_before_kib"`
	RSSAfterKiB          int64   `json:"rss_after_kib"`
	RSSPerKiB            float64 `json:"rss_per_session_kib"`
	HeapStackPerKiB      float64 `json:"heap_stack_per_session_kib"`
	GoroutinesPerSession float64 `json:"goroutines_per_session"`
	// Delivery: messages sent over MSP (TCP, one at a time) to one more
	// session while all the others are signed in; from the write of the
	// message to its arrival at that session.
	Delivery    Latency `json:"delivery"`
	Undelivered int     `json:"undelivered"`
	// ShutdownSecs is from asking the node to stop (node.Close: every
	// session told OUT SSD and signed out) to its process's exit. The
	// idle clients never answer, so each closing session lingers up to 2 s
	// for its client's close (session's lingerTimeout), all at once.
	ShutdownSecs float64 `json:"shutdown_seconds"`
	Method       string  `json:"method"`
}

const manySessionsMethod = "child process running a whole node (node.New: embedded nats-server with JetStream), " +
	"session caps raised to the count, a Unix session socket and a trust-mode TCP listener; half the sessions " +
	"signed in over the Unix socket (root, so any user name), half over TCP from several loopback source " +
	"addresses; every session a distinct user, left idle; RSS from the child's VmRSS after a full GC"

// manyStopWait bounds the node's shutdown with all sessions signed in.
const manyStopWait = 3 * time.Minute

// manyDelivered is how many messages the delivery measurement sends.
const manyDelivered = 200

// fileReserve is what the harness and the node keep of the open-file
// limit for everything but the sessions (NATS, JetStream files, pipes).
const fileReserve = 400

// manySessions signs cfg.ManySessions distinct users in to a node child
// over its Unix socket and TCP and measures the node with all of them
// signed in; see ManySessionsResult.
func (h *harness) manySessions(ctx context.Context) (*ManySessionsResult, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return nil, fmt.Errorf("bench: many sessions: %w", err)
	}
	res := &ManySessionsResult{Tried: h.cfg.ManySessions, FileLimit: lim.Cur, Method: manySessionsMethod}
	n := h.cfg.ManySessions
	if lim.Cur < uint64(n+fileReserve) {
		if lim.Cur <= 2*fileReserve {
			return res, fmt.Errorf("bench: many sessions: open-file limit %d too low", lim.Cur)
		}
		n = int(lim.Cur) - fileReserve
	}
	res.Sessions = n
	res.Users = n
	res.Unix = n / 2
	res.TCP = n - res.Unix
	// An ephemeral port range of about 28,000 ports per source address.
	res.Sources = max(1, (res.TCP+19_999)/20_000)
	tmp, err := os.MkdirTemp("", "mspbench-many-")
	if err != nil {
		return res, fmt.Errorf("bench: %w", err)
	}
	defer os.RemoveAll(tmp)
	sock := filepath.Join(tmp, "session.sock")
	c, err := startChild(ChildNode, childMaxEnv+"="+strconv.Itoa(n+64), childSocketEnv+"="+sock)
	if err != nil {
		return res, err
	}
	c.stopWait = manyStopWait
	defer c.close()
	before, err := c.mem()
	if err != nil {
		return res, err
	}
	res.RSSBeforeKiB = before.RSSKiB
	conns := make([]net.Conn, n)
	defer closeAll(conns)
	start := time.Now()
	firstErr := openAll(ctx, conns, func(i int) (net.Conn, error) {
		user := "many" + strconv.Itoa(i)
		if i%2 == 0 {
			nc, err := net.DialTimeout("unix", sock, ioTimeout)
			if err != nil {
				return nil, fmt.Errorf("bench: session dial: %w", err)
			}
			return signInOn(nc, user, "t1")
		}
		d := net.Dialer{Timeout: ioTimeout, LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(2+(i/2)%res.Sources))}}
		nc, err := d.DialContext(ctx, "tcp", c.ready.Session)
		if err != nil {
			return nil, fmt.Errorf("bench: session dial: %w", err)
		}
		return signInOn(nc, user, "t1")
	})
	secs := time.Since(start).Seconds()
	res.Opened = opened(conns)
	res.SignInSecs = round1(secs)
	res.SignInRate = round1(float64(res.Opened) / secs)
	if firstErr != nil {
		return res, fmt.Errorf("bench: %d of %d sessions opened on a node: %w", res.Opened, n, firstErr)
	}
	h.prog.printf("   node, %d sessions (%d Unix, %d TCP): signed in in %.1f s (%.0f/s)", n, res.Unix, res.TCP, secs, res.SignInRate)
	after, err := settle(c, n)
	if err != nil {
		return res, err
	}
	res.RSSAfterKiB = after.RSSKiB
	res.RSSPerKiB = round1(float64(after.RSSKiB-before.RSSKiB) / float64(n))
	hs := float64(int64(after.HeapInuse+after.StackInuse) - int64(before.HeapInuse+before.StackInuse))
	res.HeapStackPerKiB = round1(hs / 1024 / float64(n))
	res.GoroutinesPerSession = round1(float64(after.Goroutines-before.Goroutines) / float64(n))
	h.prog.printf("   node, %d sessions: RSS %d -> %d KiB, +%.1f KiB each (heap+stacks %.1f KiB, %.2f goroutines)",
		n, res.RSSBeforeKiB, res.RSSAfterKiB, res.RSSPerKiB, res.HeapStackPerKiB, res.GoroutinesPerSession)
	lat, lost, err := deliverToOne(ctx, c.ready.MSP, c.ready.Session, manyDelivered)
	res.Delivery, res.Undelivered = summarize(lat), lost
	if err != nil {
		return res, err
	}
	h.prog.printf("   node, %d sessions: delivery to one more p50 %.0f µs, p99 %.0f µs (%d undelivered)",
		n, res.Delivery.P50us, res.Delivery.P99us, lost)
	start = time.Now()
	err = c.close()
	res.ShutdownSecs = round1(time.Since(start).Seconds())
	if err != nil {
		return res, fmt.Errorf("bench: many sessions: node child (stopped after %.1f s): %w", res.ShutdownSecs, err)
	}
	h.prog.printf("   node, %d sessions: shut down in %.1f s", n, res.ShutdownSecs)
	return res, nil
}

// settle waits until the child's heap stops growing (the node's sign-in
// work done; see nodeSessions) and returns its memory then.
func settle(c *child, n int) (childMem, error) {
	const minLooks = 4
	var after childMem
	var err error
	for deadline, last, looks := time.Now().Add(nodeSettle), int64(-1), 1; ; looks++ {
		time.Sleep(2 * time.Second)
		if after, err = c.mem(); err != nil {
			return after, err
		}
		settled := int64(after.HeapInuse) <= last+int64(n)*16
		if (settled && looks >= minLooks) || time.Now().After(deadline) {
			return after, nil
		}
		last = int64(after.HeapInuse)
	}
}

// deliverToOne signs one more user in at sessAddr and sends her count
// messages over one MSP connection to mspAddr, one at a time, timing each
// from its write to its arrival. A message not there within 3 s counts as
// undelivered.
func deliverToOne(ctx context.Context, mspAddr, sessAddr string, count int) ([]time.Duration, int, error) {
	cl, err := sessionclient.Dial(ctx, sessAddr)
	if err != nil {
		return nil, 0, fmt.Errorf("bench: delivery target: %w", err)
	}
	defer cl.Close()
	if _, err := cl.SignIn(ctx, "manytarget", "t1", principal.Online); err != nil {
		return nil, 0, fmt.Errorf("bench: delivery target: sign in: %w", err)
	}
	mc, err := net.DialTimeout("tcp", mspAddr, ioTimeout)
	if err != nil {
		return nil, 0, fmt.Errorf("bench: delivery sender: %w", err)
	}
	defer mc.Close()
	br := bufio.NewReader(mc)
	var lat []time.Duration
	lost := 0
	var msg []byte
	for i := range count {
		if ctx.Err() != nil {
			return lat, lost, ctx.Err()
		}
		text := "many " + strconv.Itoa(i)
		msg = append(msg[:0], 'B')
		for _, part := range []string{"manytarget", "t1", text, "manysender", "", "many-" + strconv.Itoa(i), ""} {
			msg = append(msg, part...)
			msg = append(msg, 0)
		}
		mc.SetDeadline(time.Now().Add(10 * time.Second))
		t0 := time.Now()
		if _, err := mc.Write(msg); err != nil {
			return lat, lost, fmt.Errorf("bench: delivery sender: %w", err)
		}
		reply, err := br.ReadBytes(0)
		if err != nil {
			return lat, lost, fmt.Errorf("bench: delivery sender: %w", err)
		}
		if !bytes.HasPrefix(reply, []byte("+")) || isQueued(reply) {
			lost++
			continue
		}
		if d, ok := arrival(cl, text, t0); ok {
			lat = append(lat, d)
		} else {
			lost++
		}
		time.Sleep(5 * time.Millisecond) // paced: one message at a time, not a burst
	}
	if lost == count {
		return lat, lost, errors.New("bench: no message reached the delivery target")
	}
	return lat, lost, nil
}

// arrival waits up to 3 s for the message with text at cl and returns its
// time since t0.
func arrival(cl *sessionclient.Client, text string, t0 time.Time) (time.Duration, bool) {
	timeout := time.NewTimer(3 * time.Second)
	defer timeout.Stop()
	for {
		select {
		case m, ok := <-cl.Messages():
			if !ok {
				return 0, false
			}
			if m.Text == text {
				return time.Since(t0), true
			}
		case <-timeout.C:
			return 0, false
		}
	}
}
