package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// The scale scenario runs real node processes: the cmd/node binary (built
// with `go build` into a temporary directory unless Config.ScaleNodeBinary
// names one), started with the flags an operator would give, each with its
// own data directory, on 127.0.0.1 with ports from :0. The first node runs
// the embedded nats-server and exposes it (--nats-listen), the others use
// it (--nats), as docs/FEDERATION.md's small deployment does; every node
// joins the first one's gossip address. The harness learns each node's
// addresses from its "node ready" log line (--log-format json).

// scaleProcStop bounds a node's clean stop (SIGTERM) before it is killed.
const scaleProcStop = 15 * time.Second

// buildNodeBinary builds cmd/node into dir and returns its path.
func buildNodeBinary(ctx context.Context, dir string) (string, error) {
	bin := filepath.Join(dir, "msprelay-node")
	bctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(bctx, "go", "build", "-o", bin, "github.com/msprelay/msprelay/cmd/node")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("bench: building cmd/node (or set the node binary): %w: %s", err, strings.TrimSpace(string(out)))
	}
	return bin, nil
}

// nodeReadyLine is the part of the node's "node ready" log line the
// harness reads.
type nodeReadyLine struct {
	Msg     string `json:"msg"`
	MSP     string `json:"msp"`
	Session string `json:"session"`
	Gossip  string `json:"gossip"`
	NATS    string `json:"nats"`
	HTTP    string `json:"http"`
}

// nodeProc is one node process.
//
// Ownership: nodeProc owns the process and one goroutine reading its
// stderr (the log), which ends when the process closes stderr; stop
// signals the process, kills it after scaleProcStop, and waits for both;
// crash kills it at once (SIGKILL) and waits.
type nodeProc struct {
	name  string
	cmd   *exec.Cmd
	ready nodeReadyLine
	done  chan struct{} // closed when the process has been waited for
	err   error         // of Wait; read after done

	// mu guards tail and gone.
	mu   sync.Mutex
	tail []string   // last log lines, for errors
	gone []goneLine // the node's "node gone" lines, in order
}

// goneLine is one log line in which a node declared another gone (the
// presence layer's "node gone, dropping its principals", or any other
// message starting with "node gone"): the peer it named and when the
// harness read the line.
type goneLine struct {
	peer string
	at   time.Time
}

// goneLogLine is the part of a "node gone" log line the harness reads.
type goneLogLine struct {
	Msg  string `json:"msg"`
	Peer string `json:"peer"`
}

// maxGoneLines bounds the "node gone" lines kept per node: a flapping
// cluster must not grow the harness without bound.
const maxGoneLines = 100_000

// startNodeProc starts bin with args and waits (bounded by ctx and 90 s)
// for its "node ready" line.
func startNodeProc(ctx context.Context, name, bin string, args []string) (*nodeProc, error) {
	p := &nodeProc{name: name, done: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	// The node must not outlive the harness, even if the harness is
	// killed: the kernel sends it SIGKILL when the harness thread dies.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	p.cmd.Env = append(os.Environ(), "GOMAXPROCS=2")
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		return nil, fmt.Errorf("bench: node %s: %w", name, err)
	}
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("bench: node %s: %w", name, err)
	}
	readyc := make(chan nodeReadyLine, 1)
	logDone := make(chan struct{})
	go func() { // ends when the process closes stderr
		defer close(logDone)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		sent := false
		for sc.Scan() {
			line := sc.Text()
			p.mu.Lock()
			p.tail = append(p.tail, line)
			if len(p.tail) > 8 {
				p.tail = p.tail[1:]
			}
			p.mu.Unlock()
			if strings.Contains(line, `"msg":"node gone`) {
				var g goneLogLine
				if json.Unmarshal([]byte(line), &g) == nil && strings.HasPrefix(g.Msg, "node gone") {
					p.mu.Lock()
					if len(p.gone) < maxGoneLines {
						p.gone = append(p.gone, goneLine{peer: g.Peer, at: time.Now()})
					}
					p.mu.Unlock()
				}
			}
			if !sent && strings.Contains(line, `"node ready"`) {
				var r nodeReadyLine
				if json.Unmarshal([]byte(line), &r) == nil && r.Msg == "node ready" {
					readyc <- r
					sent = true
				}
			}
		}
		io.Copy(io.Discard, stderr)
	}()
	go func() { // waits for the process once its log is read
		<-logDone
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	select {
	case p.ready = <-readyc:
		return p, nil
	case <-p.done:
		return nil, fmt.Errorf("bench: node %s exited before it was ready (%v): %s", name, p.err, p.logTail())
	case <-ctx.Done():
		p.stop()
		return nil, ctx.Err()
	case <-time.After(90 * time.Second):
		p.stop()
		return nil, fmt.Errorf("bench: node %s not ready after 90 s: %s", name, p.logTail())
	}
}

