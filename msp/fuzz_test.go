package msp

import (
	"bytes"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// fuzzSeeds are inputs every fuzz target starts from (the files under
// testdata/fuzz hold more).
var fuzzSeeds = []string{
	rfcExample,
	"Abob\x00tty1\x00hello\x00",
	"B\x00\x00\x00\x00\x00\x00\x00",
	"Bbob\x00\x00a\nb\rc\r\n\x00alice\x00\x00COOKIE\x00sig\x00",
	"Bbob\x00\x00\x1b[2J\x00\x00\x00\x00\x00",
	"Bbob\x00\x00hi\x00\x00\x00\x00\x00Bbob\x00\x00again\x00\x00\x00\x00\x00",
	"Abob\x00\x00hi\x00trailing",
	"Xjunk\x00",
	"Bbob\x00\x00" + strings.Repeat("x", 520),
}

// isErrorOf reports whether err wraps one of the package's parse sentinels.
func isErrorOf(err error) bool {
	for _, s := range []error{ErrVersion, ErrTooLong, ErrParts, ErrCookieTooLong, ErrBadOctet} {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}

func FuzzParse(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Parse(b)
		if err != nil {
			if m != nil || !isErrorOf(err) {
				t.Fatalf("Parse(%q) = %v, %v", b, m, err)
			}
		} else {
			out, err := m.MarshalBinary()
			if err != nil {
				t.Fatalf("MarshalBinary(Parse(%q)): %v", b, err)
			}
			if !bytes.Equal(out, b) {
				t.Fatalf("MarshalBinary(Parse(x)) = %q, want %q", out, b)
			}
		}
		// The server's path: framing, stripping, then the rules that
		// stripping cannot fix.
		var d Message
		if err := d.decode(b); err != nil {
			return
		}
		d.Sanitize()
		if err := d.Validate(); err != nil && !errors.Is(err, ErrCookieTooLong) {
			t.Fatalf("sanitized %q still invalid: %v", b, err)
		}
		if n := NormalizeNewlines(d.Text); strings.Contains(strings.ReplaceAll(n, "\r\n", ""), "\r") ||
			strings.Contains(strings.ReplaceAll(n, "\r\n", ""), "\n") {
			t.Fatalf("NormalizeNewlines(%q) = %q", d.Text, n)
		}
	})
}

func FuzzParseReply(f *testing.F) {
	for _, s := range []string{"+\x00", "-User not online\x00", "+\x1b[31m\x00", "?\x00", "+a\x00b\x00"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := parseReply(b)
		if err != nil {
			return
		}
		if checkPart("reply", r.Text, className) != nil || r.OK != (b[0] == '+') {
			t.Fatalf("parseReply(%q) = %+v", b, r)
		}
	})
}

// fakeConn is a net.Conn that yields input in chunks of chunk octets, then
// io.EOF, and records what is written. Deadlines are ignored: input never
// blocks.
type fakeConn struct {
	in    []byte
	chunk int
	out   bytes.Buffer
}

func (c *fakeConn) Read(b []byte) (int, error) {
	if len(c.in) == 0 {
		return 0, io.EOF
	}
	n := copy(b[:min(len(b), c.chunk)], c.in)
	c.in = c.in[n:]
	return n, nil
}
func (c *fakeConn) Write(b []byte) (int, error)      { return c.out.Write(b) }
func (c *fakeConn) Close() error                     { return nil }
func (c *fakeConn) LocalAddr() net.Addr              { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 18} }
func (c *fakeConn) RemoteAddr() net.Addr             { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1018} }
func (c *fakeConn) SetDeadline(time.Time) error      { return nil }
func (c *fakeConn) SetReadDeadline(time.Time) error  { return nil }
func (c *fakeConn) SetWriteDeadline(time.Time) error { return nil }

// fuzzHandler acknowledges, refuses or ignores by the message's length, and
// checks the server only hands it messages that keep the rules.
func fuzzHandler(t *testing.T) Handler {
	return HandlerFunc(func(w ResponseWriter, m *Message) {
		if err := m.Validate(); err != nil && !errors.Is(err, ErrTooLong) {
			// Line-end rewriting may lengthen a message past 511 octets.
			t.Errorf("handler got an invalid message %+v: %v", m, err)
		}
		if NormalizeNewlines(m.Text) != m.Text {
			t.Errorf("handler got text without CR LF line ends: %q", m.Text)
		}
		switch len(m.Text) % 3 {
		case 0:
			w.Ack("ok\x1b" + m.Text)
		case 1:
			w.Nack("no\x00" + m.Recipient)
		}
	})
}

