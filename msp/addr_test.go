package msp_test

import (
	"net"
	"testing"

	"github.com/msprelay/msprelay/msp"
)

// The origin address a node records (and shows, and hashes into a
// message's id) must not change with how it is built: AddrString is
// net.Addr.String in one allocation.
func TestAddrStringIsAddrString(t *testing.T) {
	t.Parallel()
	for _, a := range []net.Addr{
		&net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 1234}, // 16-byte form, as accept gives it
		&net.TCPAddr{IP: net.IP{192, 0, 2, 1}, Port: 18},
		&net.UDPAddr{IP: net.ParseIP("2001:db8::1"), Port: 40000},
		&net.UDPAddr{IP: net.ParseIP("fe80::1"), Port: 5, Zone: "eth0"},
		&net.TCPAddr{IP: net.IPv6loopback, Port: 65535},
		&net.TCPAddr{Port: 7}, // no IP
		&net.UnixAddr{Name: "/run/x", Net: "unix"},
	} {
		if got, want := msp.AddrString(a), a.String(); got != want {
			t.Errorf("AddrString(%#v) = %q, want %q", a, got, want)
		}
	}
}
