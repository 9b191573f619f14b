package msp

import (
	"bufio"
	"net"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

func BenchmarkParse(b *testing.B) {
	in := []byte(rfcExample)
	b.ReportAllocs()
	b.SetBytes(int64(len(in)))
	for b.Loop() {
		if _, err := Parse(in); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkUnmarshalBinary(b *testing.B) {
	in := []byte(rfcExample)
	var m Message
	b.ReportAllocs()
	b.SetBytes(int64(len(in)))
	for b.Loop() {
		if err := m.UnmarshalBinary(in); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAppendBinary(b *testing.B) {
	m := &Message{Version: 'B', Recipient: "chris", Text: "Hi\r\nHow about lunch?", Sender: "sandy", SenderTerm: "console", Cookie: "910806121325"}
	buf := make([]byte, 0, MaxLen)
	b.ReportAllocs()
	b.SetBytes(int64(m.EncodedLen()))
	for b.Loop() {
		var err error
		if buf, err = m.AppendBinary(buf[:0]); err != nil {
			b.Fatal(err)
		}
	}
}

// benchServer starts a server acknowledging every message, with the
// per-source rate off (the benchmarks send from one address), on fresh
// loopback ports; it is closed when the benchmark ends.
func benchServer(b *testing.B, pc net.PacketConn, batch int) (tcpAddr, udpAddr string) {
	b.Helper()
	s := &Server{
		Handler:     HandlerFunc(func(w ResponseWriter, m *Message) { w.Ack("delivered to " + m.Recipient) }),
		RatePerIP:   -1,
		PacketBatch: batch,
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	if pc == nil {
		if pc, err = net.ListenPacket("udp", "127.0.0.1:0"); err != nil {
			b.Fatal(err)
		}
	}
	done := make(chan struct{}, 2)
	go func() { s.Serve(l); done <- struct{}{} }()
	go func() { s.ServePacket(pc); done <- struct{}{} }()
	b.Cleanup(func() {
		s.Close()
		<-done
		<-done
	})
	return l.Addr().String(), pc.LocalAddr().String()
}

// benchMessage writes message i, with a cookie of its own, into buf.
func benchMessage(buf []byte, i int) []byte {
	buf = append(buf[:0], "Bbob\x00\x00hello there\x00alice\x00tty1\x00c"...)
	buf = strconv.AppendInt(buf, int64(i), 10)
	return append(buf, 0, 0)
}

// benchUDP sends b.N messages over UDP keeping window of them unanswered,
// resending any whose reply does not come (the duplicate filter answers a
// resend again without handling it twice).
func benchUDP(b *testing.B, pc net.PacketConn, batch, window int) {
	_, addr := benchServer(b, pc, batch)
	nc, err := net.Dial("udp", addr)
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	out := make([]byte, 0, MaxLen)
	in := make([]byte, MaxLen+1)
	b.ReportAllocs()
	b.ResetTimer()
	defer reportCPU(b)()
	sent, got := 0, 0
	for got < b.N {
		for sent < b.N && sent-got < window {
			out = benchMessage(out, sent)
			if _, err := nc.Write(out); err != nil {
				b.Fatal(err)
			}
			sent++
		}
		nc.SetReadDeadline(time.Now().Add(time.Second))
		n, err := nc.Read(in)
		if err != nil {
			// Lost on loopback under pressure: send the window again.
			for i := got; i < sent; i++ {
				nc.Write(benchMessage(out, i))
			}
			continue
		}
		if n < 2 || in[0] != '+' {
			b.Fatalf("reply %q", in[:n])
		}
		got++
	}
}

// BenchmarkServeUDP is one sender waiting for each reply.
func BenchmarkServeUDP(b *testing.B) { benchUDP(b, nil, 0, 1) }

// BenchmarkServeUDPBatch1 is BenchmarkServeUDP with PacketBatch 1.
func BenchmarkServeUDPBatch1(b *testing.B) { benchUDP(b, nil, 1, 1) }

// BenchmarkServeUDPWindow keeps 32 datagrams in flight, so that the server
// finds several waiting at once.
func BenchmarkServeUDPWindow(b *testing.B) { benchUDP(b, nil, 0, 32) }

// BenchmarkServeUDPWindowBatch1 is BenchmarkServeUDPWindow with
// PacketBatch 1.
func BenchmarkServeUDPWindowBatch1(b *testing.B) { benchUDP(b, nil, 1, 32) }

// plainPacketConn hides the *net.UDPConn behind the bare interface, so the
// server takes its one-datagram-at-a-time path.
type plainPacketConn struct{ net.PacketConn }

// BenchmarkServeUDPWindowPlain is BenchmarkServeUDPWindow over a
// net.PacketConn that is not a *net.UDPConn.
func BenchmarkServeUDPWindowPlain(b *testing.B) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	benchUDP(b, plainPacketConn{pc}, 0, 32)
}

// BenchmarkServeTCPOnePerConn sends one message per connection.
func BenchmarkServeTCPOnePerConn(b *testing.B) {
	addr, _ := benchServer(b, nil, 0)
	out := make([]byte, 0, MaxLen)
	in := make([]byte, MaxLen)
	b.ReportAllocs()
	defer reportCPU(b)()
	for i := 0; b.Loop(); i++ {
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := nc.Write(benchMessage(out, i)); err != nil {
			b.Fatal(err)
		}
		if n, err := nc.Read(in); err != nil || n < 2 || in[0] != '+' {
			b.Fatalf("reply %q: %v", in[:n], err)
		}
		nc.Close()
	}
}

// BenchmarkServeTCPPipelined keeps 16 messages in flight on one connection.
func BenchmarkServeTCPPipelined(b *testing.B) {
	addr, _ := benchServer(b, nil, 0)
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	const window = 16
	out := make([]byte, 0, MaxLen)
	br := bufio.NewReader(nc)
	b.ReportAllocs()
	b.ResetTimer()
	defer reportCPU(b)()
	sent := 0
	for got := 0; got < b.N; got++ {
		for sent < b.N && sent-got < window {
			if _, err := nc.Write(benchMessage(out, sent)); err != nil {
				b.Fatal(err)
			}
			sent++
		}
		nc.SetReadDeadline(time.Now().Add(5 * time.Second))
		r, err := br.ReadSlice(0)
		if err != nil || r[0] != '+' {
			b.Fatalf("reply %q: %v", r, err)
		}
	}
}

// reportCPU starts measuring the process's CPU time (user and system, the
// sender's included) and returns the func that reports it per message as
// cpu-ns/op: on a shared machine it varies less than the elapsed time.
func reportCPU(b *testing.B) func() {
	start := cpuTime(b)
	return func() {
		b.ReportMetric(float64((cpuTime(b)-start).Nanoseconds())/float64(b.N), "cpu-ns/op")
	}
}

func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchUDPSenders has senders goroutines, each with its own socket, send
// b.N messages between them, each waiting for its reply before the next:
// the load mspbench puts on a node.
func benchUDPSenders(b *testing.B, batch, senders int) {
	_, addr := benchServer(b, nil, batch)
	b.ReportAllocs()
	b.ResetTimer()
	defer reportCPU(b)()
	var wg sync.WaitGroup
	for g := range senders {
		nc, err := net.Dial("udp", addr)
		if err != nil {
			b.Fatal(err)
		}
		defer nc.Close()
		wg.Go(func() {
			out := make([]byte, 0, MaxLen)
			in := make([]byte, MaxLen+1)
			for i := g; i < b.N; i += senders {
				out = benchMessage(out, i)
				for {
					nc.Write(out)
					nc.SetReadDeadline(time.Now().Add(time.Second))
					if n, err := nc.Read(in); err == nil && n > 1 && in[0] == '+' {
						break
					}
				}
			}
		})
	}
	wg.Wait()
}

// BenchmarkServeUDPSenders16 is 16 senders, one datagram in flight each.
func BenchmarkServeUDPSenders16(b *testing.B) { benchUDPSenders(b, 0, 16) }

// BenchmarkServeUDPSenders16Batch1 is BenchmarkServeUDPSenders16 with
// PacketBatch 1.
func BenchmarkServeUDPSenders16Batch1(b *testing.B) { benchUDPSenders(b, 1, 16) }