// FuzzServeTCP feeds arbitrary octets to a server connection, in chunks of
// arbitrary size, and checks every reply is "+text\0" or "-text\0" of at
// most 511 octets with printable text.
func FuzzServeTCP(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s), uint8(7), false)
	}
	// Pipelined: several recipients in one read, then an error.
	f.Add([]byte("Ba\x00\x00x\x00\x00\x00\x00\x00Bb\x00\x00yy\x00\x00\x00\x00\x00Ba\x00\x00zzz\x00\x00\x00\x00\x00Xbad\x00"), uint8(255), false)
	f.Add([]byte("Ba\x00\x00x\x00\x00\x00\x00\x00Bb\x00\x00\x1b\x00\x00\x00\x00\x00Abob\x00\x00hi\x00"), uint8(200), true)
	f.Fuzz(func(t *testing.T, in []byte, chunk uint8, strip bool) {
		// A small burst puts the per-source rate limit's refusals among
		// the replies too.
		s := &Server{Handler: fuzzHandler(t), StripControl: strip, RequireSender: chunk%5 == 0, RatePerIP: 0.001, RateBurst: 1 + int(chunk%4)}
		nc := &fakeConn{in: in, chunk: max(int(chunk), 1)}
		c := s.admitConn(nc)
		if c == nil {
			t.Fatal("connection refused")
		}
		c.serve()
		out := nc.out.Bytes()
		for len(out) > 0 {
			i := bytes.IndexByte(out, 0)
			if i < 0 {
				t.Fatalf("reply without NUL: %q", out)
			}
			if _, err := parseReply(out[:i+1]); err != nil || i+1 > MaxLen || checkPart("reply", string(out[1:i]), className) != nil {
				t.Fatalf("bad reply %q (%v)", out[:i+1], err)
			}
			out = out[i+1:]
		}
		if n := s.connCount(); n != 0 {
			t.Fatalf("%d connections still registered", n)
		}
		if _, k, _ := s.identify("tcp", nc.LocalAddr(), nc.RemoteAddr()); !s.src.addConn(k, 1) {
			t.Fatal("the ended connection is still counted against its source")
		}
	})
}

// fakePacketConn records datagrams written; reading is never used.
type fakePacketConn struct {
	mu  sync.Mutex // guards out
	out [][]byte
}

func (c *fakePacketConn) ReadFrom([]byte) (int, net.Addr, error) { return 0, nil, io.EOF }
func (c *fakePacketConn) WriteTo(b []byte, _ net.Addr) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.out = append(c.out, bytes.Clone(b))
	return len(b), nil
}
func (c *fakePacketConn) Close() error { return nil }

// readBatch and writeBatch make fakePacketConn a batchConn, so that the
// batched writer can be driven without a socket.
func (c *fakePacketConn) readBatch([]inDatagram) (int, error) { return 0, io.EOF }
func (c *fakePacketConn) writeBatch(ds []outDatagram) (int, error) {
	for i := range ds {
		c.WriteTo(ds[i].b, ds[i].netAddr())
	}
	return len(ds), nil
}
func (c *fakePacketConn) LocalAddr() net.Addr {
	return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 18}
}
func (c *fakePacketConn) SetDeadline(time.Time) error      { return nil }
func (c *fakePacketConn) SetReadDeadline(time.Time) error  { return nil }
func (c *fakePacketConn) SetWriteDeadline(time.Time) error { return nil }

// FuzzServeUDP hands arbitrary datagrams to the server (twice, to exercise
// the duplicate filter) and checks the UDP rules: no '-', no answer larger
// than the request, revision 'A' answered only by the exact echo.
func FuzzServeUDP(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s), false)
	}
	f.Fuzz(func(t *testing.T, in []byte, strip bool) {
		if len(in) > MaxLen+1 {
			in = in[:MaxLen+1] // what the read loop's buffer would hold
		}
		s := &Server{Handler: fuzzHandler(t), StripControl: strip, MaxInflight: 4}
		s.init()
		pc := &fakePacketConn{}
		from := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1018}
		for i := range 2 {
			// Answered one at a time, then (the duplicate) through the
			// batched writer.
			var bc batchConn
			if i == 1 {
				bc = pc
			}
			ps := s.newPacketServer(pc, bc, 2)
			ps.serve(from, in)
			// As the read loop's end does: wait for the handler, then
			// for the writer.
			ps.handlers.stop()
			ps.out.stop()
		}
		for _, d := range pc.out {
			if len(d) > len(in) {
				t.Fatalf("answer %q larger than request %q", d, in)
			}
			if len(in) > 0 && in[0] == Version1 {
				if !bytes.Equal(d, in) {
					t.Fatalf("v1 answer %q is not the echo of %q", d, in)
				}
				continue
			}
			if len(d) < 2 || d[0] != '+' || d[len(d)-1] != 0 {
				t.Fatalf("answer %q to %q", d, in)
			}
		}
	})
}