func (p *nodeProc) logTail() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.tail, " | ")
}

// pid is the process id.
func (p *nodeProc) pid() int { return p.cmd.Process.Pid }

// rssKiB is the process's resident set, or 0 once it has exited.
func (p *nodeProc) rssKiB() int64 {
	return procKiB("/proc/"+strconv.Itoa(p.pid())+"/status", "VmRSS")
}

// signal sends SIGTERM; stop waits.
func (p *nodeProc) signal() {
	select {
	case <-p.done:
	default:
		p.cmd.Process.Signal(syscall.SIGTERM)
	}
}

// stop ends the process (SIGTERM, SIGKILL after scaleProcStop) and waits.
// It reports whether the process stopped cleanly; it may be called again.
func (p *nodeProc) stop() bool {
	p.signal()
	select {
	case <-p.done:
		return true
	case <-time.After(scaleProcStop):
		p.cmd.Process.Kill()
		<-p.done
		return false
	}
}

// crash sends SIGKILL (no clean stop: a crash) and waits until the
// process has been reaped.
func (p *nodeProc) crash() {
	select {
	case <-p.done:
		return
	default:
	}
	p.cmd.Process.Kill()
	<-p.done
}

// goneLines returns a copy of the node's "node gone" lines.
func (p *nodeProc) goneLines() []goneLine {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.gone)
}

