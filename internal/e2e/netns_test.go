//go:build linux

package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// netnsDir is where `ip netns add` mounts named namespaces.
const netnsDir = "/run/netns"

// lab is one test's network: a bridge in the root namespace and, per host,
// a namespace joined to the bridge by a veth pair. Hosts get addresses in
// the lab's own /24; the root namespace gets none, so nothing outside the
// namespaces can reach them or be reached from them, and the test talks to
// them only from inside (ip netns exec, or host.dial).
//
// The lab owns every namespace, link and process it creates and removes
// them in a t.Cleanup registered by newLab, which runs also when the test
// fails (after printing the tail of every process log).
type lab struct {
	t      *testing.T
	ns     string // "mr<pid>-<tag>": prefix of every namespace
	link   string // "mr<pid><tag>": prefix of every root-side link (IFNAMSIZ is 16)
	bridge string
	subnet string // "10.218.x", a /24
	bins   string // built binaries
	logDir string

	// mu guards hosts and procs.
	mu    sync.Mutex
	hosts []*host
	procs []*proc
}

// host is one namespace on the lab's bridge.
type host struct {
	name string // short name, as in the logs ("h1")
	ns   string // namespace name
	ip   string
	veth string // root-side end of the veth pair
}

// Patterns of the names labs create; the pid says which run made them.
var (
	staleNSRe   = regexp.MustCompile(`^mr([0-9]+)-[a-z]-`)
	staleLinkRe = regexp.MustCompile(`^mr([0-9]+)[a-z](br|v[0-9]+)$`)
)

// newLab creates the bridge of a lab. tag, one lower-case letter, keeps the
// names of tests that run at the same time apart.
func newLab(t *testing.T, tag string) *lab {
	t.Helper()
	bins := binDir(t)
	if len(tag) != 1 || tag[0] < 'a' || tag[0] > 'z' {
		t.Fatalf("lab tag %q: want one letter a-z", tag)
	}
	pid := os.Getpid()
	l := &lab{
		t:      t,
		ns:     fmt.Sprintf("mr%d-%s", pid, tag),
		link:   fmt.Sprintf("mr%d%s", pid, tag),
		subnet: fmt.Sprintf("10.218.%d", 1+(pid*26+int(tag[0]-'a'))%254),
		bins:   bins,
		logDir: t.TempDir(),
	}
	l.bridge = l.link + "br"
	// Registered after TempDir, so it runs before the logs are removed.
	t.Cleanup(l.cleanup)
	l.ip("link", "add", l.bridge, "type", "bridge")
	l.ip("link", "set", l.bridge, "up")
	t.Logf("lab %s: bridge %s, subnet %s.0/24, logs in %s", l.ns, l.bridge, l.subnet, l.logDir)
	return l
}

// ip runs one iproute2 command and fails the test if it fails.
func (l *lab) ip(args ...string) {
	l.t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		l.t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
}

// addHost creates a namespace with loopback up and eth0 on the bridge.
func (l *lab) addHost(name string) *host {
	l.t.Helper()
	l.mu.Lock()
	i := len(l.hosts)
	h := &host{
		name: name,
		ns:   l.ns + "-" + name,
		ip:   fmt.Sprintf("%s.%d", l.subnet, 10+i),
		veth: fmt.Sprintf("%sv%d", l.link, i),
	}
	l.hosts = append(l.hosts, h)
	l.mu.Unlock()
	l.ip("netns", "add", h.ns)
	l.ip("-n", h.ns, "link", "set", "lo", "up")
	l.ip("link", "add", h.veth, "type", "veth", "peer", "name", "eth0", "netns", h.ns)
	l.ip("link", "set", h.veth, "master", l.bridge, "up")
	l.ip("-n", h.ns, "addr", "add", h.ip+"/24", "dev", "eth0")
	l.ip("-n", h.ns, "link", "set", "eth0", "up")
	return h
}

// addHosts adds one host per name.
func (l *lab) addHosts(names ...string) []*host {
	l.t.Helper()
	hs := make([]*host, len(names))
	for i, n := range names {
		hs[i] = l.addHost(n)
	}
	return hs
}

// cleanup prints the logs of a failed test, then kills every process and
// removes every namespace and link, reporting (not failing on) leftovers.
func (l *lab) cleanup() {
	if l.t.Failed() {
		l.dumpLogs(60)
	}
	l.mu.Lock()
	procs, hosts := l.procs, l.hosts
	l.mu.Unlock()
	for _, p := range procs {
		p.kill()
	}
	for _, h := range hosts {
		// Deleting one end of a veth pair deletes both.
		if out, err := exec.Command("ip", "link", "del", h.veth).CombinedOutput(); err != nil {
			l.t.Logf("cleanup: ip link del %s: %v: %s", h.veth, err, strings.TrimSpace(string(out)))
		}
		if pids := nsPids(h.ns); len(pids) > 0 {
			l.t.Errorf("cleanup: processes %v still run in %s", pids, h.ns)
		}
		if out, err := exec.Command("ip", "netns", "del", h.ns).CombinedOutput(); err != nil {
			l.t.Errorf("cleanup: ip netns del %s: %v: %s", h.ns, err, strings.TrimSpace(string(out)))
		}
	}
	if out, err := exec.Command("ip", "link", "del", l.bridge).CombinedOutput(); err != nil {
		l.t.Errorf("cleanup: ip link del %s: %v: %s", l.bridge, err, strings.TrimSpace(string(out)))
	}
}

