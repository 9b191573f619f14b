package session

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/user"
	"strconv"
	"time"
)

// ListenUnix listens on a Unix socket at path for PeerCred sessions. A stale
// socket left by a dead server is removed; a live one is an error. The socket
// is made world-connectable (0666) because PeerCred authenticates by uid,
// not by file permissions. Closing the listener removes the socket.
func ListenUnix(path string) (net.Listener, error) {
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("session: listen %s: exists and is not a socket", path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("session: listen %s: another server is listening", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("session: removing stale socket: %w", err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("session: listen %s: %w", path, err)
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("session: listen: %w", err)
	}
	if err := os.Chmod(path, 0o666); err != nil {
		l.Close()
		return nil, fmt.Errorf("session: chmod socket: %w", err)
	}
	return l, nil
}

// loginName maps a uid to its login name with os/user.
func loginName(uid uint32) (string, error) {
	u, err := user.LookupId(strconv.FormatUint(uint64(uid), 10))
	if err != nil {
		return "", err
	}
	return u.Username, nil
}
