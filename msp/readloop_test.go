package msp

import (
	"net"
	"net/netip"
	"strconv"
	"testing"
	"time"
)

// TestUDPReadLoopSettlesWithoutAllocating: issue 21, "UDP on the read loop
// for what can be answered there, and no per-datagram address allocation":
// a datagram the read loop drops (over the source's rate, malformed) or
// answers itself (a retransmission, from the duplicate filter) costs no
// worker and no allocation of the server's own beyond the decoded
// message's one string (and, for a malformed one, the error that says
// why, with its formatted detail).
func TestUDPReadLoopSettlesWithoutAllocating(t *testing.T) {
	// Not parallel: AllocsPerRun counts the whole process.
	from := netip.MustParseAddrPort("192.0.2.7:1018")
	msg := []byte("Bbob\x00\x00hi\x00alice\x00\x00c-1\x00\x00")
	tests := []struct {
		name  string
		rate  float64
		in    []byte
		max   float64
		calls int // handler calls expected in all
	}{
		{"retransmission answered from the duplicate filter", -1, msg, 1, 1},
		{"malformed datagram dropped", -1, []byte("Bbob\x00\x00\x1b\x00alice\x00\x00c\x00\x00"), 4, 0},
		{"over the source's rate", 0.001, msg, 0, 1},
	}
	for _, tc := range tests {
		calls := 0
		s := &Server{Handler: HandlerFunc(func(w ResponseWriter, m *Message) { calls++; w.Ack("delivered") }), RatePerIP: tc.rate, RateBurst: 1}
		s.init()
		pc := &countingBatchConn{}
		ps := s.newPacketServer(discardPacketConn{}, pc, 4)
		ps.serveFrom(from, nil, tc.in) // the first copy: handled, if valid
		ps.handlers.stop()
		ps.handlers = newWorkerPool(1)
		allocs := testing.AllocsPerRun(100, func() { ps.serveFrom(from, nil, tc.in) })
		ps.handlers.stop()
		if allocs > tc.max && !raceEnabled { // the race detector allocates
			t.Errorf("%s: %.1f allocations per datagram, want at most %.0f", tc.name, allocs, tc.max)
		}
		if calls != tc.calls {
			t.Errorf("%s: %d handler calls, want %d", tc.name, calls, tc.calls)
		}
		if tc.calls == 1 && tc.rate < 0 {
			if n := pc.n; n != 102 { // AllocsPerRun calls once more to warm up
				t.Errorf("%s: %d answers, want one per copy (102)", tc.name, n)
			}
		}
	}
}

// TestUDPAnswersEveryAddressFamily: the batched socket decodes and encodes
// addresses itself, so every kind of socket the server may be given is
// checked: IPv4, IPv6 and dual-stack (an IPv4 sender seen as a mapped
// address), batched and one at a time. Every sender gets its answer, and
// the handler sees its address as the sender's socket has it.
func TestUDPAnswersEveryAddressFamily(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ listen, to string }{
		{"127.0.0.1:0", "127.0.0.1"},
		{"[::1]:0", "::1"},
		{":0", "127.0.0.1"},
		{":0", "::1"},
	} {
		for _, batch := range []int{0, 1} {
			pc, err := net.ListenPacket("udp", tc.listen)
			if err != nil {
				t.Skipf("listen %s: %v", tc.listen, err)
			}
			seen := make(chan string, 1)
			s := &Server{Handler: HandlerFunc(func(w ResponseWriter, m *Message) {
				seen <- w.RemoteAddrString() + " " + w.RemoteAddr().String()
				w.Ack("delivered")
			}), PacketBatch: batch, Logger: testLogger(t)}
			done := make(chan error, 1)
			go func() { done <- s.ServePacket(pc) }()
			port := pc.LocalAddr().(*net.UDPAddr).Port
			c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(tc.to), uint16(port))))
			if err != nil {
				t.Fatal(err)
			}
			c.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := c.Write([]byte(probe)); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 600)
			n, err := c.Read(buf)
			if err != nil || string(buf[:n]) != probeReply {
				t.Errorf("%s → %s batch %d: got %q, %v; want %q", tc.listen, tc.to, batch, buf[:n], err, probeReply)
			}
			me := c.LocalAddr().(*net.UDPAddr).AddrPort()
			want := netip.AddrPortFrom(me.Addr().Unmap(), me.Port()).String()
			if got := <-seen; got[:len(want)+1] != want+" " {
				t.Errorf("%s → %s batch %d: handler saw %q, want %q first", tc.listen, tc.to, batch, got, want)
			}
			c.Close()
			s.Close()
			<-done
		}
	}
}