// dumpLogs logs the last n lines of every process log of the lab.
func (l *lab) dumpLogs(n int) {
	files, _ := filepath.Glob(filepath.Join(l.logDir, "*.log"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			l.t.Logf("log %s: %v", f, err)
			continue
		}
		lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
		lines = lines[max(0, len(lines)-n):]
		l.t.Logf("---- last %d lines of %s ----\n%s", len(lines), filepath.Base(f), strings.Join(lines, "\n"))
	}
}

// nsPids lists the processes running in a named namespace.
func nsPids(ns string) []string {
	out, err := exec.Command("ip", "netns", "pids", ns).Output()
	if err != nil {
		return nil
	}
	return strings.Fields(string(out))
}

// dial opens a connection from inside h's namespace. The socket belongs to
// the namespace it was created in, so only its creation needs the thread
// switched; the connection works from any goroutine afterwards.
func (h *host) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	var conn net.Conn
	err := inNetns(h.ns, func() error {
		var d net.Dialer
		c, err := d.DialContext(ctx, network, addr)
		conn = c
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("%s: dial %s %s: %w", h.name, network, addr, err)
	}
	return conn, nil
}

// inNetns runs fn on an OS thread moved into namespace ns. It uses a
// goroutine of its own: if moving the thread back fails, the goroutine ends
// still locked and the runtime discards the thread rather than let another
// goroutine run in the wrong namespace.
func inNetns(ns string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		self, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", syscall.Gettid()))
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("netns: own namespace: %w", err)
			return
		}
		defer self.Close()
		target, err := os.Open(filepath.Join(netnsDir, ns))
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("netns %s: %w", ns, err)
			return
		}
		defer target.Close()
		if err := setns(target); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("netns %s: setns: %w", ns, err)
			return
		}
		ferr := fn()
		if err := setns(self); err != nil {
			errc <- fmt.Errorf("netns %s: moving back: %w", ns, err)
			return // still locked: the thread dies with this goroutine
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// setns moves the calling thread into the network namespace f refers to.
func setns(f *os.File) error {
	nr, ok := setnsSyscall(runtime.GOARCH)
	if !ok {
		return fmt.Errorf("setns: syscall number for %s unknown", runtime.GOARCH)
	}
	if _, _, errno := syscall.Syscall(nr, f.Fd(), syscall.CLONE_NEWNET, 0); errno != 0 {
		return errno
	}
	return nil
}

// setnsSyscall is setns(2)'s number per architecture: the frozen syscall
// package lacks SYS_SETNS, and golang.org/x/sys is not a direct dependency.
func setnsSyscall(arch string) (uintptr, bool) {
	switch arch {
	case "amd64":
		return 308, true
	case "arm64", "riscv64", "loong64":
		return 268, true
	case "386":
		return 346, true
	case "arm":
		return 375, true
	case "ppc64", "ppc64le":
		return 350, true
	case "s390x":
		return 339, true
	}
	return 0, false
}

// sweepStale removes, best effort, the namespaces and links that earlier
// runs of this package left behind when they crashed: names made by a pid
// that no longer runs a test binary (namespaces also only if created before
// this run started). It reports what it removed on w.
func sweepStale(start time.Time, w io.Writer) {
	self := os.Getpid()
	stale := func(pidText string) bool {
		pid, err := strconv.Atoi(pidText)
		if err != nil || pid == self {
			return false
		}
		comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		return err != nil || strings.TrimSpace(string(comm)) != "e2e.test"
	}
	// Links first: deleting a root-side veth removes its namespace end, and
	// a namespace removal would otherwise race with the link listing.
	sweepLinks(stale, w)
	sweepNamespaces(start, stale, w)
}

func sweepLinks(stale func(pid string) bool, w io.Writer) {
	out, err := exec.Command("ip", "-o", "link", "show").Output()
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(out), "\n") {
		// "12: mr123av0@if2: <...>": the name is the second field up to '@' or ':'.
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimSuffix(f[1], ":"), "@")
		if m := staleLinkRe.FindStringSubmatch(name); m != nil && stale(m[1]) {
			out, err := exec.Command("ip", "link", "del", name).CombinedOutput()
			fmt.Fprintf(w, "e2e: swept stale link %s (err=%v %s)\n", name, err, strings.TrimSpace(string(out)))
		}
	}
}

// sweepNamespaces kills the processes still inside stale namespaces (nodes
// and relays those runs started; Pdeathsig normally got them already) and
// deletes the namespaces.
func sweepNamespaces(start time.Time, stale func(pid string) bool, w io.Writer) {
	entries, _ := os.ReadDir(netnsDir)
	for _, e := range entries {
		m := staleNSRe.FindStringSubmatch(e.Name())
		if m == nil || !stale(m[1]) {
			continue
		}
		if info, err := e.Info(); err != nil || !info.ModTime().Before(start) {
			continue
		}
		for _, p := range nsPids(e.Name()) {
			if pid, err := strconv.Atoi(p); err == nil {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		out, err := exec.Command("ip", "netns", "del", e.Name()).CombinedOutput()
		fmt.Fprintf(w, "e2e: swept stale namespace %s (err=%v %s)\n", e.Name(), err, strings.TrimSpace(string(out)))
	}
}
