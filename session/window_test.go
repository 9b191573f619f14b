package session

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/msprelay/msprelay/msp"
	"github.com/msprelay/msprelay/sessionproto"
	"github.com/msprelay/msprelay/switchboard"
)

// mspFront serves MSP on 127.0.0.1:0 in front of e's switchboard as the
// node does: one delivery per message, its writer passed on as the
// delivery's Orderer, '+' or '-' with the outcome's summary. It returns
// the address; the server is closed when the test ends.
func (e *env) mspFront(t *testing.T) string {
	t.Helper()
	srv := &msp.Server{
		Logger: quietLogger(), RatePerIP: -1, MaxConnsPerIP: -1,
		Handler: msp.HandlerFunc(func(w msp.ResponseWriter, m *msp.Message) {
			d := &switchboard.Delivery{
				Recipient: m.Recipient, RecipTerm: m.RecipTerm, Sender: m.Sender, SenderTerm: m.SenderTerm,
				Text: m.Text, Cookie: m.Cookie,
				Origin: switchboard.Origin{Node: "n1", Addr: w.RemoteAddrString(), Transport: w.Network(), Revision: "B"},
				Time:   time.Now(),
			}
			if ord, ok := w.(switchboard.Orderer); ok {
				d.Ordered = ord
			}
			if o := e.sb.Send(w.Context(), d); o.Delivered() {
				_ = w.Ack(o.Summary())
			} else {
				_ = w.Nack(o.Summary())
			}
		}),
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-served; !errors.Is(err, msp.ErrServerClosed) {
			t.Errorf("msp Serve returned %v", err)
		}
	})
	return ln.Addr().String()
}

// mspSender is one MSP TCP connection that pipelines messages and reads
// their replies in order.
type mspSender struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func dialMSP(t *testing.T, addr string) *mspSender {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(20 * time.Second))
	return &mspSender{t: t, c: c, br: bufio.NewReader(c)}
}

// send writes messages "m<i>" for i in [from, to) to recipient, all in one
// write, without waiting for replies.
func (s *mspSender) send(recipient, tag string, from, to int) {
	s.t.Helper()
	var b []byte
	for i := from; i < to; i++ {
		b = fmt.Appendf(b, "B%s\x00pts/1\x00m%d\x00bob\x00\x00%s-%d\x00\x00", recipient, i, tag, i)
	}
	if _, err := s.c.Write(b); err != nil {
		s.t.Fatal(err)
	}
}

// reply reads one reply, without its NUL.
func (s *mspSender) reply() string {
	s.t.Helper()
	r, err := s.br.ReadString(0)
	if err != nil {
		s.t.Fatalf("reading a reply: %v (got %q)", err, r)
	}
	return strings.TrimSuffix(r, "\x00")
}

// msg reads lines until a pushed MSG and returns the message.
func (r *raw) msg() *sessionproto.Message {
	r.t.Helper()
	m, err := sessionproto.ParseMessage([]byte(r.payload("MSG")))
	if err != nil {
		r.t.Fatal(err)
	}
	return m
}

// signInAcks signs a raw client in as user at pts/1, offering versions.
func (e *env) signInAcks(t *testing.T, user, versions, want string) *raw {
	t.Helper()
	c := e.raw(t)
	c.send("VER 1 " + versions + "\r\n")
	c.expect("VER 1 " + want)
	c.send("USR 2 " + user + " pts/1\r\n")
	c.expect("USR 2 OK " + user + " pts/1 NLN n1 trust")
	return c
}