// exited reports whether the process has been waited for.
func (p *nodeProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// scaleCluster is n node processes gossiping and sharing the first one's
// NATS server.
//
// Ownership: the cluster owns its processes and their temporary
// directory; close stops every process (all signalled at once) and
// removes the directory.
type scaleCluster struct {
	profile string
	nodes   []*nodeProc
	dir     string
	token   string
	// killedAt is when the harness killed each node it crashed on
	// purpose (by name); only the goroutine running the cluster's
	// phases uses it.
	killedAt map[string]time.Time
	// phases are the phases begun, in order, each with its start, to
	// attribute false deaths; same goroutine as killedAt.
	phases []scalePhase
}

// scalePhase is a phase of a cluster's run and when it began.
type scalePhase struct {
	name string
	at   time.Time
}

// phase records that the phase name begins now.
func (c *scaleCluster) phase(name string) {
	c.phases = append(c.phases, scalePhase{name: name, at: time.Now()})
}

// phaseAt is the name of the phase under way at t ("" before the first).
func (c *scaleCluster) phaseAt(t time.Time) string {
	name := ""
	for _, p := range c.phases {
		if p.at.After(t) {
			break
		}
		name = p.name
	}
	return name
}

// crashNode kills node i with SIGKILL, records when, and waits until it
// has been reaped.
func (c *scaleCluster) crashNode(i int) time.Time {
	p := c.nodes[i]
	at := time.Now()
	c.killedAt[p.name] = at
	p.crash()
	return at
}

// countFalseDeaths sets res's false deaths: the "node gone" lines every
// node logged between from and to about a node the harness had not
// killed by then.
func (c *scaleCluster) countFalseDeaths(res *ScaleResult, from, to time.Time) {
	res.FalseDeaths, res.FalseDeathPeers, res.FalseDeathsByPhase, res.crashGone = 0, nil, nil, 0
	res.FalseDeathSecs = round1(to.Sub(from).Seconds())
	for _, p := range c.nodes {
		for _, g := range p.goneLines() {
			if g.at.Before(from) || !g.at.Before(to) {
				continue
			}
			if k, ok := c.killedAt[g.peer]; ok && !g.at.Before(k) {
				res.crashGone++
				continue
			}
			res.FalseDeaths++
			if res.FalseDeathsByPhase == nil {
				res.FalseDeathsByPhase = map[string]int{}
			}
			res.FalseDeathsByPhase[c.phaseAt(g.at)]++
			if !slices.Contains(res.FalseDeathPeers, g.peer) && len(res.FalseDeathPeers) < 10 {
				res.FalseDeathPeers = append(res.FalseDeathPeers, g.peer)
			}
		}
	}
}

// scaleNodeArgs are the flags of node i; seed is node 1's gossip address
// and natsURL its NATS server ("" for node 1 itself).
func scaleNodeArgs(dir, profile, tokenFile string, i, maxSessions int, seed, natsURL string) []string {
	name := fmt.Sprintf("s%d", i+1)
	args := []string{
		"--name", name,
		"--msp", "127.0.0.1:0",
		"--session", "127.0.0.1:0",
		"--session-auth", "trust",
		"--session-socket", "",
		"--session-idle", "15m",
		"--max-sessions", strconv.Itoa(maxSessions),
		"--data", filepath.Join(dir, name),
		"--gossip", "127.0.0.1:0",
		"--gossip-profile", profile,
		"--http", "127.0.0.1:0",
		"--http-token-file", tokenFile,
		"--terminals", "off",
		"--log-format", "json",
		"--log-level", "info",
	}
	if seed != "" {
		args = append(args, "--join", seed)
	}
	if natsURL == "" {
		args = append(args, "--nats-listen", "127.0.0.1:0")
	} else {
		args = append(args, "--nats", natsURL)
	}
	return args
}

// startScaleCluster starts n node processes with gossip profile profile,
// each allowing maxSessions sessions, and waits until every node's
// /api/v1/nodes lists all n as synced members.
func startScaleCluster(ctx context.Context, prog *progress, bin, profile string, n, maxSessions int) (c *scaleCluster, err error) {
	dir, err := os.MkdirTemp("", "mspbench-scale-")
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	c = &scaleCluster{profile: profile, dir: dir, token: "scale-" + strconv.FormatInt(time.Now().UnixNano(), 36),
		killedAt: map[string]time.Time{}}
	defer func() {
		if err != nil {
			c.close()
			c = nil
		}
	}()
	tokenFile := filepath.Join(dir, "http.token")
	if err := os.WriteFile(tokenFile, []byte(c.token+"\n"), 0o600); err != nil {
		return c, fmt.Errorf("bench: %w", err)
	}
	first, err := startNodeProc(ctx, "s1", bin, scaleNodeArgs(dir, profile, tokenFile, 0, maxSessions, "", ""))
	if err != nil {
		return c, err
	}
	c.nodes = append(c.nodes, first)
	natsURL := strings.TrimPrefix(first.ready.NATS, "embedded ")
	if !strings.HasPrefix(natsURL, "nats://") {
		return c, fmt.Errorf("bench: node s1 did not expose NATS (it says %q)", first.ready.NATS)
	}
	seed := first.ready.Gossip
	// Start the rest a few at a time: each start is a process launch and a
	// NATS connection, and the machine has few cores.
	const parallel = 4
	rest := make([]*nodeProc, n-1)
	errs := make([]error, n-1)
	for lo := 0; lo < n-1; lo += parallel {
		var wg sync.WaitGroup
		for j := lo; j < min(lo+parallel, n-1); j++ {
			wg.Go(func() {
				rest[j], errs[j] = startNodeProc(ctx, fmt.Sprintf("s%d", j+2), bin,
					scaleNodeArgs(dir, profile, tokenFile, j+1, maxSessions, seed, natsURL))
			})
		}
		wg.Wait()
		for j := lo; j < min(lo+parallel, n-1); j++ {
			if rest[j] != nil {
				c.nodes = append(c.nodes, rest[j])
			}
		}
		if err := errors.Join(errs[lo:min(lo+parallel, n-1)]...); err != nil {
			return c, err
		}
		prog.printf("   %d/%d node processes ready", len(c.nodes), n)
	}
	return c, nil
}

// close stops every process, all signalled at once, then removes the
// directory. It reports how many processes had to be killed.
func (c *scaleCluster) close() (killed int) {
	for _, p := range c.nodes {
		p.signal()
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, p := range c.nodes {
		wg.Go(func() {
			if !p.stop() {
				mu.Lock()
				killed++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	os.RemoveAll(c.dir)
	return killed
}

// allExited reports whether every process has been waited for.
func (c *scaleCluster) allExited() bool {
	for _, p := range c.nodes {
		if !p.exited() {
			return false
		}
	}
	return true
}

// rssKiB is the sum of the nodes' resident sets.
func (c *scaleCluster) rssKiB() int64 {
	var sum int64
	for _, p := range c.nodes {
		sum += p.rssKiB()
	}
	return sum
}
