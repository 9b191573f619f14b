package sockowner

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
)

// Layout of the kernel's inet_diag structures (include/uapi/linux/inet_diag.h):
// golang.org/x/sys/unix does not declare them, so they are encoded here.
const (
	// sizeofSockID is struct inet_diag_sockid: sport, dport (big endian),
	// src[4], dst[4] (big endian words), if, cookie[2].
	sizeofSockID = 48
	// sizeofReq is struct inet_diag_req_v2: family, protocol, ext, pad,
	// states, then the socket id.
	sizeofReq = 8 + sizeofSockID
	// sizeofMsg is struct inet_diag_msg: family, state, timer, retrans, the
	// socket id, then expires, rqueue, wqueue, uid, inode.
	sizeofMsg = 4 + sizeofSockID + 20
	// noCookie is INET_DIAG_NOCOOKIE: match the socket whatever its cookie.
	noCookie = ^uint32(0)
)

// Address families and socket states as the kernel numbers them, kept here
// so that the encoding compiles (and is fuzzed) on every platform.
const (
	afINET  = 2
	afINET6 = 10

	protoTCP = 6
	protoUDP = 17

	tcpEstablished = 1
	tcpFinWait1    = 4
	tcpFinWait2    = 5
	tcpCloseWait   = 8
	tcpLastAck     = 9
	tcpClosing     = 11
)

// errShort is returned for a reply too short to be an inet_diag_msg.
var errShort = errors.New("sockowner: short inet_diag_msg")

// errClosed is returned by a closed Resolver's questions.
var errClosed = errors.New("sockowner: resolver closed")

// SocketUID finds the owner of the socket that sent to the server: network
// is "tcp" or "udp", server the server's end of the connection or the
// address the datagram arrived on (for a server bound to the unspecified
// address, that address), sender the sending socket's address. It asks
// the kernel with NETLINK_SOCK_DIAG, as identd does, over a netlink socket
// of its own that it closes before returning; a [Resolver] keeps one open.
//
// The errors are [ErrUnsupported] (no netlink here), [ErrNotFound] (the
// socket is gone or never was on this host), [ErrAmbiguous], or a wrapped
// netlink error.
func SocketUID(network string, server, sender netip.AddrPort) (uint32, error) {
	var d diagClient
	defer d.close()
	return d.socketUID(network, server, sender)
}

