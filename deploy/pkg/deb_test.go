package main

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// installed lists what the two packages put on the machine; all of it must
// be gone after the purge.
var installed = []string{
	"/usr/bin/msprelay-node", "/usr/bin/msp", "/usr/bin/msprelay-relay",
	"/usr/lib/systemd/system/msprelay-node.service",
	"/usr/lib/systemd/system/msprelay-relay.service",
	"/usr/lib/systemd/user/msp-listen.service",
	"/etc/default/msprelay", "/etc/default/msprelay-relay",
	"/usr/share/doc/msprelay", "/usr/share/doc/msprelay-relay",
	"/usr/share/bash-completion/completions/msp", "/usr/share/bash-completion/completions/msprelay-node",
	"/usr/share/zsh/vendor-completions/_msp",
	"/var/lib/msprelay", "/var/lib/msprelay-relay",
	"/etc/msprelay/http.token", "/etc/msprelay",
}

// exposure reads systemd's overall score from `systemd-analyze security`.
var exposure = regexp.MustCompile(`Overall exposure level for \S+: ([0-9.]+)`)

// "A test builds the .deb packages, installs them with dpkg on the CI
// machine, runs msprelay-node --version, msp --version, checks the unit
// files pass systemd-analyze verify ... and reports both exposure scores,
// then purges them and leaves the machine clean."
func TestDebianPackagesInstallAndPurge(t *testing.T) {
	if testing.Short() {
		t.Skip("builds, installs and purges the packages")
	}
	if os.Geteuid() != 0 {
		t.Skip("installing packages with dpkg needs root")
	}
	for _, tool := range []string{"dpkg", "dpkg-query", "useradd", "systemd-analyze"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s missing (systemd-analyze comes with the systemd package, which .ci/run installs): %v", tool, err)
		}
	}
	// The test installs system packages and a system user: two runs on
	// one machine (two checkouts, CI beside a developer) must take turns.
	lock, err := os.OpenFile("/run/lock/msprelay-deb-test.lock", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	for _, pkg := range []string{"msprelay", "msprelay-relay"} {
		if out, _ := exec.Command("dpkg-query", "-W", "-f=${db:Status-Status}", pkg).Output(); strings.TrimSpace(string(out)) != "" && string(out) != "not-installed" {
			t.Skipf("%s is already on this machine (%s); not touching it", pkg, out)
		}
	}
	if exec.Command("getent", "passwd", "msprelay").Run() == nil {
		t.Skip("a user msprelay already exists; the purge would remove it")
	}
	// A node run as root from a checkout (the README's quick start) keeps
	// its store and socket in the packaged node's paths; the purge would
	// delete that store, and such a node beside the test breaks both.
	for _, d := range []string{"/var/lib/msprelay", "/run/msprelay"} {
		if _, err := os.Lstat(d); err == nil {
			t.Skipf("%s already exists (a node run from a checkout?); the purge would remove it", d)
		}
	}

	out := t.TempDir()
	debs, err := Build(Config{Src: repoRoot, Out: out, Version: testVersion, Arch: runtime.GOARCH, Binaries: staticBinaries(t)})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range debs {
		if fi, err := os.Stat(d); err == nil {
			t.Logf("%s: %d bytes (%.1f MiB)", filepath.Base(d), fi.Size(), float64(fi.Size())/(1<<20))
		}
	}
	purge := func() {
		if out, err := exec.Command("dpkg", "--purge", "msprelay", "msprelay-relay").CombinedOutput(); err != nil {
			t.Errorf("dpkg --purge: %v\n%s", err, out)
		}
	}
	t.Cleanup(func() {
		// Whatever failed above, leave the machine as it was.
		if o, _ := exec.Command("dpkg-query", "-W", "-f=${db:Status-Status}", "msprelay").Output(); strings.TrimSpace(string(o)) != "" && string(o) != "not-installed" {
			purge()
		}
	})
	// Install without starting the node: on a machine run by systemd it
	// would take port 18 for the length of the test.
	install := exec.Command("dpkg", append([]string{"-i"}, debs...)...)
	install.Env = append(os.Environ(), "MSPRELAY_NO_START=1")
	if out, err := install.CombinedOutput(); err != nil {
		t.Fatalf("dpkg -i: %v\n%s", err, out)
	}

	for _, c := range []struct{ cmd, want string }{
		{"msprelay-node", "msprelay node " + testVersion},
		{"msprelay-relay", "msprelay relay " + testVersion},
		{"msp", "msp " + testVersion},
	} {
		if got := must(t, "/usr/bin/"+c.cmd, "--version"); !strings.HasPrefix(got, c.want) {
			t.Errorf("%s --version printed %q, want %q", c.cmd, got, c.want)
		}
	}
	// Issue 20: "man pages ... shipped in the .deb (checked by the package
	// test with man -l)": each installed page renders, names its program
	// and lists a flag from the table it was generated from.
	if _, err := exec.LookPath("man"); err != nil {
		t.Errorf("man missing (man-db, which .ci/run installs): %v", err)
	} else {
		for _, c := range []struct{ page, name, flag string }{
			{"/usr/share/man/man1/msp.1", "msp", "--from-term"},
			{"/usr/share/man/man8/msprelay-node.8", "msprelay-node", "--max-conns"},
			{"/usr/share/man/man8/msprelay-relay.8", "msprelay-relay", "--cluster-name"},
		} {
			page := exec.Command("man", "-l", c.page)
			page.Env = append(os.Environ(), "MANPAGER=cat", "MANWIDTH=200", "LC_ALL=C.UTF-8")
			out, err := page.CombinedOutput()
			if err != nil {
				t.Errorf("man -l %s: %v\n%s", c.page, err, out)
				continue
			}
			if text := string(out); !strings.Contains(text, c.name) || !strings.Contains(text, c.flag) {
				t.Errorf("man -l %s does not show %s and %s:\n%s", c.page, c.name, c.flag, text)
			}
		}
	}
	// Issue 20: "bash and zsh completion shipped": installed where
	// bash-completion and zsh look, and the bash one completes.
	for _, p := range []string{"/usr/share/bash-completion/completions/msp", "/usr/share/bash-completion/completions/msprelay-node", "/usr/share/zsh/vendor-completions/_msp"} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("completion not installed: %v", err)
		}
	}
	if got := must(t, "bash", "-c", `source /usr/share/bash-completion/completions/msp && COMP_WORDS=(msp s) COMP_CWORD=1 && _msp && echo "${COMPREPLY[*]}"`); !strings.Contains(got, "send") {
		t.Errorf("installed bash completion of 'msp s' gave %q, want send among them", got)
	}
	if got := must(t, "getent", "passwd", "msprelay"); !strings.Contains(got, ":/var/lib/msprelay:/usr/sbin/nologin") {
		t.Errorf("system user msprelay: %q", got)
	}
	if got := must(t, "dpkg-query", "-W", "-f=${Conffiles}", "msprelay"); !strings.Contains(got, "/etc/default/msprelay") {
		t.Errorf("/etc/default/msprelay is not a conffile: %q", got)
	}

	// Issue 18: "The API and status page need a token by default when
	// installed from the package (generated at install, readable by root
	// and an msprelay admin group)".
	checkToken(t)

	runAsUnit(t)

	units := []string{"/usr/lib/systemd/system/msprelay-node.service", "/usr/lib/systemd/system/msprelay-relay.service"}
	verify := exec.Command("systemd-analyze", append([]string{"verify", "--man=no"}, append(units, "/usr/lib/systemd/user/msp-listen.service")...)...)
	if out, err := verify.CombinedOutput(); err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	for _, u := range units {
		out, _ := exec.Command("systemd-analyze", "security", "--offline=true", u).CombinedOutput()
		m := exposure.FindSubmatch(out)
		if m == nil {
			t.Errorf("systemd-analyze security %s: no overall score in\n%s", u, out)
			continue
		}
		score, _ := strconv.ParseFloat(string(m[1]), 64)
		t.Logf("exposure of %s: %.1f", filepath.Base(u), score)
		if score > 3.0 {
			t.Errorf("exposure of %s is %.1f, want 3.0 or lower:\n%s", u, score, out)
		}
	}

	purge()
	for _, p := range installed {
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("%s is still there after the purge", p)
		}
	}
	if exec.Command("getent", "passwd", "msprelay").Run() == nil {
		t.Error("user msprelay is still there after purging both packages")
	}
	if exec.Command("getent", "group", "msprelay").Run() == nil {
		t.Error("group msprelay is still there after purging both packages")
	}
	if exec.Command("getent", "group", "msprelay-admin").Run() == nil {
		t.Error("group msprelay-admin is still there after purging both packages")
	}
}

