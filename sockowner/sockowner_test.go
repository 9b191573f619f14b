package sockowner

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/msprelay/msprelay/internal/asuser"
	"github.com/msprelay/msprelay/internal/waitfor"
)

func TestMain(m *testing.M) {
	asuser.Main()
	os.Exit(m.Run())
}

// needNetlink skips where the kernel cannot be asked (not Linux, or a
// sandbox without NETLINK_SOCK_DIAG).
func needNetlink(t *testing.T) {
	t.Helper()
	l, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, err = SocketUID("tcp", l.Addr().(*net.TCPAddr).AddrPort(), netip.MustParseAddrPort("127.0.0.1:1"))
	if errors.Is(err, ErrUnsupported) {
		t.Skipf("no NETLINK_SOCK_DIAG here: %v", err)
	}
}

func myUID() uint32 { return uint32(os.Getuid()) }

// TestSocketUIDNamesTheSender: issue 18, "find the sending socket's owner
// with NETLINK_SOCK_DIAG (inet_diag) ... like identd does", for every way a
// local sender may send: TCP and UDP, IPv4 and IPv6 loopback, a sender bound
// to 127.0.0.5, UDP sockets connected or not, servers bound to a specific or
// the unspecified address.
func TestSocketUIDNamesTheSender(t *testing.T) {
	t.Parallel()
	needNetlink(t)
	tests := []struct {
		name              string
		network           string
		listen, from, to  string // server's bind address, sender's bind address, where the sender sends ("" = listen address)
		connected, wildIn bool   // UDP sender connects; the server side is passed as the unspecified address
	}{
		{name: "tcp ipv4 loopback", network: "tcp", listen: "127.0.0.1:0", from: "127.0.0.1:0"},
		{name: "tcp sender bound to 127.0.0.5", network: "tcp", listen: "127.0.0.1:0", from: "127.0.0.5:0"},
		{name: "tcp ipv6 loopback", network: "tcp", listen: "[::1]:0", from: "[::1]:0"},
		{name: "tcp to dual-stack server", network: "tcp", listen: ":0", from: "127.0.0.5:0", to: "127.0.0.1"},
		{name: "udp ipv4 unconnected", network: "udp", listen: "127.0.0.1:0", from: "127.0.0.1:0"},
		{name: "udp ipv4 connected", network: "udp", listen: "127.0.0.1:0", from: "127.0.0.1:0", connected: true},
		{name: "udp 127.0.0.5 unconnected", network: "udp", listen: "127.0.0.1:0", from: "127.0.0.5:0"},
		{name: "udp 127.0.0.5 connected", network: "udp", listen: "127.0.0.1:0", from: "127.0.0.5:0", connected: true},
		{name: "udp ipv6 unconnected", network: "udp", listen: "[::1]:0", from: "[::1]:0"},
		{name: "udp ipv6 connected", network: "udp", listen: "[::1]:0", from: "[::1]:0", connected: true},
		{name: "udp connected to wildcard server", network: "udp", listen: ":0", from: "127.0.0.5:0", to: "127.0.0.1", connected: true, wildIn: true},
		{name: "udp unconnected sender bound to wildcard", network: "udp", listen: "127.0.0.1:0", from: "0.0.0.0:0"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			server, sender, done := pair(t, tc.network, tc.listen, tc.from, tc.to, tc.connected)
			defer done()
			if tc.wildIn {
				server = netip.AddrPortFrom(netip.IPv6Unspecified(), server.Port())
			}
			uid, err := SocketUID(tc.network, server, sender)
			if err != nil {
				t.Fatalf("SocketUID(%s, %v, %v): %v", tc.network, server, sender, err)
			}
			if uid != myUID() {
				t.Fatalf("uid %d, want %d", uid, myUID())
			}
		})
	}
}

// pair makes a server and a sender on network and returns the server's end
// and the sender's address as the server saw them; done closes both.
func pair(t *testing.T, network, listen, from, to string, connected bool) (server, sender netip.AddrPort, done func()) {
	t.Helper()
	if network == "tcp" {
		l, err := net.Listen("tcp", listen)
		if err != nil {
			t.Fatal(err)
		}
		la, _ := net.ResolveTCPAddr("tcp", from)
		dst := l.Addr().String()
		if to != "" {
			dst = net.JoinHostPort(to, strconv.Itoa(l.Addr().(*net.TCPAddr).Port))
		}
		c, err := (&net.Dialer{LocalAddr: la}).Dial("tcp", dst)
		if err != nil {
			l.Close()
			t.Fatal(err)
		}
		s, err := l.Accept()
		l.Close()
		if err != nil {
			c.Close()
			t.Fatal(err)
		}
		return s.LocalAddr().(*net.TCPAddr).AddrPort(), s.RemoteAddr().(*net.TCPAddr).AddrPort(), func() { c.Close(); s.Close() }
	}
	pc, err := net.ListenPacket("udp", listen)
	if err != nil {
		t.Fatal(err)
	}
	dst := pc.LocalAddr().(*net.UDPAddr).AddrPort()
	if to != "" {
		dst = netip.AddrPortFrom(netip.MustParseAddr(to), dst.Port())
	}
	la, _ := net.ResolveUDPAddr("udp", from)
	var c *net.UDPConn
	if connected {
		c, err = net.DialUDP("udp", la, net.UDPAddrFromAddrPort(dst))
		if err == nil {
			_, err = c.Write([]byte("B"))
		}
	} else {
		c, err = net.ListenUDP("udp", la)
		if err == nil {
			_, err = c.WriteToUDPAddrPort([]byte("B"), dst)
		}
	}
	if err != nil {
		pc.Close()
		t.Fatal(err)
	}
	pc.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 16)
	_, addr, err := pc.ReadFrom(buf)
	if err != nil {
		pc.Close()
		c.Close()
		t.Fatal(err)
	}
	return pc.LocalAddr().(*net.UDPAddr).AddrPort(), addr.(*net.UDPAddr).AddrPort(), func() { c.Close(); pc.Close() }
}

