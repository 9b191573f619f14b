package session

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/msprelay/msprelay/sessionsock"
)

// ListenUnix listens on a Unix socket at path for PeerCred sessions.
//
// The directory holding path is created if missing (0700, or 0755 for root,
// whose system socket every local user must reach) and must pass
// [sessionsock.CheckDir]: owned by the running user and writable by nobody else, so no
// one else can replace the socket. The socket is bound in a fresh private
// directory next to path, made world-connectable (0666: PeerCred
// authenticates by uid, not by file permissions) while nobody else can
// reach it, and then renamed into place, so there is no window in which
// path exists with other permissions or could be swapped. Something already
// at path is replaced only if it is a socket owned by the running user that
// nobody answers on (left by a dead server); a live socket or anything else
// is an error. Closing the listener removes the socket if it is still ours.
func ListenUnix(path string) (net.Listener, error) {
	dir := filepath.Dir(path)
	perm := fs.FileMode(0o700)
	if os.Geteuid() == 0 {
		perm = 0o755
	}
	if err := sessionsock.EnsureDir(dir, perm); err != nil {
		return nil, fmt.Errorf("session: listen %s: %w", path, err)
	}
	if err := checkStale(path); err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp(dir, ".bind-")
	if err != nil {
		return nil, fmt.Errorf("session: listen %s: %w", path, err)
	}
	defer os.RemoveAll(tmp)
	tmpPath := filepath.Join(tmp, "s")
	ul, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmpPath, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("session: listen %s: %w", path, err)
	}
	ul.SetUnlinkOnClose(false) // the socket moves; Close removes it by its final name
	if err := os.Chmod(tmpPath, 0o666); err != nil {
		ul.Close()
		return nil, fmt.Errorf("session: chmod socket: %w", err)
	}
	if err := os.Rename(tmpPath, path); err != nil {
		ul.Close()
		return nil, fmt.Errorf("session: listen %s: %w", path, err)
	}
	fi, err := os.Lstat(path)
	if err != nil {
		ul.Close()
		return nil, fmt.Errorf("session: listen %s: %w", path, err)
	}
	return &unixListener{UnixListener: ul, addr: &net.UnixAddr{Name: path, Net: "unix"}, fi: fi}, nil
}

// checkStale makes sure path is free or holds a dead socket of ours, which
// the rename then replaces.
func checkStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("session: listen %s: %w", path, err)
	}
	if fi.Mode()&fs.ModeSocket == 0 {
		return fmt.Errorf("session: listen %s: exists and is not a socket", path)
	}
	if uid, ok := sessionsock.FileOwner(fi); ok && uid != uint32(os.Geteuid()) {
		return fmt.Errorf("session: listen %s: the socket there belongs to uid %d", path, uid)
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return fmt.Errorf("session: listen %s: another server is listening", path)
	}
	return nil
}

// unixListener is a Unix listener bound under another name and renamed to
// addr; Close removes addr if it is still the socket we renamed there.
type unixListener struct {
	*net.UnixListener
	addr *net.UnixAddr
	fi   fs.FileInfo // of the socket at addr after the rename
	once sync.Once
}

// Addr is the socket's final path.
func (l *unixListener) Addr() net.Addr { return l.addr }

// Close stops listening and removes the socket file, once.
func (l *unixListener) Close() error {
	err := l.UnixListener.Close()
	l.once.Do(func() {
		if fi, serr := os.Lstat(l.addr.Name); serr == nil && os.SameFile(fi, l.fi) {
			os.Remove(l.addr.Name)
		}
	})
	return err
}

// loginName maps a uid to its login name with os/user.
func loginName(uid uint32) (string, error) {
	u, err := user.LookupId(strconv.FormatUint(uint64(uid), 10))
	if err != nil {
		return "", err
	}
	return u.Username, nil
}