// countingBatchConn counts the datagrams written, allocating nothing.
type countingBatchConn struct{ n int }

func (c *countingBatchConn) readBatch([]inDatagram) (int, error) { select {} }
func (c *countingBatchConn) writeBatch(ds []outDatagram) (int, error) {
	c.n += len(ds)
	return len(ds), nil
}

// TestDedupSharesEqualReplies: the duplicate filter keeps one copy of each
// distinct reply (a relay answers most messages with one of a few texts),
// so remembering a reply allocates only when it is new, and each message
// still gets its own reply back, after the table of copies was cleared
// too.
func TestDedupSharesEqualReplies(t *testing.T) {
	t.Parallel()
	c := newDedupCache(time.Minute, 1000)
	now := time.Now()
	key := func(i int) dedupKey { return dedupKey{cookie: "c", sum: uint64(i)} }
	var first []byte
	for i := range maxSharedReplies + 10 {
		text := []byte("+delivered\x00")
		if i%2 == 1 {
			text = []byte("+delivered to " + strconv.Itoa(i) + "\x00")
		}
		c.begin(key(i), now)
		got := c.answered(key(i), text)
		text[1] = 'X' // the caller's buffer is not kept
		if i == 0 {
			first = got
		} else if i%2 == 0 && i < maxSharedReplies && &got[0] != &first[0] {
			t.Fatalf("message %d: equal reply not shared", i)
		}
		c.finish(key(i), now)
	}
	for i := range maxSharedReplies + 10 {
		want := "+delivered\x00"
		if i%2 == 1 {
			want = "+delivered to " + strconv.Itoa(i) + "\x00"
		}
		if fresh, replay := c.begin(key(i), now); fresh || string(replay) != want {
			t.Fatalf("message %d: fresh %v, replay %q; want %q", i, fresh, replay, want)
		}
	}
}

// TestUDPHandledDatagramAllocations: a datagram handed to the handler
// costs the server two allocations, the job (message and writer, which the
// handler may keep) and the message's one string; its sender's address,
// as a string too, is made once per sender socket, not per datagram, and
// its answer goes out of a lent buffer.
func TestUDPHandledDatagramAllocations(t *testing.T) {
	// Not parallel: AllocsPerRun counts the whole process.
	from := netip.MustParseAddrPort("192.0.2.7:1018")
	var name string
	s := &Server{Handler: HandlerFunc(func(w ResponseWriter, m *Message) {
		name = w.RemoteAddrString()
		w.Ack("delivered")
	}), RatePerIP: -1, DedupWindow: -1, MaxInflight: 1}
	s.init()
	pc := &countingBatchConn{}
	ps := s.newPacketServer(discardPacketConn{}, pc, 4)
	msg := []byte("Bbob\x00\x00hi\x00alice\x00\x00c-1\x00\x00")
	ps.serveFrom(from, nil, msg)
	allocs := testing.AllocsPerRun(100, func() { ps.serveFrom(from, nil, msg) })
	ps.handlers.stop()
	if allocs > 2 && !raceEnabled {
		t.Errorf("%.1f allocations per handled datagram, want at most 2", allocs)
	}
	if name != "192.0.2.7:1018" || pc.n != 102 {
		t.Errorf("handler saw %q and %d answers went out; want 192.0.2.7:1018 and 102", name, pc.n)
	}
}
