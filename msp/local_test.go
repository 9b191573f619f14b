package msp

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/msprelay/msprelay/internal/asuser"
	"github.com/msprelay/msprelay/sockowner"
)

func TestMain(m *testing.M) {
	asuser.Main()
	os.Exit(m.Run())
}

// kernelIdentify is what the node sets as Server.Identify: the kernel's
// answer through a sockowner.Resolver. It skips the test where netlink
// cannot be asked.
func kernelIdentify(t *testing.T) func(string, netip.AddrPort, netip.AddrPort) Peer {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if _, err := sockowner.SocketUID("tcp", l.Addr().(*net.TCPAddr).AddrPort(), netip.MustParseAddrPort("127.0.0.1:1")); errors.Is(err, sockowner.ErrUnsupported) {
		t.Skipf("no NETLINK_SOCK_DIAG here: %v", err)
	}
	r := sockowner.New(sockowner.Config{})
	t.Cleanup(func() { r.Close() })
	return func(network string, local, remote netip.AddrPort) Peer {
		return Peer(r.Lookup(network, local, remote))
	}
}

// peerRecorder records the Peer of every message it acknowledges.
type peerRecorder struct {
	mu    sync.Mutex // guards peers
	peers []Peer
}

func (r *peerRecorder) ServeMSP(w ResponseWriter, m *Message) {
	r.mu.Lock()
	r.peers = append(r.peers, w.Peer())
	r.mu.Unlock()
	w.Ack("delivered")
}

// byUID counts the messages of each identified owner.
func (r *peerRecorder) byUID() map[uint32]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := map[uint32]int{}
	for _, p := range r.peers {
		if p.Known {
			n[p.UID]++
		}
	}
	return n
}

// Issue 18, "Any local user is 16 million sources": "Limits ... are keyed
// per IPv4 address, and any local user may bind any 127.0.0.0/8 address
// ... The same trick bypasses the failed-sign-in throttle, the MSP rate and
// the per-source connection cap." A local user sending from ten loopback
// addresses gets one user's rate and connections, and another local user
// (nobody, run as a child process) can still send.
//
// Not parallel with the package's other tests: it copies the test binary
// and runs it as a child, load that made the timing-sensitive client
// tests miss their retransmission windows on a busy machine.
func TestLocalUserIsOneSourceHoweverManyAddresses(t *testing.T) {
	identify := kernelIdentify(t)
	const burst = 5
	me := uint32(os.Getuid())
	nobody, nobodyGID := asuser.Nobody()
	from := func(i int) string { return fmt.Sprintf("127.0.0.%d", 10+i) }
	msg := func(i int) []byte {
		return enc(t, &Message{Recipient: "bob", Text: "flood", Cookie: strconv.Itoa(i)})
	}

	t.Run("MSP rate over UDP", func(t *testing.T) {
		t.Parallel()
		rec := &peerRecorder{}
		s := &Server{Handler: rec, RatePerIP: 0.001, RateBurst: burst, Identify: identify}
		_, udpAddr := serve(t, s)
		dst, _ := net.ResolveUDPAddr("udp", udpAddr)
		for i := range 10 {
			// The sockets stay open until the server has seen every
			// datagram: one closed at once has no owner left to find, and
			// its datagrams would count in the shared unidentified bucket.
			c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(from(i))})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			for j := range burst {
				c.WriteTo(msg(i*burst+j), dst)
			}
		}
		waitFor(t, 10*time.Second, "every flood datagram handled or dropped", func() bool {
			st := s.Stats()
			return st.RateLimitedUDP+uint64(rec.byUID()[me]) == 10*burst
		})
		if got := rec.byUID()[me]; got != burst {
			t.Fatalf("from ten loopback addresses one user got %d messages through, want one user's burst %d", got, burst)
		}
		out, err := asuser.Send(t, nobody, nobodyGID, "udp", "127.0.0.99:0", udpAddr, msg(1000))
		if err != nil {
			t.Fatal(err)
		}
		if string(out) != "+delivered\x00" {
			t.Fatalf("another local user got %q after the flood", out)
		}
		rec.mu.Lock()
		last := rec.peers[len(rec.peers)-1]
		rec.mu.Unlock()
		if want := (Peer{Local: true, Known: true, UID: uint32(nobody), User: "nobody"}); last != want {
			t.Fatalf("the other user's message has Peer %+v, want %+v", last, want)
		}
	})

	t.Run("MSP rate over TCP", func(t *testing.T) {
		t.Parallel()
		rec := &peerRecorder{}
		s := &Server{Handler: rec, RatePerIP: 0.001, RateBurst: burst, Identify: identify}
		addr, _ := serve(t, s)
		delivered := 0
		for i := range 10 {
			nc := dialFrom(t, from(i), addr)
			rr := newReplyReader(t, nc)
			for j := range burst {
				write(t, nc, msg(i*burst+j))
				if rr.next() == "+delivered\x00" {
					delivered++
				}
			}
			nc.Close()
		}
		if delivered != burst {
			t.Fatalf("from ten loopback addresses one user got %d messages delivered, want one user's burst %d", delivered, burst)
		}
		out, err := asuser.Send(t, nobody, nobodyGID, "tcp", "127.0.0.99:0", addr, msg(1000))
		if err != nil {
			t.Fatal(err)
		}
		if string(out) != "+delivered\x00" {
			t.Fatalf("another local user got %q after the flood", out)
		}
		if n := rec.byUID()[uint32(nobody)]; n != 1 {
			t.Fatalf("the other user's message was seen as from uid %d %d times, want once", nobody, n)
		}
	})

	t.Run("connections per source", func(t *testing.T) {
		t.Parallel()
		const perUser = 3
		s := &Server{Handler: &peerRecorder{}, MaxConnsPerIP: perUser, Identify: identify}
		addr, _ := serve(t, s)
		for i := range 10 {
			nc := dialFrom(t, from(i), addr)
			nc.Write([]byte("B")) // a message begun and never finished
		}
		waitFor(t, 10*time.Second, "attack connections admitted or refused", func() bool {
			return s.connCount()+int(s.Stats().RefusedPerIP) == 10
		})
		// A connection whose owner the kernel could not name at accept
		// (it can happen on a loaded machine) counts in the one bucket of
		// unidentified local senders: ten addresses still buy at most the
		// user's cap plus that shared one, never ten allowances.
		if got := s.connCount(); got < perUser || got > 2*perUser {
			t.Fatalf("one user holds %d connections from ten addresses, want the per-source cap %d (at most %d with the shared unidentified bucket)", got, perUser, 2*perUser)
		}
		out, err := asuser.Send(t, nobody, nobodyGID, "tcp", "127.0.0.99:0", addr, msg(1000))
		if err != nil {
			t.Fatal(err)
		}
		if string(out) != "+delivered\x00" {
			t.Fatalf("another local user got %q while the first held her connections", out)
		}
	})
}