// socketUID is SocketUID on d's netlink socket.
//
// TCP uses the kernel's exact lookup of the connected 4-tuple. UDP dumps
// the sockets bound to the sender's port and requires that every socket
// that could have sent the datagram belongs to one user (see udpOwner);
// an exact UDP lookup would need the datagram's destination address, which
// a server bound to the unspecified address does not know, and would
// silently pick one of several sockets sharing the port.
func (d *diagClient) socketUID(network string, server, sender netip.AddrPort) (uint32, error) {
	switch network {
	case "tcp", "tcp4", "tcp6":
		msgs, err := d.query(diagReq{
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
			msgs, err := d.query(diagReq{
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

// diagReq is the part of an inet_diag_req_v2 this package sets.
type diagReq struct {
	family, protocol uint8
	src, dst         netip.AddrPort // the socket's local and remote ends, as the kernel sees them
}

// marshal encodes r as an inet_diag_req_v2 asking for sockets in any state.
func (r diagReq) marshal() []byte {
	b := make([]byte, sizeofReq)
	b[0], b[1] = r.family, r.protocol
	binary.NativeEndian.PutUint32(b[4:], ^uint32(0)) // every state
	putSockID(b[8:], r.src, r.dst)
	return b
}

func putSockID(b []byte, src, dst netip.AddrPort) {
	binary.BigEndian.PutUint16(b[0:], src.Port())
	binary.BigEndian.PutUint16(b[2:], dst.Port())
	putAddr(b[4:20], src.Addr())
	putAddr(b[20:36], dst.Addr())
	// b[36:40], the interface, stays 0: any.
	binary.NativeEndian.PutUint32(b[40:], noCookie)
	binary.NativeEndian.PutUint32(b[44:], noCookie)
}

// putAddr writes an IPv4 address in the first word, an IPv6 one whole; an
// invalid address leaves the field zero (the unspecified address).
func putAddr(b []byte, a netip.Addr) {
	switch {
	case a.Is4():
		v := a.As4()
		copy(b, v[:])
	case a.Is6():
		v := a.As16()
		copy(b, v[:])
	}
}

// diagMsg is what this package reads from an inet_diag_msg.
type diagMsg struct {
	family, state uint8
	src, dst      netip.AddrPort // the socket's local and remote ends; IPv4-mapped addresses unmapped
	uid           uint32
}

// parseDiagMsg decodes an inet_diag_msg (the payload of one
// SOCK_DIAG_BY_FAMILY reply). Input comes from the kernel, but is checked as
// if it did not: a short or foreign-family reply is an error, never a panic.
func parseDiagMsg(b []byte) (diagMsg, error) {
	if len(b) < sizeofMsg {
		return diagMsg{}, fmt.Errorf("%w: %d octets", errShort, len(b))
	}
	m := diagMsg{family: b[0], state: b[1]}
	id := b[4 : 4+sizeofSockID]
	var src, dst netip.Addr
	switch m.family {
	case afINET:
		src = netip.AddrFrom4([4]byte(id[4:8]))
		dst = netip.AddrFrom4([4]byte(id[20:24]))
	case afINET6:
		src = netip.AddrFrom16([16]byte(id[4:20])).Unmap()
		dst = netip.AddrFrom16([16]byte(id[20:36])).Unmap()
	default:
		return diagMsg{}, fmt.Errorf("sockowner: inet_diag_msg of family %d", m.family)
	}
	m.src = netip.AddrPortFrom(src, binary.BigEndian.Uint16(id[0:]))
	m.dst = netip.AddrPortFrom(dst, binary.BigEndian.Uint16(id[2:]))
	m.uid = binary.NativeEndian.Uint32(b[4+sizeofSockID+12:])
	return m, nil
}

// sendingTCPState reports whether a TCP socket in state st can be the
// sending end of a connection the server accepted. A listener (which an
// exact lookup falls back to when the connected socket is gone) and a
// TIME_WAIT entry (which carries no owner: the kernel reports uid 0) are
// not, so they never name anyone.
func sendingTCPState(st uint8) bool {
	switch st {
	case tcpEstablished, tcpFinWait1, tcpFinWait2, tcpCloseWait, tcpLastAck, tcpClosing:
		return true
	}
	return false
}

// familyOf is the address family to ask the kernel about for a.
func familyOf(a netip.Addr) uint8 {
	if a.Unmap().Is4() {
		return afINET
	}
	return afINET6
}

// tcpOwner picks the owner of the sending socket from the replies to an
// exact TCP lookup: the reply must be that very socket (local end the
// sender, remote end the server) in a state that sends.
func tcpOwner(msgs []diagMsg, sender, server netip.AddrPort) (uint32, error) {
	sender, server = unmapPort(sender), unmapPort(server)
	for _, m := range msgs {
		if m.src == sender && m.dst == server && sendingTCPState(m.state) {
			return m.uid, nil
		}
	}
	return 0, ErrNotFound
}

// udpOwner picks the owner of the sending socket from a dump of the UDP
// sockets bound to the sender's port. A candidate is a socket that could
// have sent the datagram: bound to the sender's address or the unspecified
// one, and unconnected or connected to the server's port (and address,
// when the server's is specific). All candidates must belong to one user:
// sockets sharing a port (SO_REUSEADDR) under different users make the
// sender ambiguous, and an ambiguous sender is nobody.
func udpOwner(msgs []diagMsg, sender, server netip.AddrPort) (uint32, error) {
	sender, server = unmapPort(sender), unmapPort(server)
	var (
		uid   uint32
		found bool
	)
	for _, m := range msgs {
		if m.src.Port() != sender.Port() {
			continue
		}
		if a := m.src.Addr(); a != sender.Addr() && !a.IsUnspecified() {
			continue
		}
		if m.dst.Port() != 0 {
			if m.dst.Port() != server.Port() {
				continue
			}
			if a := server.Addr(); !a.IsUnspecified() && m.dst.Addr() != a {
				continue
			}
		}
		if found && m.uid != uid {
			return 0, ErrAmbiguous
		}
		uid, found = m.uid, true
	}
	if !found {
		return 0, ErrNotFound
	}
	return uid, nil
}

func unmapPort(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}
