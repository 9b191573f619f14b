package bench

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/msprelay/msprelay/session"
)

// SessionsResult is the memory an idle signed-in session costs its node.
type SessionsResult struct {
	Sessions int     `json:"sessions"`
	Opened   int     `json:"opened"`
	OpenSecs float64 `json:"open_seconds"`
	// RSS of the child process before any session and with all of them
	// open and idle (after a full GC and FreeOSMemory both times).
	RSSBeforeKiB     int64   `json:"rss_before_kib"`
	RSSAfterKiB      int64   `json:"rss_after_kib"`
	RSSPerSessionKiB float64 `json:"rss_per_session_kib"`
	// Go's view: heap in use plus goroutine stacks, per session.
	HeapStackPerSessionKiB float64 `json:"heap_stack_per_session_kib"`
	GoroutinesPerSession   float64 `json:"goroutines_per_session"`
	Method                 string  `json:"method"`
	// Users is the cost of each distinct signed-in user to a whole node
	// (embedded NATS, JetStream mailbox and known-users bucket, presence):
	// what the session server alone does not show. Terminals is the cost
	// of each further terminal of one user on such a node.
	Users     *NodeSessionsResult `json:"users,omitempty"`
	Terminals *NodeSessionsResult `json:"terminals,omitempty"`
	// Many is the node with Config.ManySessions signed in at once.
	Many *ManySessionsResult `json:"many,omitempty"`
}

// NodeSessionsResult is the memory of idle sessions on a whole node, in a
// child process of its own.
type NodeSessionsResult struct {
	Sessions int     `json:"sessions"`
	Opened   int     `json:"opened"`
	Users    int     `json:"users"` // distinct users among the sessions
	OpenSecs float64 `json:"open_seconds"`
	// RSS of the node's process before any session and with all of them
	// open and idle (after a full GC and FreeOSMemory both times).
	RSSBeforeKiB int64   `json:"rss_before_kib"`
	RSSAfterKiB  int64   `json:"rss_after_kib"`
	RSSPerKiB    float64 `json:"rss_per_session_kib"`
	// Go's view: heap in use plus goroutine stacks, per session.
	HeapStackPerKiB      float64 `json:"heap_stack_per_session_kib"`
	StackPerKiB          float64 `json:"stack_per_session_kib"` // of those, goroutine stacks
	GoroutinesPerSession float64 `json:"goroutines_per_session"`
	Method               string  `json:"method"`
}

const nodeSessionsMethod = "child process running a whole node (node.New: embedded nats-server with JetStream, " +
	"mailbox stream and known-users bucket, presence without gossip), session caps raised; sessions signed in over " +
	"TCP in trust mode and left idle until the node's sign-in work has settled; RSS from the child's /proc/self/status VmRSS"

const sessionsMethod = "child process running session.Server (MaxSessions raised; node.Config has no field for it) " +
	"+ switchboard + presence without gossip; sessions signed in over TCP in trust mode and left idle; " +
	"RSS from the child's /proc/self/status VmRSS"