// Issue 21: "Several messages in flight to one session, in order, each
// acknowledged by id; the reply '+... (acknowledged)' keeps its meaning;
// per-recipient order is kept by the queue, not by waiting." One MSP
// connection pipelines messages for alice; she receives a whole window of
// them before acknowledging any (with one message in flight per
// recipient, as before, the second would never come), in order, and
// acknowledges them out of order, several per ACK line (MSPS3) or one per
// line (MSPS2). Every reply is '+... (acknowledged)', and none comes before
// the ACK of its message was sent.
func TestWindowInOrderAckedOutOfOrder(t *testing.T) {
	t.Parallel()
	const n, held = 12, 6 // messages; how many alice holds unacknowledged at first
	for _, tc := range []struct{ name, versions, want string }{
		{"MSPS3, batched ACK", "MSPS3 MSPS2 MSPS1", "MSPS3"},
		{"MSPS2, one id per ACK", "MSPS2 MSPS1", "MSPS2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, Trust{}, nil)
			alice := e.signInAcks(t, "alice", tc.versions, tc.want)
			s := dialMSP(t, e.mspFront(t))

			// mu guards acked: the message numbers whose ACK alice sent.
			var mu sync.Mutex
			acked := map[int]bool{}
			replies := make(chan error, n)
			go func() {
				for i := range n {
					r, err := s.br.ReadString(0)
					switch {
					case err != nil:
						replies <- fmt.Errorf("reply %d: %v", i, err)
						return
					case !strings.HasPrefix(r, "+delivered to alice at pts/1 on n1 (acknowledged)"):
						replies <- fmt.Errorf("reply %d = %q, want +... (acknowledged)", i, r)
						continue
					}
					mu.Lock()
					ok := acked[i]
					mu.Unlock()
					if !ok {
						replies <- fmt.Errorf("reply %d came before its ACK was sent", i)
						continue
					}
					replies <- nil
				}
			}()
			ack := func(order []int, ids map[int]string) {
				mu.Lock()
				for _, i := range order {
					acked[i] = true
				}
				mu.Unlock()
				var line []string
				for _, i := range order {
					line = append(line, ids[i])
				}
				if tc.want == "MSPS3" {
					alice.send("ACK 9 " + strings.Join(line, " ") + "\r\n")
					return
				}
				for _, id := range line {
					alice.send("ACK 9 " + id + "\r\n")
				}
			}

			s.send("alice", "w", 0, n)
			ids := map[int]string{}
			for i := range held {
				m := alice.msg()
				if m.Text != fmt.Sprintf("m%d", i) {
					t.Fatalf("message %d is %q: out of order", i, m.Text)
				}
				ids[i] = m.ID
			}
			// Out of order, in two ACK lines.
			ack([]int{5, 3, 1}, ids)
			ack([]int{0, 4, 2}, ids)
			for i := held; i < n; i++ {
				m := alice.msg()
				if m.Text != fmt.Sprintf("m%d", i) {
					t.Fatalf("message %d is %q: out of order", i, m.Text)
				}
				ids[i] = m.ID
			}
			rest := []int{11, 7, 9, 6, 10, 8}
			ack(rest, ids)
			for range n {
				if err := <-replies; err != nil {
					t.Error(err)
				}
			}
		})
	}
}

// Issue 21: the window is bounded per recipient ("a slow client still gets
// ErrTerminalSlow"). A client that acknowledges nothing receives AckWindow
// messages; the next one is refused at once as "terminal not reading"
// (with a mailbox it would be queued there: switchboard's tests), and once
// she acknowledges, the window has room again.
func TestWindowFullRefusesAsSlow(t *testing.T) {
	t.Parallel()
	const window = 4
	e := newEnv(t, Trust{}, func(c *Config) { c.AckWindow = window })
	alice := e.signInAcks(t, "alice", "MSPS3 MSPS2 MSPS1", "MSPS3")
	front := e.mspFront(t)
	filler := dialMSP(t, front)
	filler.send("alice", "fill", 0, window)
	var ids []string
	for i := range window {
		m := alice.msg()
		if m.Text != fmt.Sprintf("m%d", i) {
			t.Fatalf("message %d is %q", i, m.Text)
		}
		ids = append(ids, m.ID)
	}
	late := dialMSP(t, front)
	late.send("alice", "late", window, window+1)
	if r := late.reply(); r != "-alice at pts/1 on n1: terminal not reading" {
		t.Fatalf("past the window: %q, want -... terminal not reading", r)
	}
	slices.Reverse(ids)
	alice.send("ACK 7 " + strings.Join(ids, " ") + "\r\n")
	for i := range window {
		if r := filler.reply(); r != "+delivered to alice at pts/1 on n1 (acknowledged)" {
			t.Fatalf("reply %d: %q", i, r)
		}
	}
	late.send("alice", "again", window+1, window+2)
	m := alice.msg()
	alice.send("ACK 8 " + m.ID + "\r\n")
	if r := late.reply(); r != "+delivered to alice at pts/1 on n1 (acknowledged)" || m.Text != fmt.Sprintf("m%d", window+1) {
		t.Fatalf("after the ACK: %q, message %q", r, m.Text)
	}
}

// ACK lines the session refuses. A bad id is an error line and the session
// goes on, with none of the line's ids settled; more ids than
// sessionproto.MaxAckIDs is a framing error (too many tokens), which
// closes it.
func TestAckLineRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Trust{}, nil)
	alice := e.signInAcks(t, "alice", "MSPS3", "MSPS3")
	alice.send("ACK 4 ok %zz\r\nPNG\r\n")
	alice.expectPrefix("201 4 sessionproto: bad ACK ids: id 2: ")
	alice.expect("QNG 90")
	alice.send("ACK 3" + strings.Repeat(" 0123456789ab", sessionproto.MaxAckIDs+1) + "\r\n")
	alice.expect("200 0 more than 33 arguments")
	alice.closed()
}
