package bench

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/msprelay/msprelay/msp"
)

// pushFrame is one relay -> client frame as the relay writes it.
func pushFrame(id uint32, msg []byte) []byte {
	b := binary.BigEndian.AppendUint32(nil, id)
	b = binary.BigEndian.AppendUint16(b, uint16(len(msg)))
	return append(b, msg...)
}

// readPush reads one push frame from the relay.
func readPush(t *testing.T, c net.Conn) (uint32, []byte) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var hdr [relayFrameHeader]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		t.Fatalf("reading a push: %v", err)
	}
	msg := make([]byte, binary.BigEndian.Uint16(hdr[4:]))
	if _, err := io.ReadFull(c, msg); err != nil {
		t.Fatalf("reading a push: %v", err)
	}
	return binary.BigEndian.Uint32(hdr[:]), msg
}

// noReplyYet fails the test if conn has a reply to read now. Only a
// wrong relay can fail it; a slow one passes.
func noReplyYet(t *testing.T, c net.Conn, what string) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	var b [8]byte
	if n, err := c.Read(b[:]); n > 0 || !errors.Is(err, errTimeoutOf(err)) {
		t.Fatalf("%s: read %q, %v before the client acknowledged", what, b[:n], err)
	}
}

// errTimeoutOf returns err when it is a timeout, else a sentinel no error
// matches.
func errTimeoutOf(err error) error {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return err
	}
	return errors.New("not a timeout")
}

