package sessionsock

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/user"
	"strconv"
)

// ErrUntrustedSocket refuses a Unix socket served by a user who is neither
// root nor the client's own user: whoever serves the socket decides what
// the client shows as a verified message.
var ErrUntrustedSocket = errors.New("sessionsock: socket served by another user")

// SystemUser is the system account a packaged node runs as (the systemd
// unit's User=). Only root creates system accounts, so a socket served by
// it is the system node's.
const SystemUser = "msprelay"

// CheckServer refuses a Unix socket connection whose server runs as
// neither root, nor the running user, nor SystemUser.
func CheckServer(c net.Conn) error {
	uid, err := PeerUID(c)
	if err != nil {
		return fmt.Errorf("%w: cannot tell who serves it: %v", ErrUntrustedSocket, err)
	}
	if uid == 0 || uid == uint32(os.Geteuid()) {
		return nil
	}
	if u, err := user.Lookup(SystemUser); err == nil && u.Uid == strconv.FormatUint(uint64(uid), 10) {
		return nil
	}
	return fmt.Errorf("%w: served by uid %d, not by root, uid %d or the %s account", ErrUntrustedSocket, uid, os.Geteuid(), SystemUser)
}
