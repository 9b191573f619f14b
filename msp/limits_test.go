package msp

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// dialFrom opens a raw TCP connection from the loopback address src
// (127.0.0.0/8 is all ours on Linux), so that tests can play several hosts.
func dialFrom(t *testing.T, src, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return nc
}

// otherHosts is an Identify that calls every sender remote, so that tests
// in which loopback addresses play other hosts count them per address, as
// a server counts real other hosts.
func otherHosts(string, netip.AddrPort, netip.AddrPort) Peer { return Peer{} }

// sendFrom sends one revision 'B' message from src on a new connection and
// returns the reply.
func sendFrom(t *testing.T, src, addr, text string) string {
	t.Helper()
	nc := dialFrom(t, src, addr)
	defer nc.Close()
	write(t, nc, enc(t, &Message{Recipient: "bob", Text: text}))
	return newReplyReader(t, nc).next()
}

// partialCount is the number of connections with a message under way.
func partialCount(s *Server) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.partial.Len()
}

// Issue 12: "200 connections sending one octet each lock out every MSP
// sender at --max-conns 200 for the 30 s read timeout, repeatably (no
// per-IP cap)."
func TestOneOctetConnectionsDoNotLockOutSenders(t *testing.T) {
	t.Parallel()
	t.Run("from one address the per-source cap leaves room", func(t *testing.T) {
		t.Parallel()
		s := &Server{Handler: &recorder{}, MaxConns: 200, Identify: otherHosts}
		addr, _ := serve(t, s)
		refused := 0
		for range 200 {
			nc := dialFrom(t, "127.0.0.1", addr)
			nc.Write([]byte("B"))
		}
		waitFor(t, 10*time.Second, "attack connections admitted or refused", func() bool {
			st := s.Stats()
			refused = int(st.RefusedPerIP)
			return s.connCount()+refused == 200
		})
		if got := s.connCount(); got != DefaultMaxConnsPerIP {
			t.Fatalf("one address holds %d connections, want the per-source cap %d", got, DefaultMaxConnsPerIP)
		}
		start := time.Now()
		if r := sendFrom(t, "127.0.0.2", addr, "hello"); r != "+delivered\x00" {
			t.Fatalf("a sender from another address got %q", r)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("the sender waited %v", d)
		}
		// The attacker's next connection is told why.
		nc := dialFrom(t, "127.0.0.1", addr)
		if r := newReplyReader(t, nc).next(); r != perIPReply {
			t.Fatalf("connection past the per-source cap got %q", r)
		}
	})
	t.Run("from many addresses stalled connections make way", func(t *testing.T) {
		t.Parallel()
		s := &Server{Handler: &recorder{}, MaxConns: 200, StallGrace: 200 * time.Millisecond, Identify: otherHosts}
		addr, _ := serve(t, s)
		for i := range 200 {
			nc := dialFrom(t, fmt.Sprintf("127.0.%d.%d", 1+i/200, 10+i%200), addr)
			nc.Write([]byte("B"))
		}
		waitFor(t, 10*time.Second, "200 attack connections with a message under way", func() bool { return partialCount(s) == 200 })
		start := time.Now()
		var r string
		waitFor(t, 5*time.Second, "a sender served", func() bool {
			r = sendFrom(t, "127.0.0.2", addr, "hello")
			return r == "+delivered\x00"
		})
		if d := time.Since(start); d > 3*time.Second {
			t.Fatalf("the sender was locked out for %v", d)
		}
		if s.Stats().EvictedStalled == 0 {
			t.Fatal("no stalled connection was evicted")
		}
	})
}

// A slow message is still cut off by ReadTimeout when the server is not
// under pressure; StallGrace only matters at MaxConns.
func TestStalledConnectionKeptBelowTheCap(t *testing.T) {
	t.Parallel()
	s := &Server{Handler: &recorder{}, MaxConns: 10, StallGrace: time.Millisecond}
	addr, _ := serve(t, s)
	nc := dialTCP(t, addr)
	write(t, nc, []byte("Bbob\x00"))
	time.Sleep(50 * time.Millisecond) // the message is stalled past its grace, on purpose
	write(t, nc, []byte("\x00slow\x00\x00\x00\x00\x00"))
	if r := newReplyReader(t, nc).next(); r != "+delivered\x00" {
		t.Fatalf("got %q", r)
	}
	if st := s.Stats(); st.EvictedStalled != 0 {
		t.Fatalf("evicted %d below the cap", st.EvictedStalled)
	}
}

// Issue 12: "per-IP rate limit on MSP messages ... over TCP, over-limit
// gets '-' with a reason".
func TestRatePerIPOverTCPRefusesWithReason(t *testing.T) {
	t.Parallel()
	rec := &recorder{}
	s := &Server{Handler: rec, RatePerIP: 0.01, RateBurst: 3, Identify: otherHosts}
	addr, _ := serve(t, s)
	nc := dialTCP(t, addr)
	rr := newReplyReader(t, nc)
	var got []string
	for i := range 5 {
		write(t, nc, enc(t, &Message{Recipient: "bob", Text: fmt.Sprint("m", i), Cookie: fmt.Sprint(i)}))
		got = append(got, rr.next())
	}
	want := []string{"+delivered\x00", "+delivered\x00", "+delivered\x00", "-" + rateLimitedReply + "\x00", "-" + rateLimitedReply + "\x00"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("replies %q, want %q", got, want)
	}
	if rec.count() != 3 {
		t.Fatalf("handler called %d times, want 3", rec.count())
	}
	if st := s.Stats(); st.RateLimitedTCP != 2 {
		t.Fatalf("RateLimitedTCP = %d, want 2", st.RateLimitedTCP)
	}
	// Another source has its own allowance.
	if r := sendFrom(t, "127.0.0.3", addr, "other"); r != "+delivered\x00" {
		t.Fatalf("another source got %q", r)
	}
}

