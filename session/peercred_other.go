//go:build !linux

package session

import (
	"errors"
	"net"
)

// peerUID is only implemented on Linux (SO_PEERCRED).
func peerUID(net.Conn) (uint32, error) {
	return 0, errors.New("peer credentials are not supported on this platform")
}