// sessions opens cfg.Sessions idle sessions to a child session server and
// divides the child's memory growth by their number.
func (h *harness) sessions(ctx context.Context) (*SessionsResult, error) {
	n := h.cfg.Sessions
	c, err := startChild(ChildSessions, childMaxEnv+"="+strconv.Itoa(n+64))
	if err != nil {
		return nil, err
	}
	defer c.close()
	before, err := c.mem()
	if err != nil {
		return nil, err
	}
	res := &SessionsResult{Sessions: n, RSSBeforeKiB: before.RSSKiB, Method: sessionsMethod}
	conns := make([]net.Conn, n)
	defer closeAll(conns)
	start := time.Now()
	firstErr := openAll(ctx, conns, func(i int) (net.Conn, error) {
		return signInRaw(c.ready.Session, "idle"+strconv.Itoa(i))
	})
	res.OpenSecs = round1(time.Since(start).Seconds())
	res.Opened = opened(conns)
	if firstErr != nil {
		return res, fmt.Errorf("bench: %d of %d sessions opened: %w", res.Opened, n, firstErr)
	}
	// Let the sign-ins' transient garbage become collectable, and the last
	// session signed in go idle long enough to park its reader (session's
	// ParkAfter), as all of them would on a node left idle.
	time.Sleep(session.DefaultParkAfter + time.Second)
	after, err := c.mem()
	if err != nil {
		return nil, err
	}
	if after.Sessions != n {
		return res, fmt.Errorf("bench: child reports %d sessions, want %d", after.Sessions, n)
	}
	res.RSSAfterKiB = after.RSSKiB
	res.RSSPerSessionKiB = round1(float64(after.RSSKiB-before.RSSKiB) / float64(n))
	hs := float64(int64(after.HeapInuse+after.StackInuse) - int64(before.HeapInuse+before.StackInuse))
	res.HeapStackPerSessionKiB = round1(hs / 1024 / float64(n))
	res.GoroutinesPerSession = round1(float64(after.Goroutines-before.Goroutines) / float64(n))
	h.prog.printf("   %d idle sessions: RSS +%.1f KiB each (heap+stacks %.1f KiB, %.1f goroutines)",
		n, res.RSSPerSessionKiB, res.HeapStackPerSessionKiB, res.GoroutinesPerSession)
	// The next children get their sessions from this process too: close
	// these first (file descriptors, and the child's memory goes with it).
	for i, nc := range conns {
		if nc != nil {
			nc.Close()
			conns[i] = nil
		}
	}
	c.close()
	for _, distinct := range []bool{true, false} {
		r, err := h.nodeSessions(ctx, n, distinct)
		if distinct {
			res.Users = r
		} else {
			res.Terminals = r
		}
		if err != nil {
			return res, err
		}
	}
	if h.cfg.ManySessions > 0 {
		res.Many, err = h.manySessions(ctx)
	}
	return res, err
}

// nodeSettle is how long nodeSessions waits, at most, for the node to
// finish the work sign-ins started (known-users records, mailbox looks)
// before it reads the memory: the figure is of idle users.
const nodeSettle = 60 * time.Second

// nodeSessions signs n sessions in to a whole node in a child process, as
// n distinct users (distinct) or as n terminals of one user, and divides
// the child's memory growth by n. With cfg.UsersHeapProfile set, it also
// writes the child's heap profile (inuse_space) with all of them signed in.
func (h *harness) nodeSessions(ctx context.Context, n int, distinct bool) (*NodeSessionsResult, error) {
	c, err := startChild(ChildNode, childMaxEnv+"="+strconv.Itoa(n+64))
	if err != nil {
		return nil, err
	}
	defer c.close()
	before, err := c.mem()
	if err != nil {
		return nil, err
	}
	res := &NodeSessionsResult{Sessions: n, Users: 1, RSSBeforeKiB: before.RSSKiB, Method: nodeSessionsMethod}
	if distinct {
		res.Users = n
	}
	conns := make([]net.Conn, n)
	defer closeAll(conns)
	start := time.Now()
	firstErr := openAll(ctx, conns, func(i int) (net.Conn, error) {
		user, term := "user"+strconv.Itoa(i), "t1"
		if !distinct {
			user, term = "oneuser", "t"+strconv.Itoa(i)
		}
		return signInAt(c.ready.Session, user, term)
	})
	res.OpenSecs = round1(time.Since(start).Seconds())
	res.Opened = opened(conns)
	if firstErr != nil {
		return res, fmt.Errorf("bench: %d of %d sessions opened on a node: %w", res.Opened, n, firstErr)
	}
	// Wait until the heap stops growing: the node writes the known-users
	// records and looks into the mailboxes after the sign-in answers.
	// Each look is a full collection, and each collection halves the
	// stack of an idle goroutine that uses less than a quarter of it, as
	// the runtime's own collections (at least one every two minutes) do
	// over a node's idle hours: the figure is of that idle state, so the
	// loop looks at least minLooks times.
	const minLooks = 4
	var after childMem
	for deadline, last, looks := time.Now().Add(nodeSettle), int64(-1), 1; ; looks++ {
		time.Sleep(2 * time.Second)
		if after, err = c.mem(); err != nil {
			return nil, err
		}
		settled := int64(after.HeapInuse) <= last+int64(n)*16
		if (settled && looks >= minLooks) || time.Now().After(deadline) {
			break
		}
		last = int64(after.HeapInuse)
	}
	if p := h.cfg.UsersHeapProfile; p != "" && distinct {
		if err := c.do("allocs " + p); err != nil {
			return res, err
		}
	}
	res.RSSAfterKiB = after.RSSKiB
	res.RSSPerKiB = round1(float64(after.RSSKiB-before.RSSKiB) / float64(n))
	hs := float64(int64(after.HeapInuse+after.StackInuse) - int64(before.HeapInuse+before.StackInuse))
	res.HeapStackPerKiB = round1(hs / 1024 / float64(n))
	res.StackPerKiB = round1(float64(int64(after.StackInuse)-int64(before.StackInuse)) / 1024 / float64(n))
	res.GoroutinesPerSession = round1(float64(after.Goroutines-before.Goroutines) / float64(n))
	what := "distinct users"
	if !distinct {
		what = "terminals of one user"
	}
	h.prog.printf("   node, %d idle sessions, %s: RSS +%.1f KiB each (heap+stacks %.1f KiB, stacks %.1f KiB, %.1f goroutines)",
		n, what, res.RSSPerKiB, res.HeapStackPerKiB, res.StackPerKiB, res.GoroutinesPerSession)
	return res, nil
}