// Pipelined messages past the rate are refused in order, and the ones
// before still answered.
func TestRatePerIPPipelined(t *testing.T) {
	t.Parallel()
	s := &Server{Handler: &recorder{}, RatePerIP: 0.01, RateBurst: 2}
	addr, _ := serve(t, s)
	nc := dialTCP(t, addr)
	var all []byte
	for i := range 4 {
		all = append(all, enc(t, &Message{Recipient: fmt.Sprint("u", i), Text: "x", Cookie: fmt.Sprint(i)})...)
	}
	write(t, nc, all)
	rr := newReplyReader(t, nc)
	for i, want := range []string{"+delivered\x00", "+delivered\x00", "-" + rateLimitedReply + "\x00", "-" + rateLimitedReply + "\x00"} {
		if r := rr.next(); r != want {
			t.Fatalf("reply %d %q, want %q", i, r, want)
		}
	}
}

// Issue 12: "over UDP, silence" (RFC 1312 sends no '-' over UDP).
func TestRatePerIPOverUDPIsSilent(t *testing.T) {
	t.Parallel()
	rec := &recorder{}
	s := &Server{Handler: rec, RatePerIP: 0.01, RateBurst: 2}
	_, udpAddr := serve(t, s)
	nc := dialUDP(t, udpAddr)
	for i := range 4 {
		write(t, nc, enc(t, &Message{Recipient: "bob", Text: "x", Cookie: fmt.Sprint(i)}))
	}
	for range 2 {
		if r := readDatagram(t, nc); string(r) != "+delivered\x00" {
			t.Fatalf("got %q", r)
		}
	}
	waitFor(t, 5*time.Second, "datagrams counted", func() bool { return s.Stats().RateLimitedUDP == 2 })
	nc.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if n, err := nc.Read(make([]byte, 600)); err == nil {
		t.Fatalf("got a %d-octet answer past the rate", n)
	}
	if rec.count() != 2 {
		t.Fatalf("handler called %d times, want 2", rec.count())
	}
}

func TestSourceKeys(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		addr net.Addr
		want string
	}{
		{&net.TCPAddr{IP: net.ParseIP("192.0.2.7"), Port: 1}, "192.0.2.7/32"},
		{&net.UDPAddr{IP: net.ParseIP("::ffff:192.0.2.7"), Port: 1}, "192.0.2.7/32"},
		{&net.TCPAddr{IP: net.ParseIP("2001:db8:1:2:3:4:5:6"), Port: 1}, "2001:db8:1:2::/64"},
	} {
		k, ok := sourceOf(tc.addr)
		if !ok || k.prefix.String() != tc.want {
			t.Errorf("sourceOf(%v) = %v, %v; want %s", tc.addr, k, ok, tc.want)
		}
	}
	if _, ok := sourceOf(&net.UnixAddr{Name: "x"}); ok {
		t.Error("a Unix address got a source key")
	}
}

// "bounded per-IP table (evict idle)": sources without connections are
// forgotten, least recently seen first; sources with connections are kept.
func TestSourceTableIsBounded(t *testing.T) {
	t.Parallel()
	var forgotten atomic.Uint64
	tab := newSources(3, 1, 1, &forgotten)
	key := func(i int) Source {
		return Source{prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 0, 0, byte(i)}), 32)}
	}
	if !tab.addConn(key(0), 1) {
		t.Fatal("first connection refused")
	}
	if tab.addConn(key(0), 1) {
		t.Fatal("second connection past a cap of one admitted")
	}
	for i := 1; i <= 100; i++ {
		tab.allow(key(i))
	}
	if n := tab.size(); n > 3 {
		t.Fatalf("table holds %d sources, want at most 3", n)
	}
	if forgotten.Load() < 97 {
		t.Fatalf("forgotten %d, want at least 97", forgotten.Load())
	}
	if tab.addConn(key(0), 1) {
		t.Fatal("the source with a connection was forgotten")
	}
	tab.dropConn(key(0))
	if !tab.addConn(key(0), 1) {
		t.Fatal("connection refused after the other one ended")
	}
}

// A stalled connection that still owes a reply is not evicted: the message
// it delivered keeps its '+'.
func TestStalledConnectionWithReplyOwedIsKept(t *testing.T) {
	t.Parallel()
	g := newGate()
	s := &Server{Handler: g, MaxConns: 1, StallGrace: time.Millisecond}
	addr, _ := serve(t, s)
	a := dialTCP(t, addr)
	// One whole message, handled (and held by the gate), and the first
	// octet of the next, which then stalls.
	write(t, a, []byte("Bbob\x00\x00hi\x00\x00\x00\x00\x00B"))
	g.wait(t, 1)
	waitFor(t, 5*time.Second, "second message under way", func() bool { return partialCount(s) == 1 })
	time.Sleep(20 * time.Millisecond) // past StallGrace, on purpose
	b := dialTCP(t, addr)
	if r := newReplyReader(t, b).next(); r != busyReply {
		t.Fatalf("newcomer got %q, want %q", r, busyReply)
	}
	close(g.release)
	if r := newReplyReader(t, a).next(); r != "+finished\x00" {
		t.Fatalf("the stalled connection's owed reply is %q", r)
	}
	if st := s.Stats(); st.EvictedStalled != 0 || st.RefusedBusy != 1 {
		t.Fatalf("stats %+v, want no eviction and one busy refusal", st)
	}
}