// TestSocketUIDGoneIsNotFound: "Where the lookup is not possible ... fall
// back to unverified": a closed sender names nobody, in particular not root
// (a TIME_WAIT entry carries uid 0) and not a listener on the same port.
func TestSocketUIDGoneIsNotFound(t *testing.T) {
	t.Parallel()
	needNetlink(t)
	for _, network := range []string{"tcp", "udp"} {
		t.Run(network, func(t *testing.T) {
			t.Parallel()
			server, sender, done := pair(t, network, "127.0.0.1:0", "127.0.0.1:0", "", false)
			done()
			// A closed TCP socket may linger in FIN_WAIT for a moment, still
			// carrying its owner's uid: until then the answer is the true
			// owner, never anyone else; once it is gone (TIME_WAIT, whose
			// uid reads 0) the answer is ErrNotFound.
			waitfor.NoError(t, 10*time.Second, "the closed sender to name nobody", func() error {
				uid, err := SocketUID(network, server, sender)
				switch {
				case errors.Is(err, ErrNotFound):
					return nil
				case err != nil || uid != uint32(os.Getuid()):
					t.Fatalf("closed sender: uid %d, err %v; want ErrNotFound or this process's uid %d", uid, err, os.Getuid())
				}
				return fmt.Errorf("still named uid %d", uid)
			})
		})
	}
}

