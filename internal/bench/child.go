package bench

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/msprelay/msprelay/presence"
	"github.com/msprelay/msprelay/session"
	"github.com/msprelay/msprelay/switchboard"
)

// Memory and allocation figures must not include the load generator, so
// those scenarios run the node side in a child process: the same binary,
// started with ChildEnv set. The child prints one JSON line (childReady)
// when it is listening, then answers each "mem" line on stdin with one JSON
// line (childMem); "quit" or the end of stdin stops it. It also stops by
// itself after childLifetime, so it cannot outlive a crashed parent by long.

// ChildEnv is the environment variable that makes the mspbench binary (or
// the package's test binary) run as a harness child: its value is the mode,
// ChildNode or ChildSessions.
const ChildEnv = "MSPBENCH_CHILD"

// childMaxEnv carries the session cap to a ChildSessions child.
const childMaxEnv = "MSPBENCH_CHILD_MAX_SESSIONS"

// childSocketEnv, if set, is the Unix session socket of a ChildNode child.
const childSocketEnv = "MSPBENCH_CHILD_SESSION_SOCKET"

// childProfileEnv names a file the child writes a CPU profile of its whole
// life to: a profile of the node alone, without the load generator.
const childProfileEnv = "MSPBENCH_CHILD_CPUPROFILE"

// Child modes.
const (
	ChildNode     = "node"     // a full node (embedded NATS, no gossip); childMaxEnv, if set, raises its session caps
	ChildSessions = "sessions" // session server + switchboard + presence, MaxSessions raised
	// ChildRelayClient is the minimal relay's receiving client
	// (minimalRelay): it connects to the relay named by relayClientEnv.
	ChildRelayClient = "relay-client"
)

const childLifetime = 15 * time.Minute

type childReady struct {
	MSP     string `json:"msp,omitempty"`
	Session string `json:"session"`
	PID     int    `json:"pid"`
}

type childMem struct {
	RSSKiB     int64  `json:"rss_kib"`
	HeapAlloc  uint64 `json:"heap_alloc"`
	HeapInuse  uint64 `json:"heap_inuse"`
	StackInuse uint64 `json:"stack_inuse"`
	Mallocs    uint64 `json:"mallocs"`
	TotalAlloc uint64 `json:"total_alloc"`
	Goroutines int    `json:"goroutines"`
	Sessions   int    `json:"sessions"`
}

