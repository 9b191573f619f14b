package sockowner

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"sync"
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
	tcpClose       = 7
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

// diagClient asks the kernel: the platform's netlink socket (nl) and the
// decoded replies of the question under way (msgs, reused so that a
// lookup allocates nothing). mu guards every field and serializes the
// questions.
type diagClient struct {
	mu     sync.Mutex
	closed bool
	nl     diagSock
	msgs   []diagMsg
}

// close closes the netlink socket; later questions fail.
func (d *diagClient) close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.closed = true
	return d.nl.close()
}

// socketUID is SocketUID on d's netlink socket.
//
// TCP uses the kernel's exact lookup of the connected 4-tuple. UDP dumps
// the sockets bound to the sender's port and address (or the unspecified
// address), and requires that every socket that could have sent the
// datagram belongs to one user (see udpOwner). The kernel filters the
// dump: by port itself, by address with the bytecode of udpFilter, so it
// returns the candidates only, however many other sockets share the port.
// An exact UDP lookup would need the datagram's destination address, which
// a server bound to the unspecified address does not know, and would
// silently pick one of several sockets sharing the port.
func (d *diagClient) socketUID(network string, server, sender netip.AddrPort) (uint32, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return 0, errClosed
	}
	msgs := d.msgs[:0]
	defer func() {
		clear(msgs) // keep the capacity, not the answers
		d.msgs = msgs[:0]
	}()
	var err error
	switch network {
	case "tcp", "tcp4", "tcp6":
		msgs, err = d.nl.query(diagReq{
			family: familyOf(sender.Addr()), protocol: protoTCP, states: ^uint32(0),
			src: unmapPort(sender), dst: unmapPort(server),
		}, false, msgs)
		if err != nil {
			return 0, err
		}
		return tcpOwner(msgs, sender, server)
	case "udp", "udp4", "udp6":
		// An IPv4 sender may use an IPv6 socket (bound to "::" or to a
		// mapped address), so both families are asked.
		sender := unmapPort(sender)
		families := [2]uint8{afINET6, 0}
		if sender.Addr().Is4() {
			families = [2]uint8{afINET, afINET6}
		}
		for _, f := range families {
			if f == 0 {
				break
			}
			msgs, err = d.nl.query(diagReq{
				family: f, protocol: protoUDP, states: udpStates,
				src:    netip.AddrPortFrom(netip.Addr{}, sender.Port()),
				filter: sender,
			}, true, msgs)
			if err != nil {
				return 0, err
			}
		}
		return udpOwner(msgs, sender, server)
	}
	return 0, fmt.Errorf("sockowner: network %q: %w", network, ErrUnsupported)
}

// diagReq is the part of an inet_diag_req_v2 this package sets.
type diagReq struct {
	family, protocol uint8
	states           uint32         // bit 1<<st for every socket state st to report
	src, dst         netip.AddrPort // the socket's local and remote ends, as the kernel sees them
	// filter, when valid, is a UDP sender: a bytecode filter
	// (udpFilter) makes the kernel report only the sockets bound to its
	// port and to its address or the unspecified one.
	filter netip.AddrPort
}

// udpStates are the states a UDP socket reports: TCP_ESTABLISHED when
// connected, TCP_CLOSE when not.
const udpStates = 1<<tcpEstablished | 1<<tcpClose

// Sizes of the bytecode filter (include/uapi/linux/inet_diag.h): an
// attribute header, then per condition a struct inet_diag_bc_op (code,
// yes, no) and a struct inet_diag_hostcond (family, prefix_len, port)
// followed by the address.
const (
	inetDiagReqBytecode = 1 // INET_DIAG_REQ_BYTECODE
	inetDiagBCJmp       = 1 // INET_DIAG_BC_JMP
	inetDiagBCSCond     = 7 // INET_DIAG_BC_S_COND
	sizeofNlattr        = 4
	sizeofBCOp          = 4
	sizeofHostcond      = 8
	// maxFilter is the largest filter udpFilter writes: three conditions
	// of which two carry an IPv6 address, and two jumps.
	maxFilter = sizeofNlattr + 3*(sizeofBCOp+sizeofHostcond) + 2*16 + 4 + 2*sizeofBCOp
	// maxReq is the largest request: the header-less inet_diag_req_v2
	// and a filter.
	maxReq = sizeofReq + maxFilter
)