// "an unidentified local sender shares ONE bucket": without an owner (no
// Identify, or the kernel cannot tell) every loopback sender is one
// source, so loopback addresses buy nothing.
func TestUnidentifiedLocalSendersShareOneSource(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		identify func(string, netip.AddrPort, netip.AddrPort) Peer
	}{
		{"no Identify", nil},
		{"owner unknown", func(string, netip.AddrPort, netip.AddrPort) Peer { return Peer{Local: true} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := &Server{Handler: &recorder{}, RatePerIP: 0.001, RateBurst: 2, Identify: tc.identify}
			addr, _ := serve(t, s)
			delivered := 0
			for i := range 6 {
				if sendFrom(t, fmt.Sprintf("127.0.0.%d", 40+i), addr, "x") == "+delivered\x00" {
					delivered++
				}
			}
			if delivered != 2 {
				t.Fatalf("six loopback addresses got %d messages delivered, want the one shared burst 2", delivered)
			}
		})
	}
}

// Remote senders still count per address: Peer.Local false keys by the
// IPv4 address or IPv6 /64, and a local user's key never meets a remote
// one.
func TestSourceKeyByWho(t *testing.T) {
	t.Parallel()
	v4 := &net.UDPAddr{IP: net.ParseIP("192.0.2.7"), Port: 9}
	loop := &net.UDPAddr{IP: net.ParseIP("127.0.0.5"), Port: 9}
	for _, tc := range []struct {
		name   string
		remote net.Addr
		peer   Peer
		want   string
	}{
		{"remote host by address", v4, Peer{}, "192.0.2.7/32"},
		{"local user by uid", loop, Peer{Local: true, Known: true, UID: 1000}, "local uid 1000"},
		{"local unknown shares one", loop, Peer{Local: true}, "local, unidentified"},
		{"root is a user like any", loop, Peer{Local: true, Known: true, UID: 0}, "local uid 0"},
	} {
		s := &Server{Identify: func(string, netip.AddrPort, netip.AddrPort) Peer { return tc.peer }}
		p, k, ok := s.identify("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 18}, tc.remote)
		if !ok || p != tc.peer || k.String() != tc.want {
			t.Errorf("%s: key %q (ok %v, peer %+v), want %q", tc.name, k, ok, p, tc.want)
		}
	}
}
