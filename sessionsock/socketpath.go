// Package sessionsock says where the session socket lives and whom to trust
// with it: the default socket paths, the checks on the directory that holds
// a socket (CheckDir, EnsureDir), the owner of the server at the other end
// (CheckServer) and peer credentials (PeerUID). The server (package session)
// and the client (package sessionclient) share it.
package sessionsock

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
)

// SystemSocketPath is the session socket of a node run by root (systemd).
const SystemSocketPath = "/run/msprelay/session.sock"

// ErrUnsafeDir is wrapped by every refusal of a directory another user
// could tamper with (see [CheckDir]).
var ErrUnsafeDir = errors.New("sessionsock: unsafe directory")

// DefaultSocketPath is where a node listens for local session clients:
// $MSPRELAY_SESSION_SOCKET, else SystemSocketPath for root, else a path in
// the user's private runtime directory ($XDG_RUNTIME_DIR, or /run/user/UID
// when that is the user's own 0700 directory), else in the user's private
// state directory (where the node keeps its data). It never falls back to a
// shared directory such as /tmp, where another user could have created the
// path first. Empty means none could be found: pass --session-socket.
func DefaultSocketPath() string {
	if c := SocketCandidates(); len(c) > 0 {
		return c[0]
	}
	return ""
}

// SocketCandidates lists, most specific first, where a client looks for the
// local node's session socket: $MSPRELAY_SESSION_SOCKET alone when set;
// otherwise, for a non-root user, their own node's paths and then the
// system node's.
func SocketCandidates() []string {
	if p := os.Getenv("MSPRELAY_SESSION_SOCKET"); p != "" {
		return []string{p}
	}
	if os.Geteuid() == 0 {
		return []string{SystemSocketPath}
	}
	var out []string
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
		out = append(out, filepath.Join(d, "msprelay", "session.sock"))
	} else if d := filepath.Join("/run/user", strconv.Itoa(os.Geteuid())); CheckDir(d) == nil {
		out = append(out, filepath.Join(d, "msprelay", "session.sock"))
	}
	if d := userStateDir(); d != "" {
		out = append(out, filepath.Join(d, "msprelay", "session.sock"))
	}
	return append(out, SystemSocketPath)
}

// userStateDir is $XDG_STATE_HOME, else ~/.local/state, else "".
func userStateDir() string {
	if d := os.Getenv("XDG_STATE_HOME"); d != "" {
		return d
	}
	if h, err := os.UserHomeDir(); err == nil && h != "" {
		return filepath.Join(h, ".local", "state")
	}
	return ""
}

// CheckDir checks that path is a directory (not a symbolic link to one)
// owned by the running user and not writable by group or others, and that
// every directory above it belongs to root or the running user and, if
// others may write to it, has the sticky bit (like /tmp), so that nobody
// else can put, replace or move files in it or move it away.
func CheckDir(path string) error {
	abs, err := filepath.Abs(path)
	if err != nil {
		return fmt.Errorf("sessionsock: %w", err)
	}
	for p := filepath.Dir(abs); ; p = filepath.Dir(p) {
		if err := checkAncestor(p); err != nil {
			return err
		}
		if p == filepath.Dir(p) {
			break
		}
	}
	fi, err := os.Lstat(abs)
	if err != nil {
		return fmt.Errorf("sessionsock: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("%w: %s is not a directory (a symbolic link or a file)", ErrUnsafeDir, path)
	}
	if uid, ok := FileOwner(fi); ok && uid != uint32(os.Geteuid()) {
		return fmt.Errorf("%w: %s belongs to uid %d, not to the running uid %d", ErrUnsafeDir, path, uid, os.Geteuid())
	}
	if fi.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("%w: %s has mode %#o; group and others must not be able to write to it (chmod go-w)", ErrUnsafeDir, path, fi.Mode().Perm())
	}
	return nil
}

// checkAncestor checks one directory above a checked one.
func checkAncestor(p string) error {
	fi, err := os.Stat(p) // a symbolic link here is as good as its target
	if err != nil {
		return fmt.Errorf("sessionsock: %w", err)
	}
	if uid, ok := FileOwner(fi); ok && uid != 0 && uid != uint32(os.Geteuid()) {
		return fmt.Errorf("%w: %s belongs to uid %d, who could move what is in it", ErrUnsafeDir, p, uid)
	}
	if fi.Mode().Perm()&0o022 != 0 && fi.Mode()&fs.ModeSticky == 0 {
		return fmt.Errorf("%w: %s has mode %#o without the sticky bit; others could move what is in it", ErrUnsafeDir, p, fi.Mode().Perm())
	}
	return nil
}

// EnsureDir creates path with perm if it is missing (parents too, with
// perm, subject to the umask), then checks it with [CheckDir].
func EnsureDir(path string, perm fs.FileMode) error {
	if err := os.MkdirAll(path, perm); err != nil {
		return fmt.Errorf("sessionsock: %w", err)
	}
	return CheckDir(path)
}
