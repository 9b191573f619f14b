package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"time"

	"github.com/msprelay/msprelay/principal"
	principalpkg "github.com/msprelay/msprelay/principal"
	"github.com/msprelay/msprelay/sessionclient"
)

// The client workload's receivers are `msp listen` processes, exactly as
// users run them: the harness builds ./cmd/msp into a temporary directory
// (or uses Config.MSPBinary), starts `msp listen --json` against the
// node's session listener, and reads its standard output, one JSON object
// per message, to count deliveries and time them.

// mspPackage is the import path of the msp command.
const mspPackage = "github.com/msprelay/msprelay/cmd/msp"

// mspBinary returns the msp command the client workload runs: the
// configured one, or one built now (once per run) into a temporary
// directory that Run removes.
func (h *harness) mspBinary(ctx context.Context) (string, error) {
	if h.cfg.MSPBinary != "" {
		return h.cfg.MSPBinary, nil
	}
	if h.mspBin != "" {
		return h.mspBin, nil
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	dir, err := os.MkdirTemp("", "mspbench-msp-")
	if err != nil {
		return "", fmt.Errorf("bench: %w", err)
	}
	h.cleanup = append(h.cleanup, func() { os.RemoveAll(dir) })
	bin := filepath.Join(dir, "msp")
	bctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	h.prog.printf("   building %s for the client workload", mspPackage)
	out, err := exec.CommandContext(bctx, goTool, "build", "-o", bin, mspPackage).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("bench: building msp for the client workload (run mspbench inside the msprelay module, or give --msp-binary): %w: %s",
			err, bytes.TrimSpace(out))
	}
	h.mspBin = bin
	return bin, nil
}

// listenProc is one `msp listen` process.
//
// Ownership: listenProc owns the process and its pipes; the goroutine
// running read (started by the caller) owns stdout until it ends; stop
// ends the process and waits for both.
type listenProc struct {
	cmd    *exec.Cmd
	stdout *bufio.Reader
	stderr bytes.Buffer  // written by exec's copier until Wait returns
	read   chan struct{} // closed when read has ended

	stopOnce sync.Once
}

// startListen starts `bin listen --json` signed in as user at term on the
// session listener addr, without reconnecting (a lost node ends it).
func startListen(bin, addr, user, term string) (*listenProc, error) {
	lp := &listenProc{read: make(chan struct{})}
	lp.cmd = exec.Command(bin, "listen", "--json", "--reconnect=false", "--session", addr, "--user", user, "--term", term)
	lp.cmd.Env = append(os.Environ(), "MSPRELAY_SESSION_ADDR=", "MSPRELAY_SECRET_FILE=")
	lp.cmd.Stderr = &lp.stderr
	out, err := lp.cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("bench: msp listen: %w", err)
	}
	if err := lp.cmd.Start(); err != nil {
		return nil, fmt.Errorf("bench: msp listen: %w", err)
	}
	lp.stdout = bufio.NewReaderSize(out, 64<<10)
	return lp, nil
}

// textField is what precedes a message's text in msp listen's JSON line;
// the load generator's texts hold no character JSON escapes.
var textField = []byte(`"text":"`)

// readInto hands the text of every message line on stdout to r until the
// process's stdout ends.
func (lp *listenProc) readInto(r *receiver, clk clock) {
	defer close(lp.read)
	for {
		line, err := lp.stdout.ReadSlice('\n')
		if text, ok := listenText(line); ok {
			r.record(text, clk.now())
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return
		}
	}
}

// listenText returns the text of a message line of `msp listen --json`
// as far as the first quote: all of a load generator's text, which holds
// no character JSON escapes. ok is false for a line without a text.
func listenText(line []byte) (text string, ok bool) {
	i := bytes.Index(line, textField)
	if i < 0 {
		return "", false
	}
	rest := line[i+len(textField):]
	j := bytes.IndexByte(rest, '"')
	if j < 0 {
		return "", false
	}
	return string(rest[:j]), true
}

// exited reports whether the process's stdout has ended.
func (lp *listenProc) exited() bool {
	select {
	case <-lp.read:
		return true
	default:
		return false
	}
}

// stop interrupts the process (msp listen signs out and exits 0), kills it
// if it has not exited within 10 s, and waits for it and its reader.
func (lp *listenProc) stop() {
	lp.stopOnce.Do(func() {
		lp.cmd.Process.Signal(os.Interrupt)
		select {
		case <-lp.read:
		case <-time.After(10 * time.Second):
			lp.cmd.Process.Kill()
			<-lp.read
		}
		lp.cmd.Wait()
	})
}

// signInListeners starts n `msp listen` processes signed in as
// prefix0..prefix(n-1) at term on the session listener addr, and waits
// until the node lists every one of them. The caller closes them.
func signInListeners(ctx context.Context, bin, addr string, n int, prefix, term string, clk clock) (*receivers, error) {
	rs := &receivers{clock: clk}
	for i := range n {
		user := prefix + strconv.Itoa(i)
		lp, err := startListen(bin, addr, user, term)
		if err != nil {
			rs.close()
			return nil, err
		}
		r := &receiver{lp: lp, user: user}
		rs.rs = append(rs.rs, r)
		rs.wg.Go(func() { lp.readInto(r, clk) })
	}
	if err := rs.awaitListed(ctx, addr, term); err != nil {
		rs.close()
		return nil, err
	}
	return rs, nil
}

// awaitListed waits (at most 30 s) until the node at the session listener
// addr lists every receiver at term, asking through a probe session of its
// own.
func (rs *receivers) awaitListed(ctx context.Context, addr, term string) error {
	probe, err := sessionclient.Dial(ctx, addr)
	if err != nil {
		return fmt.Errorf("bench: probe session: %w", err)
	}
	defer probe.Close()
	if _, err := probe.SignIn(ctx, "mspbench-probe", "probe", principal.Online); err != nil {
		return fmt.Errorf("bench: probe session: sign in: %w", err)
	}
	var gone *receiver
	err = waitFor(ctx, 30*time.Second, func() bool {
		for _, r := range rs.rs {
			if r.lp.exited() {
				gone = r
				return true
			}
			wctx, cancel := context.WithTimeout(ctx, ioTimeout)
			es, err := probe.Who(wctx, r.user)
			cancel()
			if err != nil || !hasTerm(es, term) {
				return false
			}
		}
		return true
	})
	if gone != nil {
		gone.lp.stop()
		return fmt.Errorf("bench: msp listen as %s exited: %s", gone.user, bytes.TrimSpace(gone.lp.stderr.Bytes()))
	}
	if err != nil {
		return fmt.Errorf("bench: msp listen not signed in: %w", err)
	}
	return nil
}

// hasTerm reports whether es lists a terminal named term.
func hasTerm(es []principalpkg.Entry, term string) bool {
	for _, e := range es {
		if e.Term == term {
			return true
		}
	}
	return false
}