// signInRaw signs user in at terminal "t1"; see signInAt.
func signInRaw(addr, user string) (net.Conn, error) { return signInAt(addr, user, "t1") }

// signInAt signs user in at terminal term with two protocol lines and
// leaves the connection open and idle; it reads nothing more.
func signInAt(addr, user, term string) (net.Conn, error) {
	nc, err := net.DialTimeout("tcp", addr, ioTimeout)
	if err != nil {
		return nil, fmt.Errorf("bench: session dial: %w", err)
	}
	return signInOn(nc, user, term)
}

// signInOn signs user in at terminal term on nc (see signInAt); it closes
// nc if that fails.
func signInOn(nc net.Conn, user, term string) (net.Conn, error) {
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := nc.Write([]byte("VER 1 MSPS1\r\nUSR 2 " + user + " " + term + "\r\n")); err != nil {
		nc.Close()
		return nil, fmt.Errorf("bench: session sign-in: %w", err)
	}
	var buf [512]byte
	n := 0
	for bytes.Count(buf[:n], []byte("\r\n")) < 2 {
		k, err := nc.Read(buf[n:])
		n += k
		if err != nil || n == len(buf) {
			nc.Close()
			return nil, fmt.Errorf("bench: session sign-in of %s: got %q: %v", user, buf[:n], err)
		}
	}
	if !bytes.Contains(buf[:n], []byte("\r\nUSR 2 OK ")) {
		nc.Close()
		return nil, fmt.Errorf("bench: session sign-in of %s refused: %q", user, buf[:n])
	}
	nc.SetDeadline(time.Time{})
	return nc, nil
}

// openAll fills conns with open(i) for every index, 32 at a time, until
// ctx ends or an open fails; it returns the first failure. The caller
// closes what was opened (closeAll).
func openAll(ctx context.Context, conns []net.Conn, open func(i int) (net.Conn, error)) error {
	var next atomic.Int64
	var firstErr error
	var errOnce sync.Once
	var wg sync.WaitGroup
	for range 32 {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < len(conns) && ctx.Err() == nil; i = int(next.Add(1) - 1) {
				nc, err := open(i)
				if err != nil {
					errOnce.Do(func() { firstErr = err })
					return
				}
				conns[i] = nc
			}
		})
	}
	wg.Wait()
	return firstErr
}

// opened counts the connections openAll made.
func opened(conns []net.Conn) int {
	n := 0
	for _, nc := range conns {
		if nc != nil {
			n++
		}
	}
	return n
}

// closeAll closes every connection openAll made.
func closeAll(conns []net.Conn) {
	for _, nc := range conns {
		if nc != nil {
			nc.Close()
		}
	}
}