// RunChild runs the child side of mode on stdin and stdout until "quit",
// the end of stdin, or its lifetime; cmd/mspbench calls it when ChildEnv is
// set.
func RunChild(mode string, stdin io.Reader, stdout io.Writer) error {
	if mode == ChildHolder {
		return runHolder(stdin, stdout)
	}
	if p := os.Getenv(childProfileEnv); p != "" {
		f, err := os.Create(p)
		if err != nil {
			return fmt.Errorf("bench child: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("bench child: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	// The rates are set before the node starts, so that the profiles cover
	// all of its life; the profiles are written when the child stops (the
	// deferred calls run before the CPU profile stops, after the node has).
	for _, p := range []struct{ env, name string }{
		{childMemProfileEnv, "allocs"}, {childBlockProfileEnv, "block"}, {childMutexProfileEnv, "mutex"},
	} {
		path := os.Getenv(p.env)
		if path == "" {
			continue
		}
		switch p.name {
		case "allocs":
			runtime.MemProfileRate = childMemProfileRate
		case "block":
			runtime.SetBlockProfileRate(childBlockProfileRate)
		case "mutex":
			runtime.SetMutexProfileFraction(childMutexProfileFraction)
		}
		defer func() {
			if err := writeProfile(p.name, path); err != nil {
				fmt.Fprintln(os.Stderr, err)
			}
		}()
	}
	var ready childReady
	var sessions func() int
	var stop func()
	switch mode {
	case ChildNode:
		tmp, err := os.MkdirTemp("", "mspbench-child-")
		if err != nil {
			return fmt.Errorf("bench child: %w", err)
		}
		defer os.RemoveAll(tmp)
		o := nodeOpts{name: "c1", dataDir: tmp}
		if v := os.Getenv(childMaxEnv); v != "" {
			if o.maxSessions, err = strconv.Atoi(v); err != nil || o.maxSessions < 1 {
				return fmt.Errorf("bench child: %s=%q: want a positive count", childMaxEnv, v)
			}
		}
		o.sessionSocket = os.Getenv(childSocketEnv)
		nd, err := startNode(context.Background(), o)
		if err != nil {
			return err
		}
		ready.MSP, ready.Session = nd.Addrs().MSP, nd.Addrs().Session
		sessions, stop = func() int { return 0 }, func() { nd.Close() }
	case ChildSessions:
		maxSessions, err := strconv.Atoi(os.Getenv(childMaxEnv))
		if err != nil || maxSessions < 1 {
			return fmt.Errorf("bench child: %s=%q: want a positive count", childMaxEnv, os.Getenv(childMaxEnv))
		}
		srv, addr, closeAll, err := startSessionServer(maxSessions)
		if err != nil {
			return err
		}
		ready.Session = addr
		sessions, stop = srv.Sessions, closeAll
	case ChildRelayClient:
		var err error
		if stop, err = relayClientChild(); err != nil {
			return err
		}
		sessions = func() int { return 1 }
	default:
		return fmt.Errorf("bench child: unknown mode %q", mode)
	}
	defer stop()
	ready.PID = os.Getpid()
	enc := json.NewEncoder(stdout)
	if err := enc.Encode(ready); err != nil {
		return fmt.Errorf("bench child: %w", err)
	}
	lines := make(chan string)
	go func() { // ends at EOF on stdin, which the parent closes
		defer close(lines)
		sc := bufio.NewScanner(stdin)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	var prof pathProfiler
	defer prof.stop()
	life := time.NewTimer(childLifetime)
	defer life.Stop()
	for {
		select {
		case <-life.C:
			return errors.New("bench child: lifetime exceeded")
		case l, ok := <-lines:
			if !ok || l == "quit" {
				return nil
			}
			if l != "mem" {
				if err := enc.Encode(prof.command(l)); err != nil {
					return fmt.Errorf("bench child: %w", err)
				}
				continue
			}
			heap, rss := memNow()
			var m runtime.MemStats
			runtime.ReadMemStats(&m)
			if err := enc.Encode(childMem{RSSKiB: int64(rss / 1024), HeapAlloc: heap, HeapInuse: m.HeapInuse,
				StackInuse: m.StackInuse, Mallocs: m.Mallocs, TotalAlloc: m.TotalAlloc,
				Goroutines: runtime.NumGoroutine(), Sessions: sessions()}); err != nil {
				return fmt.Errorf("bench child: %w", err)
			}
		}
	}
}

// childReply answers a profiling command.
type childReply struct {
	Error string `json:"error,omitempty"`
}

// pathProfiler carries out the parent's profiling commands, so that one
// load path (workload and mode) can be profiled on its own:
//
//	cpu-start PATH   start a CPU profile into PATH
//	cpu-stop         stop it
//	allocs PATH      write the allocation profile so far (after a GC)
//
// Only the child's command loop uses it.
type pathProfiler struct {
	cpu *os.File // the running CPU profile's file, or nil
}

func (p *pathProfiler) command(l string) childReply {
	cmd, arg, _ := strings.Cut(l, " ")
	var err error
	switch {
	case cmd == "cpu-start" && arg != "" && p.cpu == nil:
		var f *os.File
		if f, err = os.Create(arg); err == nil {
			if err = pprof.StartCPUProfile(f); err != nil {
				f.Close()
			} else {
				p.cpu = f
			}
		}
	case cmd == "cpu-stop" && p.cpu != nil:
		err = p.stop()
	case cmd == "allocs" && arg != "":
		err = writeProfile("allocs", arg)
	default:
		err = fmt.Errorf("bench child: unknown or untimely command %q", l)
	}
	if err != nil {
		return childReply{Error: err.Error()}
	}
	return childReply{}
}

// stop ends the running CPU profile, if any.
func (p *pathProfiler) stop() error {
	if p.cpu == nil {
		return nil
	}
	pprof.StopCPUProfile()
	err := p.cpu.Close()
	p.cpu = nil
	return err
}

// writeProfile writes the named runtime profile to path (gzipped
// protobuf, with every sample type: for allocs, alloc_objects, alloc_space,
// inuse_objects and inuse_space).
func writeProfile(name, path string) error {
	if name == "allocs" {
		runtime.GC() // the profile is as of the last completed collection
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("bench child: %s profile: %w", name, err)
	}
	if err := pprof.Lookup(name).WriteTo(f, 0); err != nil {
		f.Close()
		return fmt.Errorf("bench child: %s profile: %w", name, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("bench child: %s profile: %w", name, err)
	}
	return nil
}

// startSessionServer wires what a node's session listener needs, with the
// session cap raised (node.Config has no field for it), on a trust-mode
// TCP listener. closeAll stops everything and waits.
func startSessionServer(maxSessions int) (srv *session.Server, addr string, closeAll func(), err error) {
	log := slog.New(slog.DiscardHandler)
	dir, err := presence.New(presence.Config{Name: "s1", Logger: log})
	if err != nil {
		return nil, "", nil, fmt.Errorf("bench child: %w", err)
	}
	sb, err := switchboard.New(switchboard.Config{Node: "s1", Directory: dir, Logger: log})
	if err != nil {
		dir.Close()
		return nil, "", nil, fmt.Errorf("bench child: %w", err)
	}
	srv, err = session.New(session.Config{Switchboard: sb, Directory: dir, Logger: log, Node: "s1",
		IdleTimeout: childLifetime, MaxSessions: maxSessions})
	if err != nil {
		sb.Close()
		dir.Close()
		return nil, "", nil, fmt.Errorf("bench child: %w", err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		sb.Close()
		dir.Close()
		return nil, "", nil, fmt.Errorf("bench child: %w", err)
	}
	var wg sync.WaitGroup
	wg.Go(func() { srv.Serve(l, session.Trust{}) })
	return srv, l.Addr().String(), func() {
		srv.Close()
		wg.Wait()
		sb.Close()
		dir.Close()
	}, nil
}

// child is the parent's handle on a child process.
//
// Ownership: child owns the process, its pipes and one goroutine reading
// its stdout into lines; close stops the process and waits for both.
type child struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	lines  chan []byte
	stderr *bytes.Buffer
	ready  childReady
	// readyLine is the child's first line as it came (a holder's report).
	readyLine []byte

	closeOnce sync.Once
	closeErr  error // of the first close
	// stopWait is how long close waits for the child to quit before it
	// kills it; zero means 20 s.
	stopWait time.Duration
}

// startChild starts this executable as a child in mode and waits for it
// to be ready.
func startChild(mode string, env ...string) (*child, error) {
	return startChildWait(context.Background(), mode, 60*time.Second, env...)
}

// startChildWait is startChild waiting at most wait for the first line,
// and stopping the child if ctx ends first.
func startChildWait(ctx context.Context, mode string, wait time.Duration, env ...string) (*child, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("bench: child: %w", err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(append(os.Environ(), ChildEnv+"="+mode), env...)
	c := &child{cmd: cmd, lines: make(chan []byte, 1), stderr: &bytes.Buffer{}}
	cmd.Stderr = c.stderr
	if c.stdin, err = cmd.StdinPipe(); err != nil {
		return nil, fmt.Errorf("bench: child: %w", err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("bench: child: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("bench: child: %w", err)
	}
	go func() { // ends when the child's stdout closes (it exited)
		defer close(c.lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			c.lines <- bytes.Clone(sc.Bytes())
		}
	}()
	var first json.RawMessage
	if err := c.readCtx(ctx, &first, wait); err != nil {
		c.close() // after this, stderr is no longer written
		return nil, fmt.Errorf("%w: %s", err, bytes.TrimSpace(c.stderr.Bytes()))
	}
	c.readyLine = first
	if err := json.Unmarshal(first, &c.ready); err != nil {
		c.close()
		return nil, fmt.Errorf("bench: child said %q: %w", first, err)
	}
	return c, nil
}

// read decodes the child's next line into v.
func (c *child) read(v any, timeout time.Duration) error {
	return c.readCtx(context.Background(), v, timeout)
}

// readCtx is read, giving up when ctx ends.
func (c *child) readCtx(ctx context.Context, v any, timeout time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case l, ok := <-c.lines:
		if !ok {
			return errors.New("bench: child exited")
		}
		if err := json.Unmarshal(l, v); err != nil {
			return fmt.Errorf("bench: child said %q: %w", l, err)
		}
		return nil
	case <-time.After(timeout):
		return fmt.Errorf("bench: child silent for %v", timeout)
	}
}

// do sends a profiling command (see pathProfiler) and waits for its answer.
func (c *child) do(cmd string) error {
	if _, err := io.WriteString(c.stdin, cmd+"\n"); err != nil {
		return fmt.Errorf("bench: child: %w", err)
	}
	var r childReply
	if err := c.read(&r, 60*time.Second); err != nil {
		return err
	}
	if r.Error != "" {
		return fmt.Errorf("bench: child: %s", r.Error)
	}
	return nil
}

// mem asks the child for its memory figures (after a full collection).
func (c *child) mem() (childMem, error) {
	var m childMem
	if _, err := io.WriteString(c.stdin, "mem\n"); err != nil {
		return m, fmt.Errorf("bench: child: %w", err)
	}
	return m, c.read(&m, 60*time.Second)
}

// close asks the child to quit, kills it if it has not within 20 s, and
// waits for it and the stdout reader. Later calls return the first one's
// result.
func (c *child) close() error {
	c.closeOnce.Do(func() { c.closeErr = c.stop() })
	return c.closeErr
}

func (c *child) stop() error {
	io.WriteString(c.stdin, "quit\n")
	c.stdin.Close()
	done := make(chan error, 1)
	go func() { // drains stdout so the child never blocks writing, then waits
		for range c.lines {
		}
		done <- c.cmd.Wait()
	}()
	select {
	case err := <-done:
		return err
	case <-time.After(cmp.Or(c.stopWait, 20*time.Second)):
		c.cmd.Process.Kill()
		return <-done
	}
}
