package broker

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// LockFile is the file inside a data directory that its user (a node, or
// a relay's JetStream store) holds an exclusive flock(2) on for as long as
// it runs; it records the holder's pid. Two nats-servers writing one
// JetStream store corrupt it ("Filestore [MSP_MAILBOX] Critical write
// error: lmb missing", then "could not locate msg block 1" on restart), so
// the lock is taken before the store is opened.
const LockFile = "msprelay.lock"

// ErrDirInUse marks a data directory another running process holds.
var ErrDirInUse = errors.New("in use by another process")

// DirLock is a held lock on a data directory. Its taker owns it until
// Release; the kernel drops the flock when the file is closed or the
// process dies, so a crashed holder never leaves a stale lock behind.
type DirLock struct{ f *os.File }

// LockDir takes the exclusive lock on dir (which must exist) without
// waiting. When another process (or another holder in this one) has it,
// the error matches ErrDirInUse and names the holder's pid as it recorded
// it.
func LockDir(dir string) (*DirLock, error) {
	path := filepath.Join(dir, LockFile)
	// O_NOFOLLOW: a symlink planted in the directory must not redirect
	// the truncate below.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		defer f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%s: %w (%s)", dir, ErrDirInUse, holder(f))
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	// Ours now: record who holds it, for the next one to name.
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &DirLock{f: f}, nil
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

// Release drops the lock; it is idempotent. The file stays: removing it
// would let one that opened the old file and one that creates a new file
// both hold "the" lock.
func (l *DirLock) Release() {
	if l != nil && l.f != nil {
		_ = l.f.Close()
		l.f = nil
	}
}