// Rule (issue 21): the minimal relay does the node's job and nothing else:
// "take a message, push it to the recipient's client ... and answer `+`
// when that client has acknowledged it", "acknowledgements matched by id".
// The test is the relay's client: a message is pushed as it was sent, no
// '+' comes before its id is acknowledged, an unknown id answers nothing,
// acknowledgements in any order answer the right senders, over TCP and
// UDP; an undecodable message gets '-' and is not pushed.
func TestMinimalRelayAnswersOnAck(t *testing.T) {
	t.Parallel()
	r, err := listenRelay()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	cl, err := net.Dial("tcp", r.clientAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := r.attach(); err != nil {
		t.Fatal(err)
	}
	ack := func(ids ...uint32) {
		t.Helper()
		var b []byte
		for _, id := range ids {
			b = binary.BigEndian.AppendUint32(b, id)
		}
		if _, err := cl.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	expect := func(c net.Conn, want string) {
		t.Helper()
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		got := make([]byte, len(want))
		if _, err := io.ReadFull(c, got); err != nil || string(got) != want {
			t.Fatalf("sender read %q, %v; want %q", got, err, want)
		}
	}

	// TCP, one message: pushed verbatim, answered only on its own id.
	s1, err := net.Dial("tcp", r.tcpAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer s1.Close()
	a := appendMessage(nil, "u", "t1", "w1", 1, 1, 1)
	s1.Write(a)
	idA, got := readPush(t, cl)
	if !bytes.Equal(got, a) {
		t.Fatalf("pushed %q, want the message as sent %q", got, a)
	}
	noReplyYet(t, s1, "TCP sender")
	ack(idA + 1000) // nothing waits for it
	noReplyYet(t, s1, "TCP sender after an unknown id")
	ack(idA)
	expect(s1, "+\x00")

	// Two senders, two messages each; acknowledged in reverse order in one
	// write, every sender gets its two '+'.
	s2, err := net.Dial("tcp", r.tcpAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	s1.Write(append(appendMessage(nil, "u", "", "w1", 1, 2, 2), appendMessage(nil, "u", "", "w1", 1, 3, 3)...))
	var ids []uint32
	for range 2 {
		id, _ := readPush(t, cl)
		ids = append(ids, id)
	}
	s2.Write(append(appendMessage(nil, "u", "", "w2", 1, 4, 4), appendMessage(nil, "u", "", "w2", 1, 5, 5)...))
	for range 2 {
		id, _ := readPush(t, cl)
		ids = append(ids, id)
	}
	slices.Reverse(ids)
	ack(ids...)
	expect(s1, "+\x00+\x00")
	expect(s2, "+\x00+\x00")

	// UDP.
	u, err := net.Dial("udp", r.udpAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	u.Write(appendMessage(nil, "u", "", "w3", 1, 6, 6))
	idU, _ := readPush(t, cl)
	noReplyYet(t, u, "UDP sender")
	ack(idU)
	u.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 16)
	if n, err := u.Read(buf); err != nil || string(buf[:n]) != "+\x00" {
		t.Fatalf("UDP reply %q, %v; want +", buf[:n], err)
	}

	// An undecodable message: '-', the connection ends, nothing pushed
	// (the next push the client sees is the next good message).
	s3, err := net.Dial("tcp", r.tcpAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer s3.Close()
	s3.Write([]byte("Bx\x00\x00\x1b[2J\x00s\x00\x00c\x00\x00"))
	expect(s3, "-\x00")
	good := appendMessage(nil, "u", "", "w1", 1, 7, 7)
	s1.Write(good)
	if id, got := readPush(t, cl); !bytes.Equal(got, good) {
		t.Fatalf("push %d = %q after a refused message; want the next good one", id, got)
	}
}

// Rule (issue 21): the relay's client is "a separate process" that
// "acknowledges by id": with the real child process every load mode gets
// a '+' for every message, and Close stops the child.
func TestMinimalRelayWithClientProcess(t *testing.T) {
	t.Parallel()
	r, err := startMinimalRelay()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	h := &harness{cfg: DefaultConfig(), clock: clock{base: time.Now()}}
	h.cfg.Concurrency, h.cfg.Conns = 4, 2
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, mode := range localModes() {
		addr := r.tcpAddr()
		if mode == ModeUDP {
			addr = r.udpAddr()
		}
		l := h.newLoad(mode, addr, []string{"u"}, "t1")
		h.rounds++
		run := &run{round: h.rounds, clock: h.clock, deadline: time.Now().Add(20 * time.Second), max: 200}
		res, _ := l.exec(ctx, run)
		if res.OK != 200 || res.Failed != 0 {
			t.Errorf("%s: %d '+', %d failed; want 200 '+'", mode, res.OK, res.Failed)
		}
	}
	r.Close()
	if st := r.kid.cmd.ProcessState; st == nil || !st.Exited() {
		t.Errorf("client process state %v after Close, want exited", st)
	}
}

// Rule: the relay's client acknowledges what one read brought in one
// write, in the order pushed, and refuses a push it cannot take.
func TestRelayClientFraming(t *testing.T) {
	t.Parallel()
	msg := func(seq uint64) []byte { return appendMessage(nil, "u", "", "w", 1, seq, 1) }
	tests := []struct {
		name    string
		in      []byte
		acks    []uint32
		writes  int
		wantErr error
	}{
		{"nothing", nil, nil, 0, nil},
		{"one", pushFrame(7, msg(1)), []uint32{7}, 1, nil},
		{"two in one read, one write", append(pushFrame(7, msg(1)), pushFrame(9, msg(2))...), []uint32{7, 9}, 1, nil},
		{"undecodable message", pushFrame(3, []byte("Bx\x00\x00\x1b\x00s\x00\x00c\x00\x00")), nil, 0, ErrRelayFrame},
		{"too long", binary.BigEndian.AppendUint16(binary.BigEndian.AppendUint32(nil, 1), msp.MaxLen+2), nil, 0, ErrRelayFrame},
		{"truncated header", []byte{0, 0, 0}, nil, 0, io.ErrUnexpectedEOF},
		{"truncated message", pushFrame(5, msg(1))[:20], nil, 0, io.EOF},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var w countingWriter
			err := runRelayClient(bytes.NewReader(tc.in), &w)
			if (tc.wantErr == nil) != (err == nil) || (tc.wantErr != nil && !errors.Is(err, tc.wantErr)) {
				t.Fatalf("runRelayClient = %v, want %v", err, tc.wantErr)
			}
			var got []uint32
			for i := 0; i+4 <= len(w.b); i += 4 {
				got = append(got, binary.BigEndian.Uint32(w.b[i:]))
			}
			if !slices.Equal(got, tc.acks) || w.writes != tc.writes {
				t.Fatalf("acks %v in %d writes, want %v in %d", got, w.writes, tc.acks, tc.writes)
			}
		})
	}
}

type countingWriter struct {
	b      []byte
	writes int
}

func (w *countingWriter) Write(p []byte) (int, error) {
	w.b = append(w.b, p...)
	w.writes++
	return len(p), nil
}

// FuzzRelayClient: whatever the relay sends, the client acknowledges
// exactly the ids of the leading whole frames whose messages decode, in
// order, and never panics.
func FuzzRelayClient(f *testing.F) {
	f.Add(pushFrame(1, appendMessage(nil, "u", "", "w", 1, 1, 1)))
	f.Add(append(pushFrame(1, appendMessage(nil, "u", "t", "w", 1, 1, 1)), pushFrame(2, []byte("B"))...))
	f.Add([]byte{0, 0, 0, 1, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, in []byte) {
		var want []byte
		for rest := in; len(rest) >= relayFrameHeader; {
			size := int(binary.BigEndian.Uint16(rest[4:]))
			if size > msp.MaxLen+1 || len(rest) < relayFrameHeader+size {
				break
			}
			if _, err := msp.Parse(rest[relayFrameHeader : relayFrameHeader+size]); err != nil {
				break
			}
			want = append(want, rest[:4]...)
			rest = rest[relayFrameHeader+size:]
		}
		var w countingWriter
		runRelayClient(bytes.NewReader(in), &w)
		if !bytes.Equal(w.b, want) {
			t.Fatalf("acks %x, want %x", w.b, want)
		}
	})
}

// Rule: a message line of `msp listen --json` gives the load generator's
// text back; other lines give none.
func TestListenText(t *testing.T) {
	t.Parallel()
	tests := []struct {
		line string
		text string
		ok   bool
	}{
		{`{"type":"message","id":"x","sender":"mspbench","text":"mspbench r=3 t=42","origin_node":"n1"}` + "\n", "mspbench r=3 t=42", true},
		{`{"type":"presence","event":"online","user":"a"}` + "\n", "", false},
		{`{"type":"message","text":"unterminated`, "", false},
		{"", "", false},
	}
	for _, tc := range tests {
		text, ok := listenText([]byte(tc.line))
		if text != tc.text || ok != tc.ok {
			t.Errorf("listenText(%q) = %q, %v; want %q, %v", tc.line, text, ok, tc.text, tc.ok)
		}
	}
}

// FuzzListenText: a text found is the content of the first "text" field
// up to its closing quote.
func FuzzListenText(f *testing.F) {
	f.Add([]byte(`{"type":"message","text":"mspbench r=1 t=2"}`))
	f.Add([]byte(`"text":"`))
	f.Add([]byte(`{"type":"presence"}`))
	f.Fuzz(func(t *testing.T, line []byte) {
		text, ok := listenText(line)
		if !ok {
			return
		}
		if bytes.IndexByte([]byte(text), '"') >= 0 || !bytes.Contains(line, []byte(`"text":"`+text+`"`)) {
			t.Fatalf("listenText(%q) = %q", line, text)
		}
	})
}
