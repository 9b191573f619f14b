package msp

import (
	"net"
	"testing"
	"time"
)

// discardPacketConn drops what is written; reading is never used.
type discardPacketConn struct{}

func (discardPacketConn) ReadFrom([]byte) (int, net.Addr, error)    { select {} }
func (discardPacketConn) WriteTo(b []byte, _ net.Addr) (int, error) { return len(b), nil }
func (discardPacketConn) Close() error                              { return nil }
func (discardPacketConn) LocalAddr() net.Addr {
	return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 18}
}
func (discardPacketConn) SetDeadline(time.Time) error      { return nil }
func (discardPacketConn) SetReadDeadline(time.Time) error  { return nil }
func (discardPacketConn) SetWriteDeadline(time.Time) error { return nil }

// BenchmarkServeDatagram is the server's own work for one datagram, from
// the read loop's hand-over to the written answer, with no socket: rate
// check, decoding, the duplicate filter, the worker, the handler's Ack.
func BenchmarkServeDatagram(b *testing.B) {
	s := &Server{Handler: HandlerFunc(func(w ResponseWriter, m *Message) { w.Ack("delivered to " + m.Recipient) }), RatePerIP: -1}
	s.init()
	from := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1018}
	ps := s.newPacketServer(discardPacketConn{}, nil, 1)
	buf := make([]byte, 0, MaxLen)
	b.ReportAllocs()
	defer reportCPU(b)()
	for i := 0; b.Loop(); i++ {
		ps.serve(from, benchMessage(buf, i))
	}
	ps.handlers.stop()
}
