package msp

import (
	"net/netip"
	"testing"

	"golang.org/x/sys/unix"
)

// TestSockaddrRoundTrip: what encodeSockaddr writes for a socket of each
// family, decodeSockaddr reads back as the same address: IPv4 on an IPv4
// socket, IPv4 as a mapped address on a dual-stack one, IPv6 with and
// without an interface zone; an address the socket cannot reach encodes as
// none.
func TestSockaddrRoundTrip(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		family   int
		in, want string // want "" means no address
	}{
		{unix.AF_INET, "127.0.0.5:1018", "127.0.0.5:1018"},
		{unix.AF_INET, "[::ffff:127.0.0.5]:1018", "127.0.0.5:1018"},
		{unix.AF_INET, "[::1]:1018", ""},
		{unix.AF_INET6, "127.0.0.5:1018", "[::ffff:127.0.0.5]:1018"},
		{unix.AF_INET6, "[::1]:65535", "[::1]:65535"},
		{unix.AF_INET6, "[fe80::1%7]:18", "[fe80::1%7]:18"},
	} {
		var sa unix.RawSockaddrInet6
		l := encodeSockaddr(&sa, tc.family, netip.MustParseAddrPort(tc.in))
		if tc.want == "" {
			if l != 0 {
				t.Errorf("%d %s: encoded %d octets, want none", tc.family, tc.in, l)
			}
			continue
		}
		if got := decodeSockaddr(&sa, l); got.String() != tc.want {
			t.Errorf("%d %s: read back %s, want %s", tc.family, tc.in, got, tc.want)
		}
	}
}
