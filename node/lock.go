package node

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
)

// LockFile is the file inside the data directory that a node holds an
// exclusive flock(2) on for as long as it runs; it records the holder's
// pid. Two embedded nats-servers writing one JetStream store corrupt it
// (issue 20: "Filestore [MSP_MAILBOX] Critical write error: lmb missing",
// then "could not locate msg block 1" on restart), so the lock is taken
// before the store is opened.
const LockFile = "msprelay.lock"

// ErrDataDirInUse marks a data directory another running node holds.
var ErrDataDirInUse = errors.New("in use by another node")

// dirLock is a held lock on a data directory. The node owns it from
// startNATS until Close, after the store is closed; the kernel drops the
// flock when the file is closed or the process dies, so a crashed node
// never leaves a stale lock behind.
type dirLock struct{ f *os.File }

// lockDataDir takes the exclusive lock on dir (which must exist) without
// waiting. When another process holds it, the error matches
// ErrDataDirInUse and names the holder's pid as it recorded it.
func lockDataDir(dir string) (*dirLock, error) {
	path := filepath.Join(dir, LockFile)
	// O_NOFOLLOW: the directory is checked to be ours (sessionsock.CheckDir),
	// but a symlink planted before that check must not redirect the
	// truncate below.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		defer f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%s: %w (%s)", dir, ErrDataDirInUse, holder(f))
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	// Ours now: record who holds it, for the next one to name.
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &dirLock{f: f}, nil
}

// holder describes the process a lock file names.
func holder(f *os.File) string {
	b := make([]byte, 32)
	n, _ := f.ReadAt(b, 0)
	if pid, err := strconv.Atoi(strings.TrimSpace(string(b[:n]))); err == nil && pid > 0 {
		return "pid " + strconv.Itoa(pid)
	}
	// The holder is between taking the lock and writing its pid.
	return "pid not recorded yet"
}

// release drops the lock. The file stays: removing it would let a node
// that opened the old file and one that creates a new file both hold "the"
// lock.
func (l *dirLock) release() {
	if l != nil && l.f != nil {
		_ = l.f.Close()
		l.f = nil
	}
}

// nameClaim is this node's claim on its name among the nodes of this host:
// an abstract Unix socket named after it (Linux; elsewhere nothing), held
// for the node's life and dropped by the kernel when the process ends.
// Two nodes on one host both default to the host name (issue 20); when
// they ever meet in a cluster one is refused, so the second hears of it
// at start. A claim is only a warning: any local user can bind the name.
type nameClaim struct{ c io.Closer }

// claimName claims name on this host; taken reports that another process
// holds it already.
func claimName(name string) (claim *nameClaim, taken bool) {
	if runtime.GOOS != "linux" {
		return nil, false
	}
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: "@msprelay-node/" + name, Net: "unixgram"})
	if err != nil {
		return nil, errors.Is(err, syscall.EADDRINUSE)
	}
	return &nameClaim{c: c}, false
}

// release drops the claim.
func (c *nameClaim) release() {
	if c != nil && c.c != nil {
		_ = c.c.Close()
		c.c = nil
	}
}