// marshal encodes r as an inet_diag_req_v2, with its filter attribute.
func (r diagReq) marshal() []byte {
	var b [maxReq]byte
	n := r.put(b[:])
	return append([]byte(nil), b[:n]...)
}

// put writes r into b, which has room for maxReq octets, and returns its
// length; it allocates nothing.
func (r diagReq) put(b []byte) int {
	clear(b[:sizeofReq])
	b[0], b[1] = r.family, r.protocol
	binary.NativeEndian.PutUint32(b[4:], r.states)
	putSockID(b[8:], r.src, r.dst)
	if !r.filter.IsValid() {
		return sizeofReq
	}
	return sizeofReq + udpFilter(b[sizeofReq:], r.family, r.filter)
}

// udpFilter writes an INET_DIAG_REQ_BYTECODE attribute into b that passes
// the sockets of a dump of family that udpOwner counts as candidates for
// sender: bound to sender's port and to sender's address or the
// unspecified one. The kernel matches an IPv4 condition against an IPv6
// socket bound to the mapped address too, so an IPv4 sender needs three
// conditions in an IPv6 dump (its address, 0.0.0.0 and ::) and two in an
// IPv4 dump; an IPv6 sender needs two (its address and ::).
//
// The conditions are or-ed the way ss(8) compiles "a or b": a condition
// goes on to the next op when it holds and skips one op further when not;
// between two conditions a JMP, reached only when the one before held,
// jumps to the end (accept); the last condition, failing, jumps past the
// end (reject). The kernel's audit requires every jump target to lie on
// the chain of "holds" jumps from the start, which this layout keeps.
func udpFilter(b []byte, family uint8, sender netip.AddrPort) int {
	a := sender.Addr().Unmap()
	var conds [3]netip.Addr
	n := 0
	if a.Is4() {
		conds[n], conds[n+1] = a, netip.IPv4Unspecified()
		n += 2
		if family == afINET6 {
			conds[n] = netip.IPv6Unspecified()
			n++
		}
	} else {
		conds[n], conds[n+1] = a, netip.IPv6Unspecified()
		n += 2
	}
	condSize := func(c netip.Addr) int { return sizeofBCOp + sizeofHostcond + c.BitLen()/8 }
	total := (n - 1) * sizeofBCOp // the JMPs
	for _, c := range conds[:n] {
		total += condSize(c)
	}
	binary.NativeEndian.PutUint16(b[0:], uint16(sizeofNlattr+total))
	binary.NativeEndian.PutUint16(b[2:], inetDiagReqBytecode)
	off, left := sizeofNlattr, total
	for i, c := range conds[:n] {
		size := condSize(c)
		op := b[off:]
		op[0] = inetDiagBCSCond
		op[1] = byte(size)                                    // holds: the next op
		binary.NativeEndian.PutUint16(op[2:], uint16(size+4)) // fails: one op further
		hc := op[sizeofBCOp:]
		hc[0], hc[1] = afINET, 32
		if c.Is6() {
			hc[0], hc[1] = afINET6, 128
		}
		hc[2], hc[3] = 0, 0
		binary.NativeEndian.PutUint32(hc[4:], uint32(sender.Port()))
		putAddr(hc[sizeofHostcond:sizeofHostcond+c.BitLen()/8], c)
		off += size
		left -= size
		if i < n-1 {
			jmp := b[off:]
			jmp[0], jmp[1] = inetDiagBCJmp, sizeofBCOp
			binary.NativeEndian.PutUint16(jmp[2:], uint16(left)) // to the end: accept
			off += sizeofBCOp
			left -= sizeofBCOp
		}
	}
	return off
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
