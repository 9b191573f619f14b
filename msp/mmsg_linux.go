package msp

import (
	"net"
	"net/netip"
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// mmsgConn is a [batchConn] on a *net.UDPConn's socket: recvmmsg and
// sendmmsg through its syscall.RawConn, so that reads wait in the runtime's
// poller and honour the conn's deadlines and Close as ReadFrom does. The
// message headers, I/O vectors and socket addresses are kept and reused;
// addresses are decoded into and encoded from netip.AddrPort values, so a
// datagram, read or written, costs no allocation (golang.org/x/net/ipv4's
// ReadBatch, used before, made a *net.UDPAddr for every one).
//
// The read loop alone uses the read half (rhdr ... readFn); the writing
// sender of the packetWriter alone uses the write half (whdr ... writeFn).
type mmsgConn struct {
	rc     syscall.RawConn
	family int // the socket's: AF_INET or AF_INET6 (dual-stack, IPv4 as mapped addresses)

	rhdr   []unix.Mmsghdr
	rname  []unix.RawSockaddrInet6 // large enough for either family
	riov   []unix.Iovec
	rcnt   int                   // datagrams asked for by the pending read
	rn     int                   // datagrams the read got
	rerr   error                 // its error
	readFn func(fd uintptr) bool // c.read, made once

	whdr    []unix.Mmsghdr
	wname   []unix.RawSockaddrInet6
	wiov    []unix.Iovec
	wcnt    int
	wn      int
	werr    error
	writeFn func(fd uintptr) bool
}

// newMmsgConn wraps uc, or returns nil when its socket cannot be used so
// (then uc is served one datagram at a time).
func newMmsgConn(uc *net.UDPConn, size int) batchConn {
	rc, err := uc.SyscallConn()
	if err != nil {
		return nil
	}
	family := 0
	cerr := rc.Control(func(fd uintptr) {
		sa, err := unix.Getsockname(int(fd))
		switch {
		case err != nil:
		case isInet4(sa):
			family = unix.AF_INET
		case isInet6(sa):
			family = unix.AF_INET6
		}
	})
	if cerr != nil || family == 0 {
		return nil
	}
	c := &mmsgConn{
		rc: rc, family: family,
		rhdr: make([]unix.Mmsghdr, size), rname: make([]unix.RawSockaddrInet6, size), riov: make([]unix.Iovec, size),
		whdr: make([]unix.Mmsghdr, size), wname: make([]unix.RawSockaddrInet6, size), wiov: make([]unix.Iovec, size),
	}
	c.readFn, c.writeFn = c.read, c.write
	return c
}

func isInet4(sa unix.Sockaddr) bool { _, ok := sa.(*unix.SockaddrInet4); return ok }
func isInet6(sa unix.Sockaddr) bool { _, ok := sa.(*unix.SockaddrInet6); return ok }

func (c *mmsgConn) readBatch(ms []inDatagram) (int, error) {
	n := min(len(ms), len(c.rhdr))
	for i := range n {
		b := ms[i].buf
		c.riov[i] = unix.Iovec{Base: &b[0]}
		c.riov[i].SetLen(len(b))
		c.rhdr[i] = unix.Mmsghdr{Hdr: unix.Msghdr{
			Name:    (*byte)(unsafe.Pointer(&c.rname[i])),
			Namelen: unix.SizeofSockaddrInet6,
			Iov:     &c.riov[i],
		}}
		c.rhdr[i].Hdr.SetIovlen(1)
	}
	c.rcnt, c.rn, c.rerr = n, 0, nil
	if err := c.rc.Read(c.readFn); err != nil {
		return 0, err
	}
	if c.rerr != nil {
		return 0, c.rerr
	}
	for i := range c.rn {
		ms[i].n = int(c.rhdr[i].Len)
		ms[i].from = decodeSockaddr(&c.rname[i], c.rhdr[i].Hdr.Namelen)
		c.riov[i].Base = nil // hold no datagram buffer between reads
	}
	return c.rn, nil
}

// read is the RawConn.Read callback: false asks the poller to wait for
// the socket to become readable.
func (c *mmsgConn) read(fd uintptr) bool {
	for {
		r, _, e := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&c.rhdr[0])), uintptr(c.rcnt), 0, 0, 0)
		switch e {
		case 0:
			c.rn = int(r)
			return true
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		}
		c.rerr = os.NewSyscallError("recvmmsg", e)
		return true
	}
}