// checkToken checks the HTTP token the package made: a random line,
// root:msprelay-admin 0640, named by the node's unit.
func checkToken(t *testing.T) {
	t.Helper()
	const token = "/etc/msprelay/http.token"
	fi, err := os.Stat(token)
	if err != nil {
		t.Fatalf("token after install: %v", err)
	}
	if fi.Mode().Perm() != 0o640 {
		t.Errorf("%s mode %v, want 0640", token, fi.Mode().Perm())
	}
	st := fi.Sys().(*syscall.Stat_t)
	group := strings.SplitN(strings.TrimSpace(must(t, "getent", "group", "msprelay-admin")), ":", 4)
	if st.Uid != 0 || len(group) < 3 || strconv.Itoa(int(st.Gid)) != group[2] {
		t.Errorf("%s owned by %d:%d, want root:msprelay-admin (%v)", token, st.Uid, st.Gid, group)
	}
	b, err := os.ReadFile(token)
	if err != nil {
		t.Fatal(err)
	}
	if line := strings.TrimSpace(string(b)); !regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(line) {
		t.Errorf("token %q, want 64 hex digits", line)
	}
	if unit, err := os.ReadFile("/usr/lib/systemd/system/msprelay-node.service"); err != nil || !strings.Contains(string(unit), "MSPRELAY_HTTP_TOKEN_FILE="+token) {
		t.Errorf("the node's unit does not name the token (%v)", err)
	}
}

