package msp

import (
	"net"
	"net/netip"
	"testing"
	"time"

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

// TestMmsgConnAllocatesNothing: issue 21, "no per-datagram address
// allocation": reading a datagram with its source address and answering
// it through the batched socket costs no allocation, for an IPv4 sender on
// an IPv4 socket and on a dual-stack one.
func TestMmsgConnAllocatesNothing(t *testing.T) {
	// Not parallel: AllocsPerRun counts the whole process.
	for _, listen := range []string{"127.0.0.1:0", ":0"} {
		pc, err := net.ListenPacket("udp", listen)
		if err != nil {
			t.Fatal(err)
		}
		bc := newMmsgConn(pc.(*net.UDPConn), 4)
		if bc == nil {
			t.Fatal("no recvmmsg on Linux")
		}
		port := pc.LocalAddr().(*net.UDPAddr).Port
		c, err := net.DialUDP("udp", nil, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		pc.SetDeadline(time.Now().Add(10 * time.Second))
		ms := []inDatagram{{buf: make([]byte, MaxLen+1)}}
		out := make([]outDatagram, 1)
		reply := []byte("+ok\x00")
		buf := make([]byte, 16)
		me := c.LocalAddr().(*net.UDPAddr).AddrPort()
		round := func() {
			if _, err := c.Write([]byte(probe)); err != nil {
				t.Fatal(err)
			}
			n, err := bc.readBatch(ms)
			if err != nil || n != 1 || ms[0].n != len(probe) || ms[0].from.Addr().Unmap() != me.Addr() || ms[0].from.Port() != me.Port() {
				t.Fatalf("%s: read %d datagrams (%d octets from %v), %v; want 1 of %d from %v", listen, n, ms[0].n, ms[0].from, err, len(probe), me)
			}
			out[0] = outDatagram{b: reply, to: ms[0].from}
			if n, err := bc.writeBatch(out); n != 1 || err != nil {
				t.Fatalf("%s: wrote %d, %v", listen, n, err)
			}
			if n, err := c.Read(buf); err != nil || string(buf[:n]) != string(reply) {
				t.Fatalf("%s: client read %q, %v", listen, buf[:n], err)
			}
		}
		allocs := testing.AllocsPerRun(50, round)
		c.Close()
		pc.Close()
		if allocs != 0 && !raceEnabled {
			t.Errorf("%s: %.1f allocations per datagram and answer, want 0", listen, allocs)
		}
	}
}