func (c *mmsgConn) writeBatch(ds []outDatagram) (int, error) {
	n := min(len(ds), len(c.whdr))
	for i := range n {
		b := ds[i].b
		c.wiov[i] = unix.Iovec{}
		if len(b) > 0 {
			c.wiov[i].Base = &b[0]
			c.wiov[i].SetLen(len(b))
		}
		c.whdr[i] = unix.Mmsghdr{Hdr: unix.Msghdr{
			Name:    (*byte)(unsafe.Pointer(&c.wname[i])),
			Namelen: encodeSockaddr(&c.wname[i], c.family, ds[i].to),
			Iov:     &c.wiov[i],
		}}
		c.whdr[i].Hdr.SetIovlen(1)
	}
	c.wcnt, c.wn, c.werr = n, 0, nil
	err := c.rc.Write(c.writeFn)
	for i := range n {
		c.wiov[i].Base = nil // keep no reply alive
	}
	if err != nil {
		return 0, err
	}
	return c.wn, c.werr
}

// write is the RawConn.Write callback.
func (c *mmsgConn) write(fd uintptr) bool {
	for {
		r, _, e := unix.Syscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&c.whdr[0])), uintptr(c.wcnt), 0, 0, 0)
		switch e {
		case 0:
			c.wn = int(r)
			return true
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		}
		c.werr = os.NewSyscallError("sendmmsg", e)
		return true
	}
}

// decodeSockaddr reads the address the kernel wrote into sa (of length
// l); an IPv4 sender on a dual-stack socket comes as a mapped address, as
// ReadMsgUDPAddrPort reports it. A link-local IPv6 sender keeps its
// interface as a numeric zone (an allocation paid only by such senders),
// so that the reply goes out on that interface.
func decodeSockaddr(sa *unix.RawSockaddrInet6, l uint32) netip.AddrPort {
	switch {
	case sa.Family == unix.AF_INET && l >= unix.SizeofSockaddrInet4:
		s4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		return netip.AddrPortFrom(netip.AddrFrom4(s4.Addr), ntohs(s4.Port))
	case sa.Family == unix.AF_INET6 && l >= unix.SizeofSockaddrInet6:
		a := netip.AddrFrom16(sa.Addr)
		if sa.Scope_id != 0 {
			a = a.WithZone(uitoa(uint(sa.Scope_id)))
		}
		return netip.AddrPortFrom(a, ntohs(sa.Port))
	}
	return netip.AddrPort{}
}

// encodeSockaddr writes to into sa for a socket of family and returns its
// length; 0 (no address: the kernel refuses the datagram, and only it) if
// to cannot be reached on such a socket.
func encodeSockaddr(sa *unix.RawSockaddrInet6, family int, to netip.AddrPort) uint32 {
	a := to.Addr()
	if family == unix.AF_INET {
		a = a.Unmap()
		if !a.Is4() {
			return 0
		}
		s4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		*s4 = unix.RawSockaddrInet4{Family: unix.AF_INET, Port: htons(to.Port()), Addr: a.As4()}
		return unix.SizeofSockaddrInet4
	}
	if !a.IsValid() {
		return 0
	}
	*sa = unix.RawSockaddrInet6{Family: unix.AF_INET6, Port: htons(to.Port()), Addr: a.As16()}
	if z := a.Zone(); z != "" {
		sa.Scope_id = zoneIndex(z)
	}
	return unix.SizeofSockaddrInet6
}

// zoneIndex is the interface index a zone names: the number decodeSockaddr
// writes, or an interface name.
func zoneIndex(z string) uint32 {
	n := uint32(0)
	for i := 0; i < len(z); i++ {
		if z[i] < '0' || z[i] > '9' {
			if ifi, err := net.InterfaceByName(z); err == nil {
				return uint32(ifi.Index)
			}
			return 0
		}
		n = n*10 + uint32(z[i]-'0')
	}
	return n
}

// ntohs and htons convert a port between the network order the socket
// address holds and the host's.
func ntohs(p uint16) uint16 {
	b := (*[2]byte)(unsafe.Pointer(&p))
	return uint16(b[0])<<8 | uint16(b[1])
}

func htons(p uint16) uint16 {
	var v uint16
	b := (*[2]byte)(unsafe.Pointer(&v))
	b[0], b[1] = byte(p>>8), byte(p)
	return v
}

func uitoa(n uint) string {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
		if n == 0 {
			break
		}
	}
	return string(b[i:])
}