// must runs a command that must succeed and returns its output.
func must(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// runAsUnit starts the installed node the way msprelay-node.service does
// (user msprelay, the unit's environment, systemd's directories, a
// notification socket) and checks that it reports READY=1 and that another
// unprivileged local user's msp reaches it through the system socket.
func runAsUnit(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Logf("setpriv missing: not running the node as msprelay (%v)", err)
		return
	}
	// What StateDirectory= and RuntimeDirectory= create.
	for _, d := range []struct {
		path string
		mode os.FileMode
	}{{"/var/lib/msprelay", 0o750}, {"/run/msprelay", 0o755}} {
		if err := os.MkdirAll(d.path, d.mode); err != nil {
			t.Fatal(err)
		}
		must(t, "chown", "msprelay:msprelay", d.path)
	}
	t.Cleanup(func() { os.RemoveAll("/run/msprelay") })
	notify := fmt.Sprintf("@msprelay-deb-test-%d-%d", os.Getpid(), time.Now().UnixNano())
	ready, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: notify, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer ready.Close()
	node := exec.Command("setpriv", "--reuid=msprelay", "--regid=msprelay", "--clear-groups",
		"/usr/bin/msprelay-node", "--msp", "127.0.0.1:0", "--name", "debtest")
	node.Env = []string{"PATH=/usr/bin:/bin", "NOTIFY_SOCKET=" + notify,
		"MSPRELAY_DATA=/var/lib/msprelay", "MSPRELAY_SESSION_SOCKET=/run/msprelay/session.sock"}
	var logs bytes.Buffer
	node.Stdout, node.Stderr = &logs, &logs
	if err := node.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- node.Wait() }()
	stopped := false
	defer func() {
		if !stopped {
			_ = node.Process.Kill()
			<-exited
		}
	}()
	_ = ready.SetReadDeadline(time.Now().Add(60 * time.Second))
	buf := make([]byte, 1024)
	n, err := ready.Read(buf)
	if err != nil || !strings.HasPrefix(string(buf[:n]), "READY=1") {
		_ = node.Process.Kill()
		werr := <-exited
		stopped = true
		t.Fatalf("node as user msprelay sent %q, %v; want READY=1 (node: %v)\n%s", buf[:n], err, werr, logs.String())
	}
	// Another local user, neither root nor msprelay, asks the system node.
	who := exec.Command("setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "/usr/bin/msp", "who")
	who.Env = []string{"PATH=/usr/bin:/bin"}
	if out, err := who.CombinedOutput(); err != nil {
		t.Errorf("msp who as user nobody against the node run as msprelay: %v\n%s", err, out)
	}
	if err := node.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		stopped = true
		if err != nil {
			t.Errorf("node exited with %v after SIGTERM\n%s", err, logs.String())
		}
	case <-time.After(30 * time.Second):
		t.Errorf("node still running 30s after SIGTERM")
	}
}
