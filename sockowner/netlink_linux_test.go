package sockowner

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"strconv"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// reusePacket binds a UDP socket on addr with SO_REUSEADDR, so that
// several sockets may share a port.
func reusePacket(t *testing.T, network, addr string) *net.UDPConn {
	t.Helper()
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1)
		})
		return errors.Join(err, serr)
	}}
	pc, err := lc.ListenPacket(context.Background(), network, addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	return pc.(*net.UDPConn)
}

// TestUDPDumpFilteredInKernel: the brief of this lookup, "filter the dump
// in the kernel by the exact source port/address so the kernel returns one
// socket, not all": sockets sharing the sender's port on other addresses
// are not even reported, while every candidate udpOwner must see (the
// sender's address, and the unspecified addresses of both families) is.
func TestUDPDumpFilteredInKernel(t *testing.T) {
	t.Parallel()
	needNetlink(t)
	first := reusePacket(t, "udp4", "127.0.0.20:0")
	port := first.LocalAddr().(*net.UDPAddr).Port
	at := func(host string) string { return net.JoinHostPort(host, itoa(port)) }
	reusePacket(t, "udp4", at("127.0.0.21")) // another address: never a candidate
	reusePacket(t, "udp4", at("127.0.0.22"))
	sender := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.20"), uint16(port))

	var s diagSock
	defer s.close()
	count := func(family uint8, filter netip.AddrPort) int {
		t.Helper()
		msgs, err := s.query(diagReq{family: family, protocol: protoUDP, states: udpStates,
			src: netip.AddrPortFrom(netip.Addr{}, uint16(port)), filter: filter}, true, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range msgs {
			if m.src.Port() != uint16(port) {
				t.Fatalf("reported a socket on port %d", m.src.Port())
			}
		}
		return len(msgs)
	}
	if n := count(afINET, netip.AddrPort{}); n != 3 {
		t.Fatalf("unfiltered dump: %d sockets on the port, want 3", n)
	}
	if n := count(afINET, sender); n != 1 {
		t.Fatalf("filtered dump: %d sockets, want 1 (the sender's)", n)
	}
	// The unspecified addresses are candidates and must pass the filter.
	reusePacket(t, "udp4", at("0.0.0.0"))
	if n := count(afINET, sender); n != 2 {
		t.Fatalf("with a wildcard IPv4 socket: %d sockets, want 2", n)
	}
	if n := count(afINET6, sender); n != 0 {
		t.Fatalf("IPv6 dump: %d sockets, want none yet", n)
	}
	reusePacket(t, "udp6", at("::"))
	if n := count(afINET6, sender); n != 1 {
		t.Fatalf("with a dual-stack socket: %d IPv6 sockets, want 1", n)
	}
	// An IPv6 socket bound to the sender's mapped address is a candidate.
	bindMapped(t, "127.0.0.20", port)
	bindMapped(t, "127.0.0.21", port)
	if n := count(afINET6, sender); n != 2 {
		t.Fatalf("with mapped-address sockets: %d IPv6 sockets, want 2", n)
	}
	// And the whole lookup still names this process's user.
	var d diagClient
	defer d.close()
	if uid, err := d.socketUID("udp", netip.MustParseAddrPort("127.0.0.1:18"), sender); err != nil || uid != myUID() {
		t.Fatalf("socketUID: %d, %v; want %d", uid, err, myUID())
	}
}

// bindMapped binds an IPv6 UDP socket to the IPv4-mapped address of v4
// (which package net refuses to do) on port, sharing the port.
func bindMapped(t *testing.T, v4 string, port int) {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET6, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
		t.Fatal(err)
	}
	if err := unix.Bind(fd, &unix.SockaddrInet6{Port: port, Addr: netip.MustParseAddr("::ffff:" + v4).As16()}); err != nil {
		t.Fatalf("bind [::ffff:%s]:%d: %v", v4, port, err)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

// TestLookupAllocatesNothing: issue 21, "no per-datagram allocation": the
// MSP server asks once per datagram from this host, so a lookup, UDP or
// TCP, allocates nothing once the client's buffers exist.
func TestLookupAllocatesNothing(t *testing.T) {
	needNetlink(t) // not parallel: AllocsPerRun counts the whole process
	for _, network := range []string{"udp", "tcp"} {
		server, sender, done := pair(t, network, "127.0.0.1:0", "127.0.0.23:0", "", false)
		var d diagClient
		if _, err := d.socketUID(network, server, sender); err != nil {
			t.Fatal(err)
		}
		allocs := testing.AllocsPerRun(200, func() {
			if _, err := d.socketUID(network, server, sender); err != nil {
				t.Fatal(err)
			}
		})
		d.close()
		done()
		if allocs != 0 && !raceEnabled { // the race detector allocates
			t.Errorf("%s lookup: %.1f allocations, want 0", network, allocs)
		}
	}
}

// nlFrame builds one netlink message of type typ with sequence seq.
func nlFrame(typ uint16, seq uint32, data []byte) []byte {
	b := make([]byte, sizeofNlmsghdr, sizeofNlmsghdr+len(data)+3)
	binary.NativeEndian.PutUint32(b[0:], uint32(sizeofNlmsghdr+len(data)))
	binary.NativeEndian.PutUint16(b[4:], typ)
	binary.NativeEndian.PutUint32(b[8:], seq)
	b = append(b, data...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

// TestParseNetlinkFrames: replies to an earlier question are skipped, a
// dump ends only with NLMSG_DONE, ENOENT is ErrNotFound, and a frame whose
// length lies is an error.
func TestParseNetlinkFrames(t *testing.T) {
	t.Parallel()
	msg := make([]byte, sizeofMsg)
	msg[0] = afINET
	errno := func(e unix.Errno) []byte {
		b := make([]byte, 20)
		binary.NativeEndian.PutUint32(b, uint32(-int32(e)))
		return b
	}
	cat := func(fs ...[]byte) []byte {
		var b []byte
		for _, f := range fs {
			b = append(b, f...)
		}
		return b
	}
	for _, tc := range []struct {
		name       string
		in         []byte
		dump       bool
		msgs       int
		done, fail bool
		err        error
	}{
		{"dump part", cat(nlFrame(unix.SOCK_DIAG_BY_FAMILY, 7, msg), nlFrame(unix.SOCK_DIAG_BY_FAMILY, 7, msg)), true, 2, false, false, nil},
		{"dump end", cat(nlFrame(unix.SOCK_DIAG_BY_FAMILY, 7, msg), nlFrame(unix.NLMSG_DONE, 7, make([]byte, 4))), true, 1, true, false, nil},
		{"stale reply skipped", cat(nlFrame(unix.SOCK_DIAG_BY_FAMILY, 6, msg), nlFrame(unix.NLMSG_DONE, 6, nil)), true, 0, false, false, nil},
		{"exact reply", nlFrame(unix.SOCK_DIAG_BY_FAMILY, 7, msg), false, 1, true, false, nil},
		{"not found", nlFrame(unix.NLMSG_ERROR, 7, errno(unix.ENOENT)), false, 0, true, true, ErrNotFound},
		{"other error", nlFrame(unix.NLMSG_ERROR, 7, errno(unix.EINVAL)), true, 0, false, true, unix.EINVAL},
		{"short diag msg", nlFrame(unix.SOCK_DIAG_BY_FAMILY, 7, msg[:10]), true, 0, false, true, errShort},
		{"length past the end", []byte{0xff, 0, 0, 0, 3, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0}, true, 0, false, true, nil},
		{"short header", []byte{1, 2, 3}, true, 0, false, true, nil},
	} {
		s := diagSock{seq: 7}
		msgs, done, err := s.parse(tc.in, tc.dump, nil)
		if len(msgs) != tc.msgs || done != tc.done || (err != nil) != tc.fail || (tc.err != nil && !errors.Is(err, tc.err)) {
			t.Errorf("%s: %d msgs, done %v, err %v; want %d, %v, fail %v (%v)", tc.name, len(msgs), done, err, tc.msgs, tc.done, tc.fail, tc.err)
		}
	}
}

// FuzzParseNetlink: a netlink datagram of any shape is decoded or
// refused, never a panic, and never yields more replies than frames.
func FuzzParseNetlink(f *testing.F) {
	msg := make([]byte, sizeofMsg)
	msg[0] = afINET6
	f.Add(nlFrame(unix.SOCK_DIAG_BY_FAMILY, 1, msg), true)
	f.Add(append(nlFrame(unix.SOCK_DIAG_BY_FAMILY, 1, msg), nlFrame(unix.NLMSG_DONE, 1, nil)...), true)
	f.Add(nlFrame(unix.NLMSG_ERROR, 1, []byte{0xfe, 0xff, 0xff, 0xff}), false)
	f.Add([]byte{16, 0, 0, 0, 3, 0}, true)
	f.Fuzz(func(t *testing.T, b []byte, dump bool) {
		s := diagSock{seq: 1}
		msgs, _, err := s.parse(b, dump, nil)
		if err == nil && len(msgs)*(sizeofNlmsghdr+sizeofMsg) > len(b) {
			t.Fatalf("%d replies from %d octets", len(msgs), len(b))
		}
	})
}