// TestSocketUIDOtherUser: a sender running as another account is named as
// that account, over TCP and UDP (needs root to run the sender as nobody).
func TestSocketUIDOtherUser(t *testing.T) {
	t.Parallel()
	needNetlink(t)
	uid, gid := asuser.Nobody()
	for _, network := range []string{"tcp", "udp"} {
		t.Run(network, func(t *testing.T) {
			t.Parallel()
			got := make(chan error, 1)
			var server netip.AddrPort
			if network == "tcp" {
				l, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				defer l.Close()
				server = l.Addr().(*net.TCPAddr).AddrPort()
				go func() {
					c, err := l.Accept()
					if err != nil {
						got <- err
						return
					}
					defer c.Close()
					c.Read(make([]byte, 16))
					u, err := SocketUID("tcp", c.LocalAddr().(*net.TCPAddr).AddrPort(), c.RemoteAddr().(*net.TCPAddr).AddrPort())
					if err == nil && u != uint32(uid) {
						err = errors.New("uid " + strconv.Itoa(int(u)) + ", want " + strconv.Itoa(uid))
					}
					c.Write([]byte("ok"))
					got <- err
				}()
			} else {
				pc, err := net.ListenPacket("udp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				defer pc.Close()
				server = pc.LocalAddr().(*net.UDPAddr).AddrPort()
				go func() {
					buf := make([]byte, 16)
					_, from, err := pc.ReadFrom(buf)
					if err != nil {
						got <- err
						return
					}
					u, err := SocketUID("udp", server, from.(*net.UDPAddr).AddrPort())
					if err == nil && u != uint32(uid) {
						err = errors.New("uid " + strconv.Itoa(int(u)) + ", want " + strconv.Itoa(uid))
					}
					pc.WriteTo([]byte("ok"), from)
					got <- err
				}()
			}
			if _, err := asuser.Send(t, uid, gid, network, "127.0.0.9:0", server.String(), []byte("B")); err != nil {
				t.Fatal(err)
			}
			if err := <-got; err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestLookupLocality: "Local means 127.0.0.0/8, ::1 and this host's own
// addresses"; another host's sender is not looked up at all.
func TestLookupLocality(t *testing.T) {
	t.Parallel()
	r := New(Config{})
	for _, tc := range []struct {
		addr  string
		local bool
	}{
		{"127.0.0.1", true}, {"127.255.0.9", true}, {"::1", true}, {"::ffff:127.0.0.5", true},
		{"192.0.2.1", false}, {"2001:db8::1", false},
	} {
		if got := r.IsLocal(netip.MustParseAddr(tc.addr)); got != tc.local {
			t.Errorf("IsLocal(%s) = %v, want %v", tc.addr, got, tc.local)
		}
	}
	if o := r.Lookup("udp", netip.MustParseAddrPort("192.0.2.2:18"), netip.MustParseAddrPort("192.0.2.1:5000")); o != (Owner{}) {
		t.Errorf("remote sender: %+v, want the zero Owner", o)
	}
	// An interface address of this host counts as local (read at most every
	// AddrRefresh).
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Skip(err)
	}
	for _, ia := range addrs {
		if n, ok := ia.(*net.IPNet); ok && !n.IP.IsLoopback() {
			a, _ := netip.AddrFromSlice(n.IP)
			if !r.IsLocal(a) {
				t.Errorf("interface address %s not local", a)
			}
		}
	}
}

// TestLookupNamesTheAccount: the uid maps to its login name.
func TestLookupNamesTheAccount(t *testing.T) {
	t.Parallel()
	needNetlink(t)
	server, sender, done := pair(t, "tcp", "127.0.0.1:0", "127.0.0.7:0", "", false)
	defer done()
	o := New(Config{}).Lookup("tcp", server, sender)
	if !o.Local || !o.Known || o.UID != myUID() {
		t.Fatalf("Lookup = %+v, want local, known, uid %d", o, myUID())
	}
	if os.Getuid() == 0 && o.User != "root" {
		t.Fatalf("User = %q, want root", o.User)
	}
}

// TestLookupRateBoundsTheCost: past Config.LookupRate the Resolver stops
// asking and the sender is local and unknown (one shared bucket), so a
// flood of fresh sockets cannot keep the server's read loop busy; after
// Close nobody is named.
func TestLookupRateBoundsTheCost(t *testing.T) {
	t.Parallel()
	needNetlink(t)
	server, sender, done := pair(t, "udp", "127.0.0.1:0", "127.0.0.8:0", "", false)
	defer done()
	r := New(Config{LookupRate: 0.001, LookupBurst: 2})
	defer r.Close()
	known := Owner{Local: true, Known: true, UID: myUID(), User: r.name(myUID())}
	for i, want := range []Owner{known, known, {Local: true}} {
		if got := r.Lookup("udp", server, sender); got != want {
			t.Fatalf("lookup %d: %+v, want %+v", i, got, want)
		}
	}
	r2 := New(Config{})
	if got := r2.Lookup("udp", server, sender); got != known {
		t.Fatalf("before Close: %+v, want %+v", got, known)
	}
	if err := r2.Close(); err != nil {
		t.Fatal(err)
	}
	r2.Close()
	if got := r2.Lookup("udp", server, sender); got != (Owner{Local: true}) {
		t.Fatalf("after Close: %+v, want local and unknown", got)
	}
}

// TestSocketUIDSharedPortIsAmbiguous: with SO_REUSEADDR two accounts may
// bind one UDP address and port. The kernel's exact lookup would pick one
// of them (a socket connected to the server wins), so another user's
// datagram could pass as the first user's; every candidate is looked at
// instead, and two owners name nobody.
func TestSocketUIDSharedPortIsAmbiguous(t *testing.T) {
	t.Parallel()
	needNetlink(t)
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	server := pc.LocalAddr().(*net.UDPAddr).AddrPort()
	// This process's socket on 127.0.0.6:P, shared.
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1)
		})
		return errors.Join(err, serr)
	}}
	mine, err := lc.ListenPacket(context.Background(), "udp", "127.0.0.6:0")
	if err != nil {
		t.Fatal(err)
	}
	defer mine.Close()
	shared := mine.LocalAddr().String()
	got := make(chan error, 1)
	go func() {
		buf := make([]byte, 16)
		pc.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, from, err := pc.ReadFrom(buf)
		if err != nil {
			got <- err
			return
		}
		uid, err := SocketUID("udp", server, from.(*net.UDPAddr).AddrPort())
		if !errors.Is(err, ErrAmbiguous) {
			err = fmt.Errorf("shared port: uid %d, err %v; want ErrAmbiguous", uid, err)
		} else {
			err = nil
		}
		pc.WriteTo([]byte("ok"), from)
		got <- err
	}()
	uid, gid := asuser.Nobody()
	if _, err := asuser.Send(t, uid, gid, "udp", shared, server.String(), []byte("B"), asuser.ReuseAddr); err != nil {
		t.Fatal(err)
	}
	if err := <-got; err != nil {
		t.Fatal(err)
	}
}

// BenchmarkSocketUID: the cost of one lookup on a kept netlink socket, as
// the MSP server pays it per local datagram (udp) and per accepted
// connection (tcp).
func BenchmarkSocketUID(b *testing.B) {
	for _, network := range []string{"udp", "tcp"} {
		b.Run(network, func(b *testing.B) {
			t := &testing.T{}
			server, sender, done := pair(t, network, "127.0.0.1:0", "127.0.0.24:0", "", false)
			defer done()
			var d diagClient
			defer d.close()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := d.socketUID(network, server, sender); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
