package msp

import (
	"net"
	"net/netip"
)

// AddrString is a.String() for TCP and UDP addresses built in one
// allocation instead of two (net.JoinHostPort of IP.String): a node names
// every message's source, so the difference is paid per message.
func AddrString(a net.Addr) string {
	ap, ok := addrPort(a)
	if !ok || !ap.Addr().IsValid() {
		return a.String()
	}
	return addrPortString(ap)
}

// addrPortString is AddrString for an address and port: IPv4-mapped
// addresses as plain IPv4, one allocation.
func addrPortString(ap netip.AddrPort) string {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()).String()
}

// addrPort is the address and port of a TCP or UDP address; ok is false
// for other kinds (pipes in tests, Unix sockets).
func addrPort(a net.Addr) (netip.AddrPort, bool) {
	switch a := a.(type) {
	case *net.TCPAddr:
		return a.AddrPort(), true
	case *net.UDPAddr:
		return a.AddrPort(), true
	}
	return netip.AddrPort{}, false
}
