package sockowner

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// lookupTimeout bounds one question to the kernel, which answers in
// microseconds; it only guards the caller (the MSP accept loop or UDP read
// loop) against a wedged netlink socket.
const lookupTimeout = time.Second

// SocketUID finds the owner of the socket that sent to the server: network
// is "tcp" or "udp", server the server's end of the connection or the
// address the datagram arrived on (for a server bound to the unspecified
// address, that address), sender the sending socket's address. It asks
// the kernel with NETLINK_SOCK_DIAG, as identd does, over a netlink socket
// of its own that it closes before returning.
//
// TCP uses the kernel's exact lookup of the connected 4-tuple. UDP dumps
// the sockets bound to the sender's port and requires that every socket
// that could have sent the datagram belongs to one user (see udpOwner);
// an exact UDP lookup would need the datagram's destination address, which
// a server bound to the unspecified address does not know, and would
// silently pick one of several sockets sharing the port.
//
// The errors are [ErrUnsupported] (no netlink here), [ErrNotFound] (the
// socket is gone or never was on this host), [ErrAmbiguous], or a wrapped
// netlink error.
func SocketUID(network string, server, sender netip.AddrPort) (uint32, error) {
	switch network {
	case "tcp", "tcp4", "tcp6":
		msgs, err := query(diagReq{
			family: familyOf(sender.Addr()), protocol: protoTCP,
			src: unmapPort(sender), dst: unmapPort(server),
		}, false)
		if err != nil {
			return 0, err
		}
		return tcpOwner(msgs, sender, server)
	case "udp", "udp4", "udp6":
		// Only the port filters in the kernel's dump; addresses are
		// compared here. An IPv4 sender may use an IPv6 socket (bound to
		// "::" or to a mapped address), so both families are asked.
		families := []uint8{afINET6}
		if sender.Addr().Unmap().Is4() {
			families = []uint8{afINET, afINET6}
		}
		var all []diagMsg
		for _, f := range families {
			msgs, err := query(diagReq{
				family: f, protocol: protoUDP,
				src: netip.AddrPortFrom(netip.Addr{}, sender.Port()),
			}, true)
			if err != nil {
				return 0, err
			}
			all = append(all, msgs...)
		}
		return udpOwner(all, sender, server)
	}
	return 0, fmt.Errorf("sockowner: network %q: %w", network, ErrUnsupported)
}

// query sends one SOCK_DIAG_BY_FAMILY request and decodes the replies. An
// exact lookup that finds nothing is ErrNotFound.
func query(r diagReq, dump bool) ([]diagMsg, error) {
	c, err := netlink.Dial(unix.NETLINK_SOCK_DIAG, nil)
	if err != nil {
		return nil, fmt.Errorf("sockowner: dial NETLINK_SOCK_DIAG: %w: %w", ErrUnsupported, err)
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(lookupTimeout)); err != nil {
		return nil, fmt.Errorf("sockowner: netlink deadline: %w", err)
	}
	flags := netlink.Request
	if dump {
		flags |= netlink.Dump
	}
	replies, err := c.Execute(netlink.Message{
		Header: netlink.Header{Type: unix.SOCK_DIAG_BY_FAMILY, Flags: flags},
		Data:   r.marshal(),
	})
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil, ErrNotFound
		}
		return nil, fmt.Errorf("sockowner: sock_diag: %w", err)
	}
	msgs := make([]diagMsg, 0, len(replies))
	for _, rep := range replies {
		if rep.Header.Type != unix.SOCK_DIAG_BY_FAMILY {
			continue
		}
		m, err := parseDiagMsg(rep.Data)
		if err != nil {
			return nil, err
		}
		msgs = append(msgs, m)
	}
	return msgs, nil
}
