package session

import (
	"fmt"
	"os"
	"path/filepath"
)

// SystemSocketPath is the session socket of a node run by root (systemd).
const SystemSocketPath = "/run/msprelay/session.sock"

// DefaultSocketPath is where a node listens for local session clients:
// $MSPRELAY_SESSION_SOCKET, else SystemSocketPath for root, else a path in the
// user's runtime directory.
func DefaultSocketPath() string {
	return SocketCandidates()[0]
}

// SocketCandidates lists, most specific first, where a client looks for the
// local node's session socket: $MSPRELAY_SESSION_SOCKET alone when set; otherwise,
// for a non-root user, their own node's paths and then the system node's.
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
	}
	out = append(out, filepath.Join(os.TempDir(), fmt.Sprintf("msprelay-%d", os.Geteuid()), "session.sock"))
	return append(out, SystemSocketPath)
}
