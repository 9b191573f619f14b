package msp

import (
	"bufio"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/msprelay/msprelay/internal/waitfor"
)

// waitFor polls cond every few milliseconds until it holds or limit passes.
func waitFor(t testing.TB, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	waitfor.True(t, limit, what, cond)
}

// recorder is a Handler that records every message and answers with reply.
type recorder struct {
	reply func(w ResponseWriter, m *Message)

	mu       sync.Mutex // guards msgs and finished
	msgs     []*Message
	networks []string
	finished int // handler calls that have returned
}

func (r *recorder) ServeMSP(w ResponseWriter, m *Message) {
	r.mu.Lock()
	r.msgs = append(r.msgs, m)
	r.networks = append(r.networks, w.Network())
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		r.finished++
		r.mu.Unlock()
	}()
	if r.reply != nil {
		r.reply(w, m)
	} else {
		w.Ack("delivered")
	}
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.msgs)
}

func (r *recorder) done() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.finished
}

func (r *recorder) msg(i int) *Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.msgs[i]
}

// testLogger logs to the test's output, shown on failure or with -v.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// serve starts s on fresh loopback TCP and UDP ports and closes it when the
// test ends, checking that both serve loops ended with ErrServerClosed.
func serve(t *testing.T, s *Server) (tcpAddr, udpAddr string) {
	t.Helper()
	return serveUDPPath(t, s, udpPaths[0])
}

// udpPath is one of the ways ServePacket reads and writes datagrams.
type udpPath struct {
	name  string
	batch int  // Server.PacketBatch
	plain bool // hide the *net.UDPConn behind the bare net.PacketConn interface
}

// udpPaths: batches on a *net.UDPConn (recvmmsg/sendmmsg), one datagram at
// a time on it, and ReadFrom/WriteTo on any other net.PacketConn.
var udpPaths = []udpPath{
	{name: "batched"},
	{name: "PacketBatch 1", batch: 1},
	{name: "plain PacketConn", plain: true},
}

// serveUDPPath is serve with ServePacket taking the given path.
func serveUDPPath(t *testing.T, s *Server, path udpPath) (tcpAddr, udpAddr string) {
	t.Helper()
	if s.Logger == nil {
		s.Logger = testLogger(t)
	}
	if path.batch != 0 {
		s.PacketBatch = path.batch
	}
	l, pc, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if path.plain {
		pc = plainPacketConn{pc}
	}
	errc := make(chan error, 2)
	go func() { errc <- s.Serve(l) }()
	go func() { errc <- s.ServePacket(pc) }()
	t.Cleanup(func() {
		s.Close()
		for range 2 {
			if err := <-errc; !errors.Is(err, ErrServerClosed) {
				t.Errorf("serve loop returned %v, want ErrServerClosed", err)
			}
		}
	})
	return l.Addr().String(), pc.LocalAddr().String()
}

// dialTCP opens a raw TCP connection, as netcat would.
func dialTCP(t *testing.T, addr string) net.Conn {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return nc
}

// dialUDP opens a connected raw UDP socket.
func dialUDP(t *testing.T, addr string) net.Conn {
	t.Helper()
	nc, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return nc
}

// replyReader reads NUL-terminated replies from a raw TCP connection.
type replyReader struct {
	t  *testing.T
	nc net.Conn
	br *bufio.Reader
}

func newReplyReader(t *testing.T, nc net.Conn) *replyReader {
	return &replyReader{t: t, nc: nc, br: bufio.NewReader(nc)}
}

// next returns the next reply, NUL included, waiting at most 5 s.
func (r *replyReader) next() string {
	r.t.Helper()
	r.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	s, err := r.br.ReadString(0)
	if err != nil {
		r.t.Fatalf("reading reply: %v (got %q)", err, s)
	}
	return s
}

// expectEOF checks the server closes the connection (within limit) without
// sending anything more.
func (r *replyReader) expectEOF(limit time.Duration) {
	r.t.Helper()
	r.nc.SetReadDeadline(time.Now().Add(limit))
	b, err := io.ReadAll(r.br)
	if len(b) != 0 {
		r.t.Fatalf("got %q, want nothing before close", b)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		r.t.Fatalf("connection still open after %v", limit)
	}
}

// write sends raw octets.
func write(t *testing.T, nc net.Conn, b []byte) {
	t.Helper()
	if _, err := nc.Write(b); err != nil {
		t.Fatal(err)
	}
}

// readDatagram returns the next datagram on nc, or fails after 5 s.
func readDatagram(t *testing.T, nc net.Conn) []byte {
	t.Helper()
	buf := make([]byte, 2048)
	nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := nc.Read(buf)
	if err != nil {
		t.Fatalf("reading datagram: %v", err)
	}
	return buf[:n]
}

// enc encodes a message for tests, failing on error.
func enc(t testing.TB, m *Message) []byte {
	t.Helper()
	b, err := m.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// dialTimeout dials TCP with a short timeout, for probing a listener.
func dialTimeout(addr string) (net.Conn, error) {
	return net.DialTimeout("tcp", addr, time.Second)
}

// gate is a Handler whose calls block until release is closed (or the
// server is closed), then acknowledge "finished". entered receives once per
// call, when it starts.
type gate struct {
	entered chan struct{}
	release chan struct{}
}

func newGate() *gate {
	return &gate{entered: make(chan struct{}, 16), release: make(chan struct{})}
}

func (g *gate) ServeMSP(w ResponseWriter, m *Message) {
	g.entered <- struct{}{}
	select {
	case <-g.release:
	case <-w.Context().Done():
	}
	w.Ack("finished")
}

// byRecipient groups messages by folded recipient, keeping their order
// within each group: the order a connection's handler calls must keep.
func byRecipient(ms []Message) map[string][]Message {
	out := make(map[string][]Message)
	for _, m := range ms {
		out[Fold(m.Recipient)] = append(out[Fold(m.Recipient)], m)
	}
	return out
}

// wait waits (at most 5 s) until n calls have entered the gate.
func (g *gate) wait(t *testing.T, n int) {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for i := range n {
		select {
		case <-g.entered:
		case <-timeout:
			t.Fatalf("%d of %d handler calls started", i, n)
		}
	}
}

// expectShutdownWaits waits until Shutdown has closed the listener at addr
// and checks it has not returned (shut is its result): handlers are in
// flight.
func expectShutdownWaits(t *testing.T, addr string, shut <-chan error) {
	t.Helper()
	waitFor(t, 5*time.Second, "listener closed", func() bool {
		nc, err := dialTimeout(addr)
		if err == nil {
			nc.Close()
		}
		return err != nil
	})
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned %v with handlers in flight", err)
	default:
	}
}
