//go:build linux

package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// killWait bounds how long a killed process may take to be reaped.
const killWait = 10 * time.Second

// proc is one long-running process (a node or a relay) in a host's
// namespace. Its stdout and stderr go to the lab's log file named after it;
// a restart under the same name appends to that file.
//
// The lab owns every proc: lab.cleanup kills those still running. exited is
// closed by the goroutine that waits for the process, which owns err.
type proc struct {
	name   string
	host   *host
	pid    int
	log    string
	exited chan struct{}
	err    error // Wait's result; read only after exited is closed
}

// start runs bin with args inside h's namespace through `ip netns exec`,
// which execs the binary in place, so the pid is the binary's own.
func (l *lab) start(h *host, name, bin string, args ...string) *proc {
	l.t.Helper()
	logPath := filepath.Join(l.logDir, name+".log")
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		l.t.Fatalf("%s: log file: %v", name, err)
	}
	defer f.Close()
	fmt.Fprintf(f, "==== %s: ip netns exec %s %s %s\n", time.Now().Format(time.StampMilli), h.ns, bin, strings.Join(args, " "))
	cmd := exec.Command("ip", append([]string{"netns", "exec", h.ns, filepath.Join(l.bins, bin)}, args...)...)
	cmd.Stdout, cmd.Stderr = f, f
	// Pdeathsig: if the test binary dies, its nodes die too instead of
	// running on in namespaces nobody removes.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		l.t.Fatalf("%s: start %s: %v", name, bin, err)
	}
	p := &proc{name: name, host: h, pid: cmd.Process.Pid, log: logPath, exited: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	l.mu.Lock()
	l.procs = append(l.procs, p)
	l.mu.Unlock()
	return p
}

// running reports whether the process has not exited yet.
func (p *proc) running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// wait waits up to d for the process to exit and reports whether it did;
// p.err then holds its Wait error.
func (p *proc) wait(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-p.exited:
		return true
	case <-t.C:
		return false
	}
}

// signal sends sig to the process (by its pid, never by name).
func (p *proc) signal(sig syscall.Signal) error {
	if !p.running() {
		return fmt.Errorf("%s: already exited: %v", p.name, p.err)
	}
	if err := syscall.Kill(p.pid, sig); err != nil {
		return fmt.Errorf("%s: kill -%d %d: %w", p.name, sig, p.pid, err)
	}
	return nil
}

// stop sends SIGTERM and waits up to d for a graceful exit; it returns how
// long the exit took and the process's error (nil for exit status 0).
func (p *proc) stop(d time.Duration) (time.Duration, error) {
	t0 := time.Now()
	if err := p.signal(syscall.SIGTERM); err != nil {
		return 0, err
	}
	if !p.wait(d) {
		p.kill()
		return time.Since(t0), fmt.Errorf("%s: no exit within %v of SIGTERM; killed", p.name, d)
	}
	return time.Since(t0), p.err
}

// kill sends SIGKILL if the process still runs and waits for it.
func (p *proc) kill() {
	if p.running() {
		_ = syscall.Kill(p.pid, syscall.SIGKILL)
	}
	p.wait(killWait)
}

// cliResult is what one run of a short-lived command produced.
type cliResult struct {
	stdout, stderr string
	code           int
}

func (r cliResult) String() string {
	return fmt.Sprintf("exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
}

// run runs a short-lived binary from the lab's bin dir inside h's namespace
// and returns its output and exit code; code -1 means it could not run or
// was killed at the deadline.
func (l *lab) run(ctx context.Context, h *host, bin string, args ...string) cliResult {
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", h.ns, filepath.Join(l.bins, bin)}, args...)...)
	var out, errOut strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errOut
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.WaitDelay = time.Second
	err := cmd.Run()
	r := cliResult{stdout: out.String(), stderr: errOut.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee) && ee.ExitCode() >= 0:
		r.code = ee.ExitCode()
	default:
		r.code = -1
		r.stderr += "\n(run: " + err.Error() + ")"
	}
	return r
}
