//go:build !linux

package sessionsock

import (
	"errors"
	"net"
)

// PeerUID is only implemented on Linux (SO_PEERCRED).
func PeerUID(net.Conn) (uint32, error) {
	return 0, errors.New("peer credentials are not supported on this platform")
}
