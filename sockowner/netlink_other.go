//go:build !linux

package sockowner

import (
	"fmt"
	"net/netip"
)

// SocketUID finds the owner of the socket that sent to the server; only
// Linux has NETLINK_SOCK_DIAG, so elsewhere it is always [ErrUnsupported]
// and every local sender is unidentified.
func SocketUID(network string, server, sender netip.AddrPort) (uint32, error) {
	return 0, fmt.Errorf("sockowner: %s lookup: %w", network, ErrUnsupported)
}
